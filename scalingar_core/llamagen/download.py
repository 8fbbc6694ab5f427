"""Model files from the Hugging Face Hub into a caller-given models folder.

Each repository gets its own sub-folder ``<models_dir>/<owner>--<name>/`` (AR-GRPO's generic
``model.safetensors`` would otherwise collide). Nothing is downloaded unless ``download=True``; with
``HF_HUB_OFFLINE`` set, or without network, a missing file raises :class:`ModelFileError` naming the
repository, the file, the folder and the command that fetches it.

``progress(filename, done_bytes, total_bytes_or_None)`` is called while downloading.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

Progress = Callable[[str, int, "int | None"], None]


class ModelFileError(FileNotFoundError):
    """A model file is not on disk and could not (or may not) be downloaded."""


def default_models_dir() -> Path:
    return Path(os.environ.get("SCALINGAR_MODELS_DIR") or Path.home() / ".cache" / "scalingar" / "models")


def repo_folder(models_dir: str | Path | None, repo_id: str) -> Path:
    return Path(models_dir or default_models_dir()) / repo_id.replace("/", "--")


def fetch_command(repo_id: str, filename: str | None, folder: Path, patterns: list[str] | None = None) -> str:
    what = f" {filename}" if filename else ""
    include = "".join(f" --include '{p}'" for p in patterns) if patterns and not filename else ""
    return f"hf download {repo_id}{what}{include} --local-dir {folder}"


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _missing(repo_id: str, filename: str | None, folder: Path, why: str,
             patterns: list[str] | None = None) -> ModelFileError:
    what = f"{filename} of Hugging Face repo {repo_id} is" if filename else f"the files of Hugging Face repo {repo_id} are"
    return ModelFileError(
        f"{what} not in {folder} ({why}). Fetch {'it' if filename else 'them'} with "
        f"`{fetch_command(repo_id, filename, folder, patterns)}` (or `huggingface-cli download ...` with "
        f"older huggingface_hub), or copy {'it' if filename else 'them'} into that folder, or load with download enabled on a machine with "
        f"internet access")


def _tqdm_class(progress: Progress | None, label: str):
    if progress is None:
        return None
    from tqdm.auto import tqdm

    class _Report(tqdm):  # huggingface_hub reports bytes through tqdm; forward them to the callback
        done = 0  # counted here: a disabled tqdm (HF_HUB_DISABLE_PROGRESS_BARS) does not count

        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)  # some hub releases pass name=, which plain tqdm rejects
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            out = super().update(n)
            self.done += int(n or 0)
            try:
                progress(label, self.done, int(self.total) if self.total else None)
            except Exception:  # a UI callback must never break a download
                pass
            return out

    return _Report


def ensure_file(repo_id: str, filename: str, models_dir: str | Path | None = None, download: bool = False,
                progress: Progress | None = None) -> Path:
    """Local path of ``filename`` from ``repo_id``, downloading it only when ``download`` is True."""
    folder = repo_folder(models_dir, repo_id)
    path = folder / filename
    if path.is_file():
        return path
    if not download:
        raise _missing(repo_id, filename, folder, "downloads are off")
    if hub_offline():
        raise _missing(repo_id, filename, folder, "HF_HUB_OFFLINE is set")
    from huggingface_hub import hf_hub_download
    try:
        folder.mkdir(parents=True, exist_ok=True)
        got = hf_hub_download(repo_id, filename, local_dir=folder,
                              **_progress_kwarg(hf_hub_download, _tqdm_class(progress, filename)))
    except Exception as exc:
        raise _missing(repo_id, filename, folder, f"download failed: {type(exc).__name__}: {exc}") from exc
    return Path(got)


def ensure_snapshot(repo_id: str, models_dir: str | Path | None = None, patterns: list[str] | None = None,
                    required: tuple[str, ...] = ("config.json",), download: bool = False,
                    progress: Progress | None = None) -> Path:
    """Local folder holding ``repo_id`` (files matching ``patterns``); ``required`` files must exist."""
    folder = repo_folder(models_dir, repo_id)
    if all((folder / r).is_file() for r in required):
        return folder
    if not download:
        raise _missing(repo_id, None, folder, "downloads are off", patterns)
    if hub_offline():
        raise _missing(repo_id, None, folder, "HF_HUB_OFFLINE is set", patterns)
    from huggingface_hub import snapshot_download
    try:
        snapshot_download(repo_id, local_dir=folder, allow_patterns=patterns,
                          **_progress_kwarg(snapshot_download, _tqdm_class(progress, repo_id)))
    except Exception as exc:
        raise _missing(repo_id, None, folder, f"download failed: {type(exc).__name__}: {exc}", patterns) from exc
    missing = [r for r in required if not (folder / r).is_file()]
    if missing:
        raise _missing(repo_id, missing[0], folder, "the repository did not provide it")
    return folder


def _progress_kwarg(fn, tqdm_class) -> dict:
    """``tqdm_class`` only where this huggingface_hub release accepts it (older ones raise TypeError)."""
    import inspect

    return {"tqdm_class": tqdm_class} if "tqdm_class" in inspect.signature(fn).parameters else {}
