"""VQ-16 tokenizer: upstream key set and sizes, L2-normalised lookup, decode shape and range."""
import pytest
import torch

from scalingar_core.models.vq16 import VQConfig, VQModel
from scalingar_core.testing.llamagen import TINY_VQ, random_vq


def test_vq16_matches_upstream_state_dict():
    with torch.device("meta"):
        vq = VQModel(VQConfig())
    sd = vq.state_dict()
    assert len(sd) == 344
    assert sum(v.numel() for v in sd.values()) == 71_948_939
    enc = [k for k in sd if k.startswith("encoder.")]
    dec = [k for k in sd if k.startswith("decoder.")]
    assert len(enc) == 144 and sum(sd[k].numel() for k in enc) == 29_298_176
    assert len(dec) == 194 and sum(sd[k].numel() for k in dec) == 42_449_795
    shapes = {k: tuple(v.shape) for k, v in sd.items() if not k.startswith(("encoder.", "decoder."))}
    assert shapes == {"quantize.embedding.weight": (16384, 8), "quantize.codebook_used": (65536,),
                      "quant_conv.weight": (8, 256, 1, 1), "quant_conv.bias": (8,),
                      "post_quant_conv.weight": (256, 8, 1, 1), "post_quant_conv.bias": (256,)}
    # decoder layout: 512, 256, 256, 128, 128 channels; attention only at the lowest resolution
    assert sd["decoder.conv_in.weight"].shape == (512, 256, 3, 3)
    assert sd["decoder.conv_blocks.1.res.0.nin_shortcut.weight"].shape == (256, 512, 1, 1)
    assert sd["decoder.conv_blocks.3.res.0.nin_shortcut.weight"].shape == (128, 256, 1, 1)
    assert {k.split(".")[2] for k in dec if ".attn." in k} == {"0"}
    assert {int(k.split(".")[2]) for k in dec if ".upsample." in k} == {0, 1, 2, 3}
    assert "decoder.conv_blocks.0.res.2.conv2.weight" in sd and "decoder.conv_blocks.0.attn.2.q.weight" in sd
    assert sd["decoder.mid.1.proj_out.weight"].shape == (512, 512, 1, 1)
    assert sd["decoder.conv_out.weight"].shape == (3, 128, 3, 3)
    assert sd["encoder.conv_out.weight"].shape == (256, 512, 3, 3)
    assert {int(k.split(".")[2]) for k in enc if ".attn." in k} == {4}


def test_decode_shape_range_and_raster_order():
    vq = random_vq()
    codes = torch.randint(0, TINY_VQ.codebook_size, (2, 16))
    img = vq.decode_codes(codes)
    assert img.shape == (2, 3, 64, 64) and img.dtype == torch.float32
    assert img.min() >= 0 and img.max() <= 1 and img.std() > 0
    # non-square grids follow raster order: a 2x8 grid decodes to 32x128
    assert vq.decode_codes(codes[:1], grid=(2, 8)).shape == (1, 3, 32, 128)
    # chunking does not change the result
    assert torch.allclose(vq.decode_codes(codes, chunk=1), img, atol=1e-4)
    # the latent of code c at (row, col) is codebook row c, placed at [:, :, row, col]
    lat = vq.quantize.lookup(codes[:1], 4, 4)
    book = torch.nn.functional.normalize(vq.quantize.embedding.weight, dim=-1)
    assert torch.equal(lat[0, :, 1, 2], book[codes[0, 1 * 4 + 2]])


def test_codebook_is_l2_normalised_at_lookup():
    vq = random_vq()
    codes = torch.randint(0, TINY_VQ.codebook_size, (1, 16))
    ref = vq.decode_codes(codes)
    with torch.no_grad():
        vq.quantize.embedding.weight.mul_(torch.rand(TINY_VQ.codebook_size, 1) * 5 + 0.1)
    assert torch.allclose(vq.decode_codes(codes), ref, atol=1e-5)


def test_encode_decode_round_trip_codes():
    vq = random_vq()
    codes = torch.randint(0, TINY_VQ.codebook_size, (2, 16))
    img = vq.decode_codes(codes)
    again = vq.encode_images(img)
    assert again.shape == codes.shape and again.dtype == torch.long
    assert again.min() >= 0 and again.max() < TINY_VQ.codebook_size
    # quantizing a latent that is exactly a codebook vector returns that code
    lat = vq.quantize.lookup(codes, 4, 4)
    assert torch.equal(vq.quantize.nearest(lat), codes)


def test_bad_codes_are_rejected():
    vq = random_vq()
    with pytest.raises(ValueError, match="codes must be in"):
        vq.decode_codes(torch.full((1, 16), TINY_VQ.codebook_size))
    with pytest.raises(ValueError, match="grid"):
        vq.decode_codes(torch.zeros(1, 16, dtype=torch.long), grid=(3, 3))
    with pytest.raises(ValueError, match=r"\[B, h\*w\]"):
        vq.decode_codes(torch.zeros(16, dtype=torch.long))
