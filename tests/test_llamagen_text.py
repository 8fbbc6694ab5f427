"""T5 caption path with a tiny random T5 and an offline tokenizer: padding layouts, truncation, cleaning."""
import warnings

import pytest
import torch

from scalingar_core.llamagen.synthetic import write_tiny_t5
from scalingar_core.llamagen.text_encoder import T5TextEncoder, clean_prompt, to_left_padding


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    folder = write_tiny_t5(tmp_path_factory.mktemp("t5"))
    return T5TextEncoder.from_pretrained(folder, device="cpu", dtype=torch.float32, max_length=12)


def test_left_padding_moves_valid_tokens_to_the_end_and_zeroes_pads(encoder):
    prompts = ["A photo of a red CAT", "dog"]
    right, rmask = encoder.encode(prompts, padding_side="right")
    left, lmask = encoder.encode(prompts, padding_side="left")
    assert right.shape == left.shape == (2, 12, 16)
    counts = [6 + 1, 1 + 1]  # words + </s>
    assert rmask.sum(1).tolist() == lmask.sum(1).tolist() == counts
    for b, n in enumerate(counts):
        assert rmask[b, :n].all() and not rmask[b, n:].any()  # raw T5 layout (AR-GRPO)
        assert lmask[b, -n:].all() and not lmask[b, :-n].any()  # LlamaGen layout
        assert torch.equal(left[b, -n:], right[b, :n])  # same vectors, moved
        assert torch.all(left[b, :-n] == 0)  # padding slots zeroed
    assert right[1, 2:].abs().sum() > 0  # right padding keeps T5's pad outputs as they are


def test_to_left_padding_matches_a_per_row_rotation():
    feats = torch.randn(3, 6, 4)
    mask = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    out, new = to_left_padding(feats, mask)
    for b in range(3):
        n = int(mask[b].sum())
        expect = torch.cat([feats[b, n:], feats[b, :n]]) * new[b, :, None]
        assert torch.equal(out[b], expect)
        assert new[b].tolist() == [False] * (6 - n) + [True] * n


def test_truncation_warns_with_dropped_count(encoder):
    long = " ".join(["cat"] * 20)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        feats, mask = encoder.encode(long)
    msgs = [str(w.message) for w in caught]
    assert any("21 T5 tokens" in m and "last 9 were dropped" in m for m in msgs), msgs
    assert mask.all() and feats.shape == (1, 12, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a short prompt does not warn
        encoder.encode("a cat")


def test_clean_prompt():
    assert clean_prompt("  A  Photo\tof a CAT ") == "a photo of a cat"
    text = clean_prompt("see https://example.com/x.png <b>Red</b> dog @someone 192.168.0.1 “quoted” — "
                        "IMG_1234.jpg 12345678 猫")
    assert text == 'see red dog "quoted" -'
    assert clean_prompt("a%20cat") == "a cat"


def test_offload_moves_weights_back_to_cpu(tmp_path):
    folder = write_tiny_t5(tmp_path)
    enc = T5TextEncoder.from_pretrained(folder, device="cpu", dtype=torch.float32, offload=True, max_length=8)
    feats, mask = enc.encode("a cat")
    assert next(enc.model.parameters()).device.type == "cpu"
    assert feats.shape == (1, 8, 16) and enc.device == torch.device("cpu")


def test_missing_folder_says_how_to_fetch(tmp_path):
    with pytest.raises(FileNotFoundError, match="google/flan-t5-xl"):
        T5TextEncoder.from_pretrained(tmp_path / "nothing")


def test_bad_padding_side(encoder):
    with pytest.raises(ValueError, match="padding_side"):
        encoder.encode("a cat", padding_side="middle")
