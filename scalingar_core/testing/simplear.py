"""A tiny random SimpleAR checkpoint in the published layout: a Qwen2 folder (``config.json``, safetensors
shards + index, tokenizer files with SimpleAR's seven added special tokens, image codes after the whole text
vocabulary) and a tiny Cosmos ``decoder.jit`` (:mod:`scalingar_core.testing.cosmos`)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..models.simplear.prompt import SPECIAL_TOKENS
from .cosmos import TINY, upstream_decoder, write_decoder_jit

def tiny_tokenizer(special: bool = True):
    """transformers' ``Qwen2Tokenizer`` (byte-level BPE, as Qwen2.5's) with the 256 byte symbols as its whole
    vocabulary and no merges (one token per byte), ``<|endoftext|>``, and SimpleAR's special tokens added."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    vocab = {c: i for i, c in enumerate(sorted(ByteLevel.alphabet()))}
    vocab["<|endoftext|>"] = len(vocab)
    tok = Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=None, bos_token=None, pad_token="<|endoftext|>",
                         eos_token="<|endoftext|>")
    if special:  # False: a plain text tokenizer, what a wrong file looks like
        tok.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    return tok


def tiny_lm(vocab_size: int, seed: int = 0):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=False, pad_token_id=0, bos_token_id=0, eos_token_id=0)
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():  # larger logits than the default init, so greedy tokens vary across steps
        model.lm_head.weight.normal_(0, 0.5)
    return model


def write_folder(root: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """(language-model folder, ``decoder.jit``) of a tiny SimpleAR with ``TINY``'s 24 image codes."""
    root = Path(root)
    tok = tiny_tokenizer()
    lm = tiny_lm(len(tok) + TINY.codebook_size, seed)
    folder = root / "SimpleAR-tiny"
    lm.save_pretrained(folder, max_shard_size="100KB")  # several shards and an index, as the 1.5B repos
    tok.save_pretrained(folder)
    return folder, write_decoder_jit(root / "cosmos" / "decoder.jit", upstream_decoder(TINY, seed))
