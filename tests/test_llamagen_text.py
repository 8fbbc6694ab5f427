"""T5 caption path with a tiny random T5 and an offline tokenizer: padding layouts, truncation, cleaning."""
import warnings

import pytest
import torch

from scalingar_core.models.llamagen.captions import clean_prompt
from scalingar_core.models.llamagen.text_encoder import T5TextEncoder, to_left_padding
from scalingar_core.testing.llamagen import write_tiny_t5


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


# Prompts and what upstream LlamaGen makes of them: its T5Embedder.clean_caption applied twice (as its
# text_preprocessing does), run on these prompts at commit 5a50452 with ftfy 6.3.1 and beautifulsoup4 4.15.
UPSTREAM_CLEANED = [
    ("A corgi (wearing a hat) on a skateboard", "a corgi wearing a hat on a skateboard"),
    ("a red cube.a blue sphere", "a red cube. a blue sphere"),
    ("a well-lit, high-contrast, award-winning, state-of-the-art photo",
     "a well lit, high contrast, award winning, state of the art photo"),
    ("wallpaper 1920x1080 of a mountain lake", "wallpaper of a mountain lake"),
    ("a `retro` sign saying 'OPEN'", "a \"retro\" sign saying 'open"),
    ("cats & dogs | [friends] {forever}", "cats dogs friends forever"),
    ("Price: $5.99, 50% off!!! Free shipping", "price: $5.99, 50% off!!!"),
    ("\u201cHello\u201d \u2014 she said\u2026 at 10:30 ", "\"hello\" - she said\u2026 at 10:30"),
    ("see https://example.com/x.png <b>Red</b> dog @someone 192.168.0.1 IMG_1234.jpg 12345678 \u732b", "see red dog"),
    ("A photo of a cat", "a photo of a cat"),
    ("a%20cat on a mat", "a cat on a mat"),
    ("rgb(255,0,0) car; model jc6640 vs 6640vc231", "rgb 255,0,0 car; model vs"),
    ("an astronaut riding a horse on mars, 4k, trending on artstation",
     "an astronaut riding a horse on mars, 4k, trending on artstation"),
    ('"a quoted prompt"', "a quoted prompt"),
    ("page 3 of the book, click for details", "of the book"),
    ("snake_case_words_in_a_caption", "snake case words in a caption"),
    ("#1 best #12345 product #hashtag", "best product hashtag"),
    ("a line\\nbreak and a tab\tend -", "a line break and a tab end"),
]


@pytest.mark.parametrize("prompt,expected", UPSTREAM_CLEANED)
def test_clean_prompt_matches_upstream(prompt, expected):
    assert clean_prompt(prompt) == expected


def _piece_tokenizer():
    """A sentencepiece-style (metaspace, unigram) tokenizer trained here, with T5's specials: punctuation
    gets its own pieces, so any cleaning difference shows in the ids."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    corpus = [p for pair in UPSTREAM_CLEANED for p in pair] * 4
    tok.train_from_iterator(corpus, trainers.UnigramTrainer(vocab_size=300, special_tokens=["<pad>", "</s>", "<unk>"],
                                                            unk_token="<unk>"))
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def test_t5_token_ids_of_punctuated_prompts_match_upstream_cleaning(encoder):
    pieces = _piece_tokenizer()
    enc = T5TextEncoder(encoder.model, pieces, device="cpu", max_length=40)
    prompts = [p for p, _ in UPSTREAM_CLEANED]
    ids, mask = enc.tokenize(prompts)
    expected = pieces([c for _, c in UPSTREAM_CLEANED], max_length=40, padding="max_length", truncation=True,
                      return_tensors="pt")
    assert torch.equal(ids, expected["input_ids"]) and torch.equal(mask, expected["attention_mask"])
    raw = pieces([p.lower() for p in prompts], max_length=40, padding="max_length", truncation=True,
                 return_tensors="pt")["input_ids"]
    differs = sum(not torch.equal(a, b) for a, b in zip(ids, raw))
    assert differs >= 14  # cleaning changes the tokens of most of these prompts: the comparison has teeth


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
