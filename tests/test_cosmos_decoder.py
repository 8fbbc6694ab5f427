"""Cosmos DV8x16x16 decoder (SimpleAR's image tokenizer) and the safe TorchScript reader, on tiny weights."""
from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import replace

import pytest
import torch

pytest.importorskip("diffusers.models.autoencoders.autoencoder_kl_cosmos")

from scalingar_core.app.cli import main as cli_main  # noqa: E402
from scalingar_core.models.checkpoints import CheckpointError  # noqa: E402
from scalingar_core.models.cosmos import jit_reader  # noqa: E402
from scalingar_core.models.cosmos.decoder import (  # noqa: E402
    DV8x16x16, CosmosDecoder, activation_bytes, convert_decoder, decode_chunk, fsq_codes, load_decoder, weight_names)
from scalingar_core.testing.cosmos import TINY, upstream_decoder, write_decoder_jit  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def reference():
    return upstream_decoder(TINY)


@pytest.fixture(scope="module")
def jit_file(tmp_path_factory, reference):
    return write_decoder_jit(tmp_path_factory.mktemp("cosmos") / "decoder.jit", reference)


@pytest.fixture
def no_code(monkeypatch):
    """Fail if anything would compile or run TorchScript, and record which archive entries are read."""
    def refuse(*a, **k):
        raise AssertionError("TorchScript code was loaded")

    monkeypatch.setattr(torch.jit, "load", refuse)
    monkeypatch.setattr(torch._C, "import_ir_module", refuse)
    read = []
    original = zipfile.ZipFile.read
    monkeypatch.setattr(zipfile.ZipFile, "read", lambda self, name, *a: read.append(name) or original(self, name, *a))
    return read


def test_reader_recovers_every_tensor_without_running_code(jit_file, reference, no_code):
    tensors = jit_reader.read_tensors(jit_file)
    # every parameter and buffer, non-persistent ones too (TorchScript pickles the FSQ levels, the wavelet)
    expected = dict(reference.named_parameters()) | dict(reference.named_buffers())
    assert set(tensors) == set(expected)
    for name, value in expected.items():
        assert tensors[name].dtype == value.dtype and torch.equal(tensors[name], value), name
    assert no_code and not any("/code/" in n or n.endswith("constants.pkl") for n in no_code)


