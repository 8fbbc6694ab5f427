"""AR-GRPO's released checkpoints: a transformers-style folder built from its own ``config.json``, loaded strictly.

AR-GRPO (``docs/models_ar_grpo.md``) wraps LlamaGen's GPT and VQ-16 in one transformers model whose
``save_pretrained`` writes ``config.json`` (what to build) and the weights (``model.safetensors``, shards with an
index, or ``pytorch_model.bin``) with every key under ``gpt_model.`` or ``vq_model.``. Its own loader is
non-strict; ours lists every missing, unexpected or wrongly shaped key and loads nothing in that case.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch
import torch.nn as nn

from ...errors import echo
from ..checkpoints import CheckpointError, check_state_dict, load_module, read_file, unwrap
from ..download import ModelFileError, ensure_snapshot, fetch_command, repo_folder
from ..gpt import GPT, GPTConfig, gpt_config, param_count
from ..gpt import PRESETS as GPT_SIZES
from ..protocol import ModelInfo, SamplingDefaults
from ..vq16 import VQConfig, VQModel
from .presets import T5_PATTERNS, T5_REPO, text_encoder_file

MODEL_TYPE = "ImgGen_HF"  # config.json's model_type for AR-GRPO's wrapper
# config.json's gpt_model / vq_model -> what they build (upstream's GPT_models and VQ_models tables). The GPT's
# vocabulary, caption width, null-caption rows and class count are upstream's fixed defaults, never read from
# the config.
GPT_ARCHS: dict[str, dict] = {f"GPT-{k}": dict(dim=d, n_layer=n, n_head=h) for k, (d, n, h) in GPT_SIZES.items()}
VQ_ARCHS: dict[str, VQConfig] = {"VQ-16": VQConfig()}
# What save_pretrained writes for every model (and, for t2i, the text side): all are needed to build it.
REQUIRED = ("gpt_model", "gpt_type", "image_size", "downsample_size", "cls_token_num", "vq_model", "codebook_size",
            "codebook_embed_dim")
T2I_REQUIRED = ("text_encoder", "text_feature_max_len")
TEXT_ENCODERS = (T5_REPO,)  # the only caption encoder whose width (2048) the GPT reads
USAGE_BUFFER = "vq_model.quantize.codebook_used"  # the VQ's training-time usage counter: never read
# GRPO's frozen reference policy: a submodule of the wrapper until training ends, so a checkpoint-N folder holds
# a second, untrained copy of every key under this prefix. It is checked as strictly, then dropped.
REFERENCE = "ref_model."
# save_pretrained's file names: (single file, shard index), safetensors first.
WEIGHT_LAYOUTS = (("model.safetensors", "model.safetensors.index.json"),
                  ("pytorch_model.bin", "pytorch_model.bin.index.json"))
# What a preset download fetches: the config and the safetensors weights, single or sharded (over 5 GB,
# transformers 4.53's default shard size, a checkpoint is split).
DOWNLOAD_PATTERNS = ("config.json", "model.safetensors", "model.safetensors.index.json", "model-*.safetensors")
DOWNLOAD_REQUIRED = ("config.json", "model*.safetensors")
CONFIG_LIMIT = 1_000_000  # bytes: a config.json bigger than this is not one (never read a huge file to list it)


@dataclass(frozen=True)
class FolderConfig:
    """What a folder's ``config.json`` builds."""

    gpt: GPTConfig
    vq: VQConfig
    arch: str  # gpt_model, e.g. "GPT-XL"
    text_encoder: str | None  # Hugging Face repo of the caption encoder (t2i)

    @property
    def image_size(self) -> int:
        return self.gpt.grid * self.vq.downsample

    def describe(self) -> str:
        return (f"{self.arch} {self.gpt.model_type}, {self.image_size} px ({self.gpt.grid}x{self.gpt.grid} tokens), "
                f"prefix {self.gpt.cls_token_num}, codebook {self.vq.codebook_size}")


def _positive_int(data: dict, key: str, path: Path) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{path}: {key} must be a positive whole number, got {echo(value)}")
    return value


