"""Which Janus-Pro tensors text-to-image needs, read from a folder in either published layout.

* transformers layout (``deepseek-community/Janus-Pro-*``): ``config.json`` with ``model_type: janus``,
  ``model.safetensors`` or shards listed in ``model.safetensors.index.json``.
* original layout (``deepseek-ai/Janus-Pro-*``, what most ComfyUI users downloaded): ``config.json`` with
  ``language_config`` / ``gen_*_config``, ``pytorch_model.bin`` or shards listed in
  ``pytorch_model.bin.index.json``. Read with ``torch.load(weights_only=True)`` only.

Keys come out in transformers' names without the leading ``model.`` (our :class:`~.model.JanusGenerator`
holds those modules under the same names). The original names are renamed by the facts transformers'
conversion script encodes (``language_model.model`` -> ``language_model``, ``gen_embed`` ->
``generation_embeddings``, ``gen_aligner.layers.0/2`` -> ``fc1``/``hidden_layers.0``, ``gen_head``'s
``output_mlp_projector`` -> ``proj_out``, and in the VQ ``conv_blocks`` -> ``up``, ``res`` -> ``block``,
``mid.0/1/2`` -> ``mid.block_1/attn_1/block_2``). The understanding path (SigLIP tower, aligner), the text
``lm_head``, the VQ encoder and the codebook usage counter are never read.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from ..checkpoints import read_file, unwrap

# transformers names (after "model.") of everything text-to-image runs
NEEDED = ("language_model.", "generation_embeddings.", "generation_aligner.", "generation_head.",
          "vqmodel.quantize.", "vqmodel.post_quant_conv.", "vqmodel.decoder.")
# read but not needed: understanding path, text head, VQ encoder side
SKIPPED = ("vision_model.", "aligner.", "lm_head.", "vqmodel.encoder.", "vqmodel.quant_conv.",
           "vqmodel.quantize.codebook_used")

_VQ_RENAMES = [(re.compile(p), r) for p, r in (
    (r"\.conv_blocks\.", ".up."), (r"\.res\.", ".block."),
    (r"\.mid\.0\.", ".mid.block_1."), (r"\.mid\.1\.", ".mid.attn_1."), (r"\.mid\.2\.", ".mid.block_2."))]
_ORIGINAL_PREFIXES = (
    ("language_model.model.", "language_model."),
    ("language_model.lm_head.", "lm_head."),
    ("gen_embed.", "generation_embeddings."),
    ("gen_aligner.layers.0.", "generation_aligner.fc1."),
    ("gen_aligner.layers.2.", "generation_aligner.hidden_layers.0."),
    ("gen_head.output_mlp_projector.", "generation_head.proj_out."),
    ("gen_head.vision_head.", "generation_head.vision_head."),
    ("gen_vision_model.", "vqmodel."),
)


def from_original(key: str) -> str:
    """An original ``deepseek-ai`` Janus key in transformers' naming (without ``model.``)."""
    for old, new in _ORIGINAL_PREFIXES:
        if key.startswith(old):
            key = new + key[len(old):]
            break
    if key.startswith("vqmodel."):
        for pattern, repl in _VQ_RENAMES:
            key = pattern.sub(repl, key)
    return key


def from_transformers(key: str) -> str:
    return key.removeprefix("model.")


def needed(key: str) -> bool:
    """False for tensors text-to-image never uses; unknown keys count as needed so a key check names them."""
    return not key.startswith(SKIPPED)


def layout(config: dict) -> str:
    """``"transformers"`` or ``"original"`` from a folder's parsed ``config.json``."""
    if config.get("model_type") == "janus":
        return "transformers"
    if "language_config" in config and "gen_head_config" in config:
        return "original"
    raise ValueError(f"config.json is neither a transformers Janus config (model_type 'janus') nor an original "
                     f"Janus-Pro config (language_config, gen_*_config); model_type is {config.get('model_type')!r}")


WEIGHT_FILES = {"transformers": ("model.safetensors.index.json", "model.safetensors"),
                "original": ("pytorch_model.bin.index.json", "pytorch_model.bin")}


def weight_files(folder: Path, kind: str) -> tuple[list[str], list[str]]:
    """(files to read, files missing) for a folder of layout ``kind``: the index's shards, else the single
    file. A missing index and single file counts as the single file missing."""
    index_name, single = WEIGHT_FILES[kind]
    index = folder / index_name
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        shards = [single]
    return shards, [s for s in shards if not (folder / s).is_file()]


def read_weights(folder: Path, kind: str, hint: str) -> dict[str, torch.Tensor]:
    """The needed tensors of a complete folder (see :func:`weight_files`), in our naming."""
    rename = from_transformers if kind == "transformers" else from_original
    out: dict[str, torch.Tensor] = {}
    for name in weight_files(folder, kind)[0]:
        path = folder / name
        if path.suffix == ".safetensors":
            out.update(_read_safetensors(path, rename, hint))
        else:
            for key, value in unwrap(read_file(path, hint), path).items():
                key = rename(key)
                if needed(key):
                    out[key] = value
    return out


def _read_safetensors(path: Path, rename, hint: str) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:  # only the needed tensors are read
            return {rename(k): f.get_tensor(k) for k in f.keys() if needed(rename(k))}
    except Exception as exc:  # SafetensorError is not importable under a stable name
        from ..checkpoints import CheckpointError
        raise CheckpointError(f"checkpoint {path} is incomplete or corrupt ({exc}); {hint}") from exc
