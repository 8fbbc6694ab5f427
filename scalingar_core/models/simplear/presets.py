"""Registry entries for SimpleAR-{0.5B,1.5B}-{SFT,RL}: the language model from its Hugging Face repo and the
Cosmos DV8x16x16 ``decoder.jit`` from NVIDIA's, each in ``<models_dir>/<owner>--<name>/``."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ..protocol import ModelInfo
from .model import DEFAULTS, IMAGE_SIZES, grid_side

# What text-to-image needs of a SimpleAR repo: config, safetensors weights (one file or shards + index) and the
# tokenizer files (slow and fast forms; whichever the repo has).
PATTERNS = ["config.json", "generation_config.json", "*.safetensors", "*.safetensors.index.json", "tokenizer.json",
            "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt"]
COSMOS_REPO = "nvidia/Cosmos-1.0-Tokenizer-DV8x16x16"
DECODER_FILE = "decoder.jit"
DECODER_BYTES = 300_000_000  # approximate (not verified offline)
DEFAULT_IMAGE_SIZE = 1024  # SimpleAR's generate.py default and its GenEval setting


@dataclass(frozen=True)
class SimpleARPreset:
    name: str
    repo_id: str
    download_bytes: int  # approximate, bf16 safetensors (not verified offline)

    def info(self) -> ModelInfo:
        side = grid_side(DEFAULT_IMAGE_SIZE)
        return ModelInfo(name=self.name, description=f"SimpleAR text-to-image ({self.repo_id}), {DEFAULT_IMAGE_SIZE} "
                         f"px by default ({', '.join(map(str, IMAGE_SIZES))}), Cosmos DV8x16x16 codes",
                         grid=(side, side), vocab_size=64000, defaults=DEFAULTS,
                         extra={"model_type": "t2i", "image_size": DEFAULT_IMAGE_SIZE, "image_sizes": IMAGE_SIZES,
                                "repo_id": self.repo_id, "family": "simplear"})

    def files(self) -> list[dict]:
        return [{"repo_id": self.repo_id, "filename": "*", "patterns": PATTERNS, "role": "model",
                 "size": self.download_bytes},
                {"repo_id": COSMOS_REPO, "filename": DECODER_FILE, "role": "decoder", "size": DECODER_BYTES}]


PRESETS = {p.name: p for p in [
    SimpleARPreset("simplear-0.5b-sft", "Daniel0724/SimpleAR-0.5B-SFT", 1_200_000_000),
    SimpleARPreset("simplear-0.5b-rl", "Daniel0724/SimpleAR-0.5B-RL", 1_200_000_000),
    SimpleARPreset("simplear-1.5b-sft", "Daniel0724/SimpleAR-1.5B-SFT", 3_500_000_000),
    SimpleARPreset("simplear-1.5b-rl", "Daniel0724/SimpleAR-1.5B-RL", 3_500_000_000),
]}


def load_preset(p: SimpleARPreset, models_dir=None, device=None, dtype=None, download: bool = False, progress=None,
                image_size: int = DEFAULT_IMAGE_SIZE):
    """Load preset ``p`` (downloading only when ``download``) to decode ``image_size`` px images."""
    from ..download import ensure_file, ensure_snapshot, fetch_command
    from .model import LM_FILES, load_folder

    grid_side(image_size)
    folder = ensure_snapshot(p.repo_id, models_dir, PATTERNS, LM_FILES, download, progress)
    decoder = ensure_file(COSMOS_REPO, DECODER_FILE, models_dir, download, progress)
    converted = decoder.with_suffix(".safetensors")  # `convert` writes it once; it loads faster
    hint = f"fetch them with `{fetch_command(p.repo_id, None, folder, PATTERNS)}`"
    return load_folder(folder, converted if converted.is_file() else decoder, p.name, image_size, device, dtype,
                       hint=hint)


def register_models(register) -> None:
    from ..registry import ModelEntry

    for p in PRESETS.values():
        register(ModelEntry(info=p.info(), loader=partial(load_preset, p), files=p.files()))


COSMOS_FOLDERS = ("Cosmos-1.0-Tokenizer-DV8x16x16", "nvidia--Cosmos-1.0-Tokenizer-DV8x16x16")


def is_simplear_folder(path) -> bool:
    """A Hugging Face folder of a SimpleAR checkpoint: a Qwen2 config saved by SimpleAR's model class, or a
    Qwen2 folder whose tokenizer carries SimpleAR's ``<|t2i|>`` token."""
    path = Path(path)
    try:
        data = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict) or data.get("model_type") != "qwen2":
        return False
    if any("SimpAR" in str(a) for a in data.get("architectures") or []):
        return True
    try:
        return "<|t2i|>" in (path / "tokenizer_config.json").read_text()
    except OSError:
        return False


def find_decoder(folder: Path) -> Path:
    """The Cosmos decoder for a local SimpleAR folder: in the folder itself, else in a sibling
    ``Cosmos-1.0-Tokenizer-DV8x16x16`` folder (SimpleAR's README layout); a converted copy wins."""
    places = [folder] + [folder.parent / name for name in COSMOS_FOLDERS]
    for place in places:
        for name in ("decoder.safetensors", DECODER_FILE):
            if (place / name).is_file():
                return place / name
    raise FileNotFoundError(f"no Cosmos decoder for {folder}: put decoder.jit of {COSMOS_REPO} in {folder} or in "
                            f"{folder.parent / COSMOS_FOLDERS[0]}")


def load_checkpoint(path, device=None, dtype=None, name: str | None = None, image_size: int = DEFAULT_IMAGE_SIZE,
                    **kwargs):
    """Load a local SimpleAR folder (None if ``path`` is not one). ``path`` must come from a lookup (a folder
    listed in a models folder), never from raw user text."""
    from .model import load_folder

    path = Path(path)
    if not path.is_dir() or not is_simplear_folder(path):
        return None
    return load_folder(path, find_decoder(path), name or path.name, image_size, device, dtype)