def read_config(folder: str | Path, gpt_archs: dict[str, dict] = GPT_ARCHS,
                vq_archs: dict[str, VQConfig] = VQ_ARCHS) -> FolderConfig:
    """The GPT and VQ that ``folder/config.json`` describes (every build key required; unknown names refused)."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no config.json: an AR-GRPO model folder holds the config.json and "
                                f"the weights its save_pretrained wrote; copy both from the model's repository")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); fetch it again from the model's repository") from exc
    if not isinstance(data, dict) or data.get("model_type") != MODEL_TYPE:
        found = data.get("model_type") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path} is not an AR-GRPO config: model_type is {echo(found)}, expected {MODEL_TYPE!r}")
    kind = data.get("gpt_type")
    if kind not in ("t2i", "c2i"):
        raise ValueError(f"{path}: gpt_type must be 't2i' or 'c2i', got {echo(kind)}")
    missing = [k for k in REQUIRED + (T2I_REQUIRED if kind == "t2i" else ()) if k not in data]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}: AR-GRPO's save_pretrained writes each of them, so "
                         f"the file is incomplete or comes from another model")
    arch, vq_name = data["gpt_model"], data["vq_model"]
    if arch not in gpt_archs:
        raise ValueError(f"{path} names gpt_model {echo(arch)}, an architecture this loader does not know; "
                         f"known: {', '.join(gpt_archs)}")
    if vq_name not in vq_archs:
        raise ValueError(f"{path} names vq_model {echo(vq_name)}, a tokenizer this loader does not know; "
                         f"known: {', '.join(vq_archs)}")
    image_size, down, prefix, codes, code_dim = (_positive_int(data, k, path) for k in (
        "image_size", "downsample_size", "cls_token_num", "codebook_size", "codebook_embed_dim"))
    vq = replace(vq_archs[vq_name], codebook_size=codes, codebook_embed_dim=code_dim)
    if down != vq.downsample:
        raise ValueError(f"{path}: downsample_size {down} does not match {vq_name}, which downsamples by "
                         f"{vq.downsample}")
    if image_size % down:
        raise ValueError(f"{path}: image_size {image_size} is not a multiple of downsample_size {down}")
    text_encoder = None
    if kind == "t2i":
        text_encoder = data["text_encoder"]
        if text_encoder not in TEXT_ENCODERS:
            raise ValueError(f"{path} names text_encoder {echo(text_encoder)}; this loader knows "
                             f"{', '.join(TEXT_ENCODERS)} (the GPT reads its 2048-wide features)")
        # upstream feeds text_feature_max_len caption slots as the cls_token_num-long prefix
        if _positive_int(data, "text_feature_max_len", path) != prefix:
            raise ValueError(f"{path}: text_feature_max_len {data['text_feature_max_len']} differs from "
                             f"cls_token_num {prefix}; AR-GRPO's sampler only works when they are equal")
    try:
        gpt = GPTConfig(**gpt_archs[arch], model_type=kind, block_size=(image_size // down) ** 2,
                        cls_token_num=prefix)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    if gpt.vocab_size != codes:
        raise ValueError(f"{path}: codebook_size {codes} differs from the GPT's vocabulary of {gpt.vocab_size} "
                         f"tokens (upstream fixes it; the config does not set it)")
    return FolderConfig(gpt=gpt, vq=vq, arch=arch, text_encoder=text_encoder)


def is_model_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder with an AR-GRPO ``config.json`` (only that small file is read)."""
    config = Path(path) / "config.json"
    try:
        if config.stat().st_size > CONFIG_LIMIT:
            return False
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and data.get("model_type") == MODEL_TYPE


def _shards(index: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        names = sorted(set(weight_map.values()))
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{index} is not a shard index (no readable weight_map: {type(exc).__name__}); "
                              f"fetch it again from the model's repository") from exc
    for name in names:  # names come from a file: never let one point outside the folder
        if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name:
            raise CheckpointError(f"{index} names a shard {echo(name)} outside its folder; fetch it again")
    return [index.parent / name for name in names]


