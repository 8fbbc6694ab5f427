"""Registry entries for the released LlamaGen checkpoints (``docs/models.md``), and the family's hooks
(``match_file``, ``load_checkpoint``, ``register_models``) that also cover AR-GRPO (``ar_grpo.py``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from ..gpt import GPTConfig, gpt_config, param_count
from ..protocol import ModelInfo, SamplingDefaults
from ..vq16 import VQConfig

T2I_REPO = "peizesun/llamagen_t2i"
C2I_REPO = "FoundationVision/LlamaGen"
T5_REPO = "google/flan-t5-xl"
# What a T5 snapshot needs (encoder weights come from the full model's safetensors shards).
T5_PATTERNS = ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
               "spiece.model", "*.safetensors", "*.safetensors.index.json"]
T5_DOWNLOAD_BYTES = 11_400_000_000  # FLAN-T5-XL safetensors (encoder + decoder, fp32), approximate


def text_encoder_file(patterns=tuple(T5_PATTERNS)) -> dict:
    """The FLAN-T5-XL snapshot as a registry file entry (what a text encoder download fetches)."""
    return {"repo_id": T5_REPO, "filename": "*", "patterns": list(patterns), "role": "text_encoder",
            "size": T5_DOWNLOAD_BYTES}


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    gpt: GPTConfig
    repo_id: str
    filename: str
    vq_repo_id: str
    vq_filename: str
    defaults: SamplingDefaults
    image_size: int
    padding_side: str = "left"  # t2i caption layout: LlamaGen left, AR-GRPO right (docs/models.md)
    vq: VQConfig = VQConfig()
    text_encoder_repo: str | None = T5_REPO  # None for c2i
    notes: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)
    text_encoder_patterns: tuple[str, ...] = tuple(T5_PATTERNS)  # what a text-encoder download fetches

    @property
    def grid(self) -> tuple[int, int]:
        return (self.gpt.grid, self.gpt.grid)

    def files(self) -> list[dict]:
        out = [{"repo_id": self.repo_id, "filename": self.filename, "role": "gpt",
                "size": 4 * param_count(self.gpt, with_buffers=True), "dtype": "fp32"},
               {"repo_id": self.vq_repo_id, "filename": self.vq_filename, "role": "vq", "size": 288_000_000}]
        if self.text_encoder_repo:
            out.append({**text_encoder_file(self.text_encoder_patterns), "repo_id": self.text_encoder_repo})
        return out

    def info(self) -> ModelInfo:
        extra = {"model_type": self.gpt.model_type, "image_size": self.image_size, "padding_side": self.padding_side,
                 "parameters": param_count(self.gpt), "repo_id": self.repo_id, "filename": self.filename,
                 "notes": list(self.notes), **self.extra}
        return ModelInfo(name=self.name, description=self.description, grid=self.grid,
                         vocab_size=self.gpt.vocab_size, defaults=self.defaults, extra=extra)


LLAMAGEN_T2I_DEFAULTS = SamplingDefaults(cfg_scale=7.5, top_k=1000, top_p=1.0, temperature=1.0)
# sample_c2i.py; the FID runs use top_k 0 and the per-size cfg in C2I_FID_CFG instead.
LLAMAGEN_C2I_DEFAULTS = SamplingDefaults(cfg_scale=4.0, top_k=2000, top_p=1.0, temperature=1.0)
C2I_FID_CFG = {"B": 2.0, "L": 2.0, "XL": 1.75, "XXL": 1.75, "3B": 1.65}

# Released c2i checkpoints: (preset, image size).
C2I_RELEASED = [("B", 256), ("B", 384), ("L", 256), ("L", 384), ("XL", 384), ("XXL", 384), ("3B", 384)]


def _t2i(size: int, filename: str, stage: str) -> Preset:
    return Preset(
        name=f"llamagen-t2i-xl-{size}",
        description=f"LlamaGen text-to-image GPT-XL (775M), {size} px ({stage}), FLAN-T5-XL captions",
        gpt=gpt_config("XL", "t2i", size), repo_id=T2I_REPO, filename=filename, vq_repo_id=T2I_REPO,
        vq_filename="vq_ds16_t2i.pt", defaults=LLAMAGEN_T2I_DEFAULTS, image_size=size, padding_side="left")


def _c2i(arch: str, size: int) -> Preset:
    return Preset(
        name=f"llamagen-c2i-{arch.lower()}-{size}",
        description=f"LlamaGen class-to-image GPT-{arch}, {size} px, ImageNet class id as the prompt",
        gpt=gpt_config(arch, "c2i", size), repo_id=C2I_REPO, filename=f"c2i_{arch}_{size}.pt",
        vq_repo_id=C2I_REPO, vq_filename="vq_ds16_c2i.pt", defaults=LLAMAGEN_C2I_DEFAULTS, image_size=size,
        text_encoder_repo=None, extra={"fid_cfg_scale": C2I_FID_CFG[arch]},
        notes=("XL/XXL file sizes UNVERIFIED",) if arch in ("XL", "XXL") else ())


PRESETS: dict[str, Preset] = {p.name: p for p in [
    _t2i(256, "t2i_XL_stage1_256.pt", "stage 1, LAION-COCO"),
    _t2i(512, "t2i_XL_stage2_512.pt", "stage 2, aesthetic fine-tune"),
    *[_c2i(arch, size) for arch, size in C2I_RELEASED],
]}


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown LlamaGen preset {name!r}: known presets are {', '.join(PRESETS)}")
    return PRESETS[name]


def _load(p: Preset, models_dir=None, device=None, dtype=None, download=False, progress=None):
    from .adapter import (
        load_preset,  # heavy imports only when a model is actually loaded
    )
    return load_preset(p, models_dir=models_dir, device=device, dtype=dtype, download=download,
                       progress=progress)


def match_file(path):
    """What local file ``path`` is: the AR-GRPO model folder whose weights file it is (``ar_grpo.match_file``),
    or the preset whose GPT file it is, by name (or its converted ``.safetensors`` copy; a generic name like
    ``model.safetensors`` only counts inside the preset's ``<owner>--<name>`` folder). None: neither."""
    from pathlib import Path

    from . import ar_grpo

    folder = ar_grpo.match_file(path)
    if folder is not None:
        return folder
    path = Path(path)
    for p in PRESETS.values():
        names = {p.filename, Path(p.filename).stem + ".safetensors"}
        in_repo_folder = path.parent.name == p.repo_id.replace("/", "--")
        if path.name in names and (in_repo_folder or p.filename != "model.safetensors"):
            return p
    return None


def load_checkpoint(path, device=None, dtype=None, models_dir=None, **kwargs):
    """Load a local GPT file of a known preset, or an AR-GRPO folder (given as the folder or its weights
    file); None if ``path`` is neither. The VQ and T5 files are looked up in ``models_dir`` (default: the
    folder holding the file's repo folder, or the file's)."""
    from pathlib import Path

    from . import ar_grpo

    folder = Path(path) if ar_grpo.is_model_folder(path) else ar_grpo.match_file(path)
    if folder is not None:
        return ar_grpo.load_checkpoint(folder, device=device, dtype=dtype, models_dir=models_dir, **kwargs)
    p = match_file(path)
    if p is None:
        return None
    path = Path(path)
    if models_dir is None:
        models_dir = path.parent.parent if path.parent.name == p.repo_id.replace("/", "--") else path.parent
    from .adapter import load_preset
    return load_preset(p, models_dir=models_dir, device=device, dtype=dtype, gpt_path=path, **kwargs)


def register_models(register) -> None:
    from ..registry import ModelEntry
    from . import ar_grpo

    for p in PRESETS.values():
        register(ModelEntry(info=p.info(), loader=partial(_load, p), files=p.files()))
    ar_grpo.register_models(register)
