"""Tiny AR-GRPO model folders, written in the layout of its ``save_pretrained`` (``docs/models_ar_grpo.md``).

The architecture names ``GPT-tiny`` / ``VQ-tiny`` stand for the tiny sizes of :mod:`.llamagen`, so a folder
here holds exactly the weights :func:`~.llamagen.write_preset_files` writes in LlamaGen's own layout for the
same seed: loading both must give the same model.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..models.llamagen.ar_grpo import MODEL_TYPE
from ..models.llamagen.presets import T5_REPO
from .llamagen import TINY_VQ, random_gpt, random_vq, tiny_gpt_config

_TINY = tiny_gpt_config("t2i")
TINY_GPT_ARCHS = {"GPT-tiny": dict(dim=_TINY.dim, n_layer=_TINY.n_layer, n_head=_TINY.n_head,
                                   multiple_of=_TINY.multiple_of, vocab_size=_TINY.vocab_size,
                                   caption_dim=_TINY.caption_dim, null_caption_len=_TINY.null_caption_len,
                                   num_classes=_TINY.num_classes)}
TINY_VQ_ARCHS = {"VQ-tiny": TINY_VQ}
TINY_ARCHS = dict(gpt_archs=TINY_GPT_ARCHS, vq_archs=TINY_VQ_ARCHS)  # load_folder(..., **TINY_ARCHS)


def tiny_config(kind: str = "t2i", **changes) -> dict:
    """config.json as AR-GRPO's save_pretrained writes it (its config class's fields, transformers' own keys)."""
    gpt = tiny_gpt_config(kind)
    config = {
        "architectures": [MODEL_TYPE], "model_type": MODEL_TYPE,
        "vq_model": "VQ-tiny", "gpt_model": "GPT-tiny", "codebook_size": TINY_VQ.codebook_size,
        "codebook_embed_dim": TINY_VQ.codebook_embed_dim, "image_size": gpt.grid * TINY_VQ.downsample,
        "downsample_size": TINY_VQ.downsample, "cls_token_num": gpt.cls_token_num, "gpt_type": kind,
        "text_encoder_ckpt": "", "text_encoder": T5_REPO, "text_feature_max_len": gpt.cls_token_num if
        kind == "t2i" else 120, "dropout_p": 0.0, "token_dropout_p": 0.0, "drop_path_rate": 0.0,
        "delay_load_text_encoder": False, "torch_dtype": "float32", "transformers_version": "4.49.0",
    }
    config.update(changes)
    return config


def tiny_state_dict(model_type: str = "t2i", seed: int = 0) -> dict[str, torch.Tensor]:
    """The wrapper's state dict: ``gpt_model.*`` and ``vq_model.*`` (with the VQ's usage buffer)."""
    sd = {f"gpt_model.{k}": v for k, v in random_gpt(tiny_gpt_config(model_type), seed).state_dict().items()}
    sd.update({f"vq_model.{k}": v for k, v in random_vq(TINY_VQ, seed).state_dict().items()})
    return sd


def write_folder(folder: str | Path, kind: str = "t2i", seed: int = 0, shards: int = 1,
                 safetensors: bool = True, state_dict: dict | None = None, **config_changes) -> Path:
    """Write config.json (``kind``: its gpt_type, t2i or c2i) and the weights (one file, or about ``shards`` files with an index, as huggingface_hub's
    save_torch_state_dict names and packs them). ``state_dict`` replaces the tiny model's (to write a damaged one)."""
    from huggingface_hub import save_torch_state_dict

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(tiny_config(kind, **config_changes), indent=2))
    sd = state_dict if state_dict is not None else tiny_state_dict(kind, seed)
    if not sd:
        return folder  # a config alone (weights are read only after the config is checked)
    total = sum(t.numel() * t.element_size() for t in sd.values())
    pattern = "model{suffix}.safetensors" if safetensors else "pytorch_model{suffix}.bin"
    save_torch_state_dict(sd, folder, filename_pattern=pattern, safe_serialization=safetensors,
                          max_shard_size=total if shards == 1 else total // shards + 1)
    return folder