def weight_files(folder: str | Path) -> list[Path]:
    """The weight files of ``folder`` as save_pretrained names them: one file, or every shard its index lists
    (safetensors before ``.bin``). Empty when there are none."""
    folder = Path(folder)
    for single, index in WEIGHT_LAYOUTS:
        if (folder / single).is_file():
            return [folder / single]
        if (folder / index).is_file():
            return _shards(folder / index)
    return []


def read_weights(files: list[Path], hint: str | None = None) -> dict[str, torch.Tensor]:
    """Every tensor of the (sharded) checkpoint, keys as written (safetensors, or ``.bin`` weights-only)."""
    sd: dict[str, torch.Tensor] = {}
    for path in files:
        part = unwrap(read_file(path, hint), path)
        twice = sorted(set(part) & set(sd))
        if twice:
            raise CheckpointError(f"{path} repeats {len(twice)} key(s) of another shard ({twice[0]} ...); "
                                  f"{hint or 'fetch the model again'}")
        sd.update(part)
    return sd


class ImgGen(nn.Module):
    """The GPT and the VQ under the names AR-GRPO's wrapper gives them, so its keys match ours one for one."""

    def __init__(self, gpt: GPT, vq: VQModel):
        super().__init__()
        self.gpt_model = gpt
        self.vq_model = vq


def load_folder(folder: str | Path, name: str | None = None, defaults: SamplingDefaults | None = None,
                models_dir: str | Path | None = None, device=None, dtype=None, download: bool = False,
                progress=None, offload_text_encoder: bool | None = None, hint: str | None = None,
                gpt_archs: dict[str, dict] = GPT_ARCHS, vq_archs: dict[str, VQConfig] = VQ_ARCHS):
    """The model in AR-GRPO folder ``folder``, built from its ``config.json`` and loaded strictly.

    The t2i caption encoder is looked up in ``models_dir`` (default: the folder holding ``folder``).
    ``defaults`` (default: the rollout settings for its kind) and ``name`` (default: the folder's name) only
    label it. ``hint`` says how to get the weights again in error messages."""
    from ..device import resolve_device, resolve_dtype
    from .adapter import LlamaGenModel, load_text_encoder  # heavy imports only when a model is loaded

    folder = Path(folder)
    cfg = read_config(folder, gpt_archs, vq_archs)
    files = weight_files(folder)
    if not files:
        raise ModelFileError(f"{folder} holds config.json but no weights: save_pretrained writes model.safetensors "
                             f"(or shards listed in model.safetensors.index.json, or pytorch_model.bin); "
                             f"{hint or 'copy them next to config.json'}")
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    t5_folder = None
    if cfg.text_encoder:
        t5_folder = ensure_snapshot(cfg.text_encoder, models_dir or folder.parent, T5_PATTERNS, ("config.json",),
                                    download, progress)
    sd = read_weights(files, hint)
    with torch.device("meta"):
        gpt = GPT(cfg.gpt, init=False)
        vq = VQModel(cfg.vq)
    source = str(files[0]) if len(files) == 1 else f"{folder} ({len(files)} shards)"
    expected = ImgGen(gpt, vq)
    if any(k.startswith(REFERENCE) for k in sd):
        expected.ref_model = ImgGen(gpt, vq)  # the same shapes under the reference copy's names
    check_state_dict(expected, sd, f"the model its config.json describes ({cfg.describe()})", source,
                     optional=(USAGE_BUFFER, REFERENCE + USAGE_BUFFER),
                     advice="config.json and the weights must come from the same save_pretrained: fetch both "
                            "again from the model's repository.")
    parts: dict[str, dict[str, torch.Tensor]] = {"gpt_model": {}, "vq_model": {}, REFERENCE[:-1]: {}}
    for key in list(sd):  # every key has one of the known prefixes: the check above passed
        prefix, rest = key.split(".", 1)
        parts[prefix][rest] = sd.pop(key)
    del parts[REFERENCE[:-1]]  # the policy before GRPO: not the released model
    load_module(gpt, parts["gpt_model"], cfg.arch, source, device=device, dtype=dtype)
    load_module(vq, parts["vq_model"], "VQ", source, device=device, dtype=torch.float32,
                optional=("quantize.codebook_used",))  # the VQ stays fp32, as upstream decodes
    name = name or folder.name
    if offload_text_encoder is None:
        offload_text_encoder = device.type != "cpu"
    text_encoder = None
    if t5_folder is not None:
        text_encoder = load_text_encoder(t5_folder, name, cfg.gpt.caption_dim, cfg.gpt.cls_token_num, device, dtype,
                                         offload_text_encoder)
    defaults = defaults or (T2I_DEFAULTS if cfg.gpt.model_type == "t2i" else C2I_DEFAULTS)
    return LlamaGenModel(name, gpt, vq, text_encoder, defaults, padding_side="right")