def test_reader_keeps_dtypes_and_views(tmp_path, no_code):
    class Holder(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    holder = Holder()
    base = torch.arange(12, dtype=torch.float64).reshape(3, 4)
    holder.register_buffer("view", base.t())  # a strided view: stride and offset must survive
    holder.register_buffer("bf16", torch.randn(5).to(torch.bfloat16))
    holder.register_buffer("flags", torch.tensor([True, False]))
    holder.register_buffer("ints", torch.tensor([8, 5], dtype=torch.int32), persistent=False)
    path = tmp_path / "h.jit"
    torch.jit.save(torch.jit.script(holder), str(path))
    out = jit_reader.read_tensors(path)
    for name in ("view", "bf16", "flags", "ints"):
        assert torch.equal(out[name], getattr(holder, name)) and out[name].dtype == getattr(holder, name).dtype


class _Touch:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _archive(path, payload: bytes):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("decoder/data.pkl", payload)
        z.writestr("decoder/version", "3\n")
        z.writestr("decoder/byteorder", "little")
    return path


def test_reader_refuses_os_system_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    path = _archive(tmp_path / "evil.jit", pickle.dumps({"weight": _Touch(marker)}, protocol=2))
    with pytest.raises(jit_reader.UnsafeArchiveError, match=r"references the Python global (posix|os)\.system"):
        jit_reader.read_tensors(path)
    assert not marker.exists()


@pytest.mark.parametrize("module,name", [("builtins", "eval"), ("builtins", "getattr"), ("torch", "load"),
                                         ("torch._utils", "_rebuild_qtensor"), ("torch.jit", "load"),
                                         ("subprocess", "Popen"), ("torch.nn", "Module")])
def test_reader_refuses_every_other_global(tmp_path, module, name):
    payload = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")R."
    with pytest.raises(jit_reader.UnsafeArchiveError, match=rf"{module}\.{name}"):
        jit_reader.read_tensors(_archive(tmp_path / "g.jit", payload))


def test_reader_names_a_file_that_is_no_archive(tmp_path):
    bad = tmp_path / "decoder.jit"
    bad.write_text("version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(CheckpointError, match="not a TorchScript archive"):
        jit_reader.read_tensors(bad)


def test_inverse_fsq_is_the_mixed_radix_digits():
    levels = DV8x16x16.levels
    idx = torch.arange(DV8x16x16.codebook_size)
    codes = fsq_codes(idx, levels)
    assert DV8x16x16.codebook_size == 64000 and codes.shape == (64000, 6)
    for i in (0, 1, 7, 8, 511, 512, 12799, 12800, 63999, 40123):
        digits, rest = [], i
        for level in levels:
            rest, d = divmod(rest, level)
            digits.append((d - level // 2) / (level // 2))
        assert codes[i].tolist() == digits
    assert len({tuple(c) for c in codes.tolist()}) == 64000  # a bijection
    assert torch.equal(codes.bfloat16().float(), codes)  # exact in bf16


@pytest.mark.parametrize("grid", [(3, 5), (4, 4)])
def test_decoder_matches_upstream_reference(jit_file, reference, grid):
    decoder = load_decoder(jit_file, TINY)
    codes = torch.randint(0, TINY.codebook_size, (2, *grid), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = reference(codes[:, None])[:, :, -1]  # upstream: [B, T=1, h, w] indices -> one frame
        out = decoder(codes)
    assert out.shape == ref.shape == (2, 3, 16 * grid[0], 16 * grid[1])
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_decode_codes_is_the_image_in_unit_range_any_chunk(jit_file, reference):
    decoder = load_decoder(jit_file, TINY)
    codes = torch.randint(0, TINY.codebook_size, (3, 16), generator=torch.Generator().manual_seed(2))
    images = decoder.decode_codes(codes)
    with torch.no_grad():
        ref = ((reference(codes.reshape(3, 1, 4, 4))[:, :, -1] + 1) / 2).clamp(0, 1)
    assert images.shape == (3, 3, 64, 64) and images.min() >= 0 and images.max() <= 1
    assert (images - ref).abs().max() <= 1e-5
    assert (decoder.decode_codes(codes, chunk=1) - images).abs().max() <= 1e-5  # batching only reorders sums
    with pytest.raises(ValueError, match=r"codes must be in \[0, 24\)"):
        decoder.decode_codes(torch.full((1, 16), 24))


def test_whole_decoder_on_a_hand_computable_case(tmp_path):
    """All weights zero but the last conv's bias: the decoder's output before unpatching is that bias
    everywhere; the inverse Haar turns its lowest band into flat colour and its width-detail band (channels
    3..5 of the last step) into +-alternating columns."""
    model = upstream_decoder(TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        bias = model.get_parameter("decoder.conv_out.1.conv3d.bias")
        bias[:3] = torch.tensor([0.2, -0.4, 0.6])
        bias[3:6] = torch.tensor([0.1, 0.0, -0.3])
    decoder = load_decoder(write_decoder_jit(tmp_path / "decoder.jit", model), TINY)
    img = decoder.decode_codes(torch.randint(0, 24, (1, 4)))[0]  # 2x2 tokens -> 32x32 px
    even, odd = torch.tensor([0.3, -0.4, 0.3]), torch.tensor([0.1, -0.4, 0.9])
    assert torch.allclose(img[:, :, 0::2], ((even + 1) / 2)[:, None, None].expand(3, 32, 16), atol=1e-6)
    assert torch.allclose(img[:, :, 1::2], ((odd + 1) / 2)[:, None, None].expand(3, 32, 16), atol=1e-6)


def test_another_tokenizers_decoder_is_refused_with_its_shapes(tmp_path):
    wider = replace(TINY, z_channels=8, channels=16)
    path = write_decoder_jit(tmp_path / "decoder.jit", upstream_decoder(wider))
    with pytest.raises(CheckpointError) as err:
        load_decoder(path, TINY)
    msg = str(err.value)
    assert "is not a Cosmos DV8x16x16 decoder" in msg and "wrongly shaped" in msg
    assert "post_quant_conv.conv3d.weight (8, 3, 1, 1, 1) (expected (4, 3, 1, 1, 1))" in msg
    other_levels = write_decoder_jit(tmp_path / "l.jit", upstream_decoder(replace(TINY, levels=(4, 3, 3))))
    with pytest.raises(CheckpointError, match=r"FSQ levels \[4, 3, 3\], not DV8x16x16's \[4, 3, 2\]"):
        load_decoder(other_levels, TINY)


def test_missing_and_unexpected_tensors_are_listed(tmp_path, reference):
    model = upstream_decoder(TINY)
    del model.decoder.mid.block_2  # a missing block
    model.decoder.extra = torch.nn.Linear(2, 2)
    with pytest.raises(CheckpointError) as err:
        load_decoder(write_decoder_jit(tmp_path / "decoder.jit", model), TINY)
    msg = str(err.value)
    assert "12 missing: decoder.mid.block_2.norm1.norm.weight" in msg
    assert "2 unexpected: decoder.extra.weight, decoder.extra.bias" in msg


def test_name_map_covers_the_real_decoder_and_drops_only_unused_weights():
    with torch.device("meta"):
        ours = CosmosDecoder(DV8x16x16).state_dict()
    names = weight_names(DV8x16x16)
    assert sorted(v for v in names.values() if v) == sorted(ours)
    # upstream builds a temporal conv in the first upsampler, which upsamples only in space
    assert [k for k, v in names.items() if v is None] == ["decoder.up.2.upsample.conv1.conv3d.weight",
                                                         "decoder.up.2.upsample.conv1.conv3d.bias"]
    assert "decoder.mid.attn_1.1.proj_out.conv3d.weight" in names and "decoder.up.0.block.2.conv2.1.conv3d.bias" in names
    assert sum(ours[k].numel() for k in ours) > 60e6


def test_convert_writes_safetensors_once_and_loads_the_same(tmp_path, jit_file, capsys, no_code):
    dst = convert_decoder(jit_file, tmp_path, TINY)
    assert dst == tmp_path / "decoder.safetensors" and not list(tmp_path.glob("*.partial"))
    codes = torch.randint(0, 24, (1, 9))
    assert torch.equal(load_decoder(jit_file, TINY).decode_codes(codes), load_decoder(dst, TINY).decode_codes(codes))
    # the command line converts DV8x16x16 files: the tiny one is refused and nothing is left behind
    assert cli_main(["convert", str(jit_file), str(tmp_path / "out.safetensors")]) == 2
    assert not list(tmp_path.glob("out.safetensors*"))
    assert "not DV8x16x16's [8, 8, 8, 5, 5, 5]: it belongs to another tokenizer" in capsys.readouterr().err


def test_memory_estimate_and_chunks():
    one = activation_bytes(DV8x16x16, 1024, 1, itemsize=2)
    assert one == 8 * 512 * 256 * 256 * 2
    assert activation_bytes(DV8x16x16, 512, 1, 2) * 4 == one
    assert decode_chunk(DV8x16x16, 1024, itemsize=2) == 4 and decode_chunk(DV8x16x16, 256, itemsize=2) == 64
    assert decode_chunk(DV8x16x16, 1024, itemsize=4, budget=1) == 1
