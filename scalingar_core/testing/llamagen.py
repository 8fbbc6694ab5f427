"""Tiny LlamaGen-layout models with random weights, written in the upstream file layouts.

For tests and benchmarks on machines that cannot reach the Hub: the key names, nesting, prefixes and
dtypes are those of the released files (``docs/models.md``); only the sizes are small.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ..models.download import repo_folder
from ..models.gpt import GPT, GPTConfig
from ..models.llamagen.presets import Preset
from ..models.protocol import SamplingDefaults
from ..models.vq16 import VQConfig, VQModel

TINY_VQ = VQConfig(codebook_size=64, codebook_embed_dim=8, ch=32, ch_mult=(1, 1, 2, 2, 4), z_channels=32,
                   usage_buffer=256)


def tiny_gpt_config(model_type: str = "t2i", **overrides) -> GPTConfig:
    cfg = GPTConfig(dim=64, n_layer=2, n_head=4, multiple_of=32, vocab_size=TINY_VQ.codebook_size, block_size=16,
                    cls_token_num=8 if model_type == "t2i" else 1, caption_dim=16, null_caption_len=10,
                    model_type=model_type, num_classes=10)
    return replace(cfg, **overrides) if overrides else cfg


def tiny_preset(name: str = "tiny-t2i", model_type: str = "t2i", padding_side: str = "left",
                filename: str = "gpt.pt", vq_filename: str = "vq.pt", **gpt_overrides) -> Preset:
    gpt = tiny_gpt_config(model_type, **gpt_overrides)
    return Preset(name=name, description="tiny synthetic test model", gpt=gpt, repo_id="test/tiny-gpt",
                  filename=filename, vq_repo_id="test/tiny-vq", vq_filename=vq_filename,
                  defaults=SamplingDefaults(cfg_scale=2.0), image_size=gpt.grid * TINY_VQ.downsample,
                  padding_side=padding_side, vq=TINY_VQ,
                  text_encoder_repo="test/tiny-t5" if model_type == "t2i" else None)


def random_gpt(cfg: GPTConfig, seed: int = 0) -> GPT:
    """A GPT with every weight random (including ``output``, which upstream initialises to zero)."""
    torch.manual_seed(seed)
    model = GPT(cfg)
    with torch.no_grad():
        model.output.weight.normal_(0, 0.5)  # non-zero logits so comparisons mean something
        for layer in model.layers:  # larger residual updates make attention differences visible
            layer.attention.wo.weight.normal_(0, 0.2)
            layer.feed_forward.w2.weight.normal_(0, 0.2)
    return model.eval()


def random_vq(cfg: VQConfig = TINY_VQ, seed: int = 0) -> VQModel:
    torch.manual_seed(seed)
    vq = VQModel(cfg)
    with torch.no_grad():
        vq.quantize.embedding.weight.normal_()
    return vq.eval()


def write_tiny_t5(folder: str | Path, d_model: int = 16, seed: int = 0) -> Path:
    """A random T5 encoder and a word-level tokenizer (T5's specials: <pad>=0, </s>=1, <unk>=2)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    folder = Path(folder)
    words = ("a an the of on in with and photo painting picture cat dog bird car house tree red green blue "
             "yellow black white big small sitting running flying under over near sky river mountain").split()
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(str(folder))
    torch.manual_seed(seed)
    cfg = T5Config(vocab_size=len(vocab), d_model=d_model, d_kv=8, num_heads=2, num_layers=1, d_ff=32,
                   feed_forward_proj="gated-gelu", is_encoder_decoder=False)
    T5EncoderModel(cfg).save_pretrained(str(folder))
    return folder


def write_preset_files(p: Preset, models_dir: str | Path, layout: str = "llamagen", seed: int = 0,
                       with_t5: bool = True) -> dict[str, Path]:
    """Write random weights for ``p`` under ``models_dir`` in one of the upstream layouts.

    ``llamagen``: ``{"model": sd}`` fp32 ``.pt`` for the GPT and the VQ; ``bare``: the bare dict (FSDP
    c2i files). AR-GRPO's folders: :mod:`.ar_grpo`."""
    gpt_sd = random_gpt(p.gpt, seed).state_dict()
    vq_sd = random_vq(p.vq, seed).state_dict()
    gpt_path = repo_folder(models_dir, p.repo_id) / p.filename
    vq_path = repo_folder(models_dir, p.vq_repo_id) / p.vq_filename
    gpt_path.parent.mkdir(parents=True, exist_ok=True)
    vq_path.parent.mkdir(parents=True, exist_ok=True)
    if layout == "llamagen":
        torch.save({"model": gpt_sd}, gpt_path)
        torch.save({"model": vq_sd}, vq_path)
    elif layout == "bare":
        torch.save(gpt_sd, gpt_path)
        torch.save({"model": vq_sd}, vq_path)
    else:
        raise ValueError(f"unknown layout {layout!r}: llamagen or bare")
    out = {"gpt": gpt_path, "vq": vq_path}
    if with_t5 and p.text_encoder_repo:
        out["t5"] = write_tiny_t5(repo_folder(models_dir, p.text_encoder_repo), d_model=p.gpt.caption_dim)
    return out