# ---------------------------------------------------------------------------------------------------------
# The five released checkpoints

# Chosen: the GRPO rollout settings, the distribution the reward optimised (run_t2i_train.sh, run_c2i_train.sh).
T2I_DEFAULTS = SamplingDefaults(cfg_scale=4.0, top_k=0, top_p=1.0, temperature=1.0)
C2I_DEFAULTS = SamplingDefaults(cfg_scale=2.0, top_k=0, top_p=1.0, temperature=1.0)
T2I_NOTES = (
    "defaults: the GRPO rollout settings of run_t2i_train.sh (cfg 4.0, top-k 0, top-p 1.0, temperature 1.0)",
    "test_t2i.py's own defaults: cfg 7.5, top-k 2000, top-p 1.0, temperature 1.0",
    "test_t2i.sh passes --cfg (default 2.0), which argparse takes as --cfg_scale: cfg 2.0 with top-k 2000",
)
C2I_NOTES = (
    "defaults: the GRPO rollout settings of run_c2i_train.sh (cfg 2.0, top-k 0, top-p 1.0, temperature 1.0); "
    "test.py / test.sh (FID samples) use the same: --cfg default 2.0, top-k 0, top-p 1.0",
)
COMMON_NOTES = (
    "files: config.json and model.safetensors (or shards with their index) as save_pretrained names them; the "
    "Hub listing was not checked (UNVERIFIED); the loader also reads pytorch_model.bin",
    "the training script exits inside its step checkpoint, before dropping the frozen reference copy, so the "
    "files may also hold ref_model.* keys (UNVERIFIED); they are checked, then left out",
    "weights license not stated; download them yourself",
)


@dataclass(frozen=True)
class ArGrpoPreset:
    """A released AR-GRPO checkpoint: its repository and what its name says it is (config.json decides)."""

    name: str
    repo_id: str
    arch: str  # GPT size, e.g. "XL"
    model_type: str
    image_size: int
    base: str  # the LlamaGen checkpoint GRPO started from
    weight_bytes: int  # bytes per stored parameter: t2i forced to bf16 in training; c2i fp32 (inferred)

    @property
    def gpt(self) -> GPTConfig:
        return gpt_config(self.arch, self.model_type, self.image_size)

    @property
    def defaults(self) -> SamplingDefaults:
        return T2I_DEFAULTS if self.model_type == "t2i" else C2I_DEFAULTS

    @property
    def notes(self) -> tuple[str, ...]:
        return (T2I_NOTES if self.model_type == "t2i" else C2I_NOTES) + COMMON_NOTES

    @property
    def description(self) -> str:
        cond = "text-to-image, FLAN-T5-XL captions (right-padded)" if self.model_type == "t2i" else \
            "class-to-image, ImageNet class id as the prompt"
        return f"AR-GRPO: LlamaGen {self.model_type.upper()} GPT-{self.arch} {self.image_size} px fine-tuned with " \
               f"GRPO, {cond}"

    def files(self) -> list[dict]:
        from .adapter import vq_param_count

        # counted twice: a checkpoint-N folder also holds the frozen reference copy (REFERENCE)
        params = 2 * (param_count(self.gpt, with_buffers=True) + vq_param_count(VQConfig()))
        out = [{"repo_id": self.repo_id, "filename": "*", "patterns": list(DOWNLOAD_PATTERNS),
                "required": DOWNLOAD_REQUIRED, "role": "config+gpt+vq", "size": params * self.weight_bytes,
                "dtype": "bf16" if self.weight_bytes == 2 else "fp32 (inferred)"}]
        if self.model_type == "t2i":
            out.append(text_encoder_file())
        return out

    def info(self) -> ModelInfo:
        extra = {"model_type": self.model_type, "image_size": self.image_size, "padding_side": "right",
                 "parameters": param_count(self.gpt), "repo_id": self.repo_id, "base_checkpoint": self.base,
                 "notes": list(self.notes)}
        return ModelInfo(name=self.name, description=self.description, grid=(self.gpt.grid, self.gpt.grid),
                         vocab_size=self.gpt.vocab_size, defaults=self.defaults, extra=extra)


