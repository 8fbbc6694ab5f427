"""Registry entries for Janus-Pro-1B / 7B (transformers-format repos), and loading a local folder of
either layout (``models/Janus-Pro/<name>/`` as other Janus node packs download it)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ..protocol import ModelInfo, SamplingDefaults

# The model card's image-generation settings: CFG 5, temperature 1, no top-k / top-p.
DEFAULTS = SamplingDefaults(cfg_scale=5.0, top_k=0, top_p=1.0, temperature=1.0)
# What text-to-image needs from a transformers-format repo (no README/images; the weights are one file or
# shards, and they include the understanding tower, which is skipped when reading).
PATTERNS = ["config.json", "generation_config.json", "*.safetensors", "*.safetensors.index.json",
            "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "processor_config.json",
            "preprocessor_config.json", "chat_template.json", "chat_template.jinja"]
REQUIRED = ("config.json", "tokenizer.json", "tokenizer_config.json")
ORIGINAL_REPOS = {"1B": "deepseek-ai/Janus-Pro-1B", "7B": "deepseek-ai/Janus-Pro-7B"}


@dataclass(frozen=True)
class JanusPreset:
    name: str
    size: str  # "1B" / "7B": the published architecture in configs.PUBLISHED
    repo_id: str
    download_bytes: int  # approximate, bf16 safetensors

    def info(self) -> ModelInfo:
        from . import configs

        side = configs.IMAGE_SIZE // configs.PATCH
        return ModelInfo(name=self.name, description=f"Janus-Pro-{self.size} text-to-image (transformers), "
                         f"{configs.IMAGE_SIZE} px, {side}x{side} tokens", grid=(side, side),
                         vocab_size=configs.CODEBOOK, defaults=DEFAULTS,
                         extra={"model_type": "t2i", "image_size": configs.IMAGE_SIZE, "repo_id": self.repo_id,
                                "family": "janus-pro"})

    def files(self) -> list[dict]:
        return [{"repo_id": self.repo_id, "filename": "*", "patterns": PATTERNS, "role": "model",
                 "size": self.download_bytes}]


PRESETS = {p.name: p for p in [
    JanusPreset("janus-pro-1b", "1B", "deepseek-community/Janus-Pro-1B", 4_200_000_000),
    JanusPreset("janus-pro-7b", "7B", "deepseek-community/Janus-Pro-7B", 14_800_000_000),
]}


def missing_files(folder: Path) -> list[str]:
    """Files a Janus folder of either layout lacks (its weight index decides which shards count)."""
    from .weights import WEIGHT_FILES, layout, weight_files

    missing = [r for r in REQUIRED if not (folder / r).is_file()]
    if "config.json" in missing:
        return missing + [f"the weights ({' or '.join(reversed(WEIGHT_FILES['transformers']))} + shards)"]
    try:
        kind = layout(json.loads((folder / "config.json").read_text()))
    except (ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"{folder / 'config.json'}: {exc}") from exc
    return missing + weight_files(folder, kind)[1]


def _missing_error(name: str, folder: Path, missing: list[str], repo_id: str, why: str):
    from ..download import ModelFileError, fetch_command

    return ModelFileError(
        f"{name} cannot be loaded: {', '.join(missing)} of Hugging Face repo {repo_id} "
        f"{'is' if len(missing) == 1 else 'are'} not in {folder} ({why}). Fetch the repo with "
        f"`{fetch_command(repo_id, None, folder, PATTERNS)}`, or copy the files into that folder, or load with "
        f"download enabled on a machine with internet access")


def load_preset(p: JanusPreset, models_dir=None, device=None, dtype=None, download: bool = False,
                progress=None):
    """Load preset ``p`` from ``<models_dir>/<owner>--<name>/`` (downloading only when ``download``)."""
    from ..download import ensure_snapshot, fetch_command, hub_offline, repo_folder
    from .model import load_folder

    folder = repo_folder(models_dir, p.repo_id)
    missing = missing_files(folder)
    if missing:
        if not download or hub_offline():
            raise _missing_error(p.name, folder, missing, p.repo_id,
                                 "HF_HUB_OFFLINE is set" if download else "downloads are off")
        # the missing files themselves are what must be there afterwards (a described entry is not a file)
        required = tuple(m for m in missing if " " not in m)
        ensure_snapshot(p.repo_id, models_dir, PATTERNS, required, True, progress)
        missing = missing_files(folder)
        if missing:
            raise _missing_error(p.name, folder, missing, p.repo_id, "the download did not provide them")
    hint = f"fetch it again with `{fetch_command(p.repo_id, None, folder, PATTERNS)}`"
    return load_folder(folder, p.name, device=device, dtype=dtype, hint=hint, defaults=DEFAULTS)


def is_janus_folder(path) -> bool:
    path = Path(path)
    try:
        data = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return data.get("model_type") in ("janus", "multi_modality")


def source_repo(folder: Path) -> str:
    """The Hugging Face repo a local folder's files come from, judged by its layout and width."""
    data = json.loads((folder / "config.json").read_text())
    if data.get("model_type") == "janus":
        size = "7B" if data.get("text_config", {}).get("hidden_size") == 4096 else "1B"
        return next(p.repo_id for p in PRESETS.values() if p.size == size)
    size = "7B" if data.get("language_config", {}).get("hidden_size") == 4096 else "1B"
    return ORIGINAL_REPOS[size]


def load_checkpoint(path, device=None, dtype=None, name: str | None = None, **kwargs):
    """Load a local Janus-Pro folder of either layout (None if ``path`` is not one). ``path`` must come from
    a lookup (a folder listed in a models folder), never from raw user text."""
    from .model import load_folder

    path = Path(path)
    if not path.is_dir() or not is_janus_folder(path):
        return None
    missing = missing_files(path)
    if missing:
        raise _missing_error(name or path.name, path, missing, source_repo(path), "an incomplete folder")
    return load_folder(path, name or path.name, device=device, dtype=dtype, defaults=DEFAULTS)


def register_models(register) -> None:
    from ..registry import ModelEntry

    for p in PRESETS.values():
        register(ModelEntry(info=p.info(), loader=partial(load_preset, p), files=p.files()))