def _c2i(arch: str, size: int) -> ArGrpoPreset:
    return ArGrpoPreset(f"ar-grpo-c2i-{arch.lower()}-{size}", f"CSshihao/AR-GRPO_C2I_{arch}_{size}", arch, "c2i",
                        size, f"FoundationVision/LlamaGen c2i_{arch}_{size}.pt", weight_bytes=4)


PRESETS: dict[str, ArGrpoPreset] = {p.name: p for p in [
    ArGrpoPreset("ar-grpo-t2i-xl-256", "CSshihao/AR-GRPO_T2I_XL_256", "XL", "t2i", 256,
                 "peizesun/llamagen_t2i t2i_XL_stage1_256.pt", weight_bytes=2),
    _c2i("B", 256), _c2i("B", 384), _c2i("L", 384), _c2i("XL", 384),
]}


def load_preset(p: ArGrpoPreset, models_dir=None, device=None, dtype=None, download: bool = False, progress=None,
                offload_text_encoder: bool | None = None):
    """Preset ``p`` from ``<models_dir>/<owner>--<name>/`` (missing files fetched only when ``download``)."""
    folder = repo_folder(models_dir, p.repo_id)
    problems = []
    if not ((folder / "config.json").is_file() and weight_files(folder)):  # local .bin weights count too
        try:
            ensure_snapshot(p.repo_id, models_dir, list(DOWNLOAD_PATTERNS), DOWNLOAD_REQUIRED, download, progress)
        except ModelFileError as exc:
            problems.append(str(exc))
    if p.model_type == "t2i":
        try:
            ensure_snapshot(T5_REPO, models_dir, T5_PATTERNS, ("config.json",), download, progress)
        except ModelFileError as exc:
            problems.append(str(exc))
    if problems:
        raise ModelFileError(f"{p.name} cannot be loaded:\n- " + "\n- ".join(problems))
    hint = f"fetch the folder again with `{fetch_command(p.repo_id, None, folder, list(DOWNLOAD_PATTERNS))}`"
    return load_folder(folder, name=p.name, defaults=p.defaults, models_dir=models_dir, device=device, dtype=dtype,
                       download=download, progress=progress, offload_text_encoder=offload_text_encoder, hint=hint)


def match_file(path: str | Path) -> Path | None:
    """The AR-GRPO folder whose weights ``path`` is: its single weight file or its first shard (one entry per
    folder in a model list). Only the folder's small config.json and shard index are read."""
    path = Path(path)
    if not is_model_folder(path.parent):
        return None
    try:
        files = weight_files(path.parent)
    except CheckpointError:
        return None
    return path.parent if files and files[0] == path else None


def preset_for_folder(folder: Path) -> ArGrpoPreset | None:
    """The preset whose repository ``folder`` holds, by the registry's ``<owner>--<name>`` folder name."""
    return next((p for p in PRESETS.values() if folder.name == p.repo_id.replace("/", "--")), None)


def load_checkpoint(folder: str | Path, device=None, dtype=None, models_dir=None, **kwargs):
    """Load a local AR-GRPO folder (a preset's folder keeps its name and defaults); the caption encoder is
    looked up next to it unless ``models_dir`` says where."""
    folder = Path(folder)
    p = preset_for_folder(folder)
    return load_folder(folder, name=p.name if p else None, defaults=p.defaults if p else None,
                       models_dir=models_dir, device=device, dtype=dtype, **kwargs)


def register_models(register) -> None:
    from ..registry import ModelEntry
    for p in PRESETS.values():
        register(ModelEntry(info=p.info(), loader=partial(load_preset, p), files=p.files()))
