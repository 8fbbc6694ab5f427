"""Model files from the Hugging Face Hub into a caller-given models folder.

Each repository gets its own sub-folder ``<models_dir>/<owner>--<name>/`` (AR-GRPO's generic
``model.safetensors`` would otherwise collide). Nothing is downloaded unless ``download=True``; with
``HF_HUB_OFFLINE`` set, or without network, a missing file raises :class:`ModelFileError` naming the
repository, the file, the folder and the command that fetches it.

``progress(filename, done_bytes, total_bytes_or_None)`` is called while downloading. Before a download,
:func:`download_plan` lists what would be fetched with the sizes the Hub reports (one metadata request per
repository; the registry's estimates when offline) so a UI can show them first.
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


GENERIC_NAMES = ("model.safetensors", "pytorch_model.bin", "model.pt")


def local_copy(repo_id: str, filename: str, models_dir: str | Path | None = None) -> Path | None:
    """``filename`` of ``repo_id`` if it is on disk: in ``<models_dir>/<owner>--<name>/``, where a converted
    ``.safetensors`` sibling wins over the original ``.pt`` (``convert_checkpoint``), or, for a distinctive
    name, directly in ``models_dir`` (users often drop e.g. ``vq_ds16_t2i.pt`` there)."""
    folder = repo_folder(models_dir, repo_id)
    stem = Path(filename).stem
    candidates = [folder / (stem + ".safetensors")] if filename.endswith(".pt") else []
    candidates.append(folder / filename)
    if filename not in GENERIC_NAMES:
        candidates += [folder.parent / filename, folder.parent / (stem + ".safetensors")]
    return next((c for c in candidates if c.is_file()), None)


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


def present(folder: Path, required) -> bool:
    """Whether each of ``required`` (a file name, or a glob such as ``model*.safetensors``) has a file in
    ``folder``."""
    return all(any(p.is_file() for p in folder.glob(r)) for r in required)


def ensure_snapshot(repo_id: str, models_dir: str | Path | None = None, patterns: list[str] | None = None,
                    required: tuple[str, ...] = ("config.json",), download: bool = False,
                    progress: Progress | None = None) -> Path:
    """Local folder holding ``repo_id`` (files matching ``patterns``); ``required`` files must exist (see
    :func:`present`).

    ``patterns`` are required: a repository often holds its weights in several formats (FLAN-T5-XL: safetensors,
    PyTorch, TensorFlow and Flax, four times the bytes), and only the ones the loader reads are fetched."""
    if not patterns:
        raise ValueError(f"{repo_id}: give the allow-patterns of the files to fetch, not the whole repository")
    folder = repo_folder(models_dir, repo_id)
    if present(folder, required):
        return folder
    if not download:
        raise _missing(repo_id, None, folder, "downloads are off", patterns)
    if hub_offline():
        raise _missing(repo_id, None, folder, "HF_HUB_OFFLINE is set", patterns)
    from huggingface_hub import snapshot_download
    try:
        snapshot_download(repo_id, local_dir=folder, allow_patterns=list(patterns),
                          **_progress_kwarg(snapshot_download, _tqdm_class(progress, repo_id)))
    except Exception as exc:
        raise _missing(repo_id, None, folder, f"download failed: {type(exc).__name__}: {exc}", patterns) from exc
    missing = [r for r in required if not present(folder, [r])]
    if missing:
        raise _missing(repo_id, missing[0], folder, "the repository did not provide it")
    return folder


def _progress_kwarg(fn, tqdm_class) -> dict:
    """``tqdm_class`` only where this huggingface_hub release accepts it (older ones raise TypeError)."""
    import inspect

    return {"tqdm_class": tqdm_class} if "tqdm_class" in inspect.signature(fn).parameters else {}


# ---------------------------------------------------------------------------------------------------------
# What a download would fetch, with sizes, before it starts


def hub_sizes(repo_id: str, api=None, timeout: float = 10.0) -> dict[str, int | None] | None:
    """``{filename: bytes}`` of every file in ``repo_id`` from the Hub's metadata (one request), or None when
    offline (``HF_HUB_OFFLINE``) or unreachable. ``api``: an ``HfApi``-like object (tests pass a fake)."""
    if hub_offline():
        return None
    try:
        if api is None:
            from huggingface_hub import HfApi
            api = HfApi()
        info = api.model_info(repo_id, files_metadata=True, timeout=timeout)
    except Exception:  # no network, no such repo, gated: the plan falls back to the estimates
        return None
    return {s.rfilename: s.size for s in info.siblings or []}


def selected_files(names, patterns: list[str]) -> list[str]:
    """The names ``snapshot_download(allow_patterns=patterns)`` would fetch (huggingface_hub's own filter)."""
    from huggingface_hub.utils import filter_repo_objects

    return sorted(filter_repo_objects(list(names), allow_patterns=patterns))


def download_plan(files: list[dict], models_dir: str | Path | None = None, api=None) -> list[dict]:
    """The files of a registry entry (``ModelEntry.files``) that are not on disk, each as ``{"repo_id",
    "filename", "size", "exact"}``: ``exact`` when the size comes from the Hub, else the entry's estimate. A
    snapshot entry (``patterns``) becomes one row per file it selects, or one estimated row when offline."""
    plan, listings = [], {}
    for f in files:
        repo = f.get("repo_id")
        if not repo:
            continue  # nothing to fetch
        patterns = f.get("patterns")
        folder = repo_folder(models_dir, repo)
        if patterns:
            if present(folder, f.get("required", ("config.json",))):
                continue
        elif local_copy(repo, f["filename"], models_dir) is not None:
            continue
        if repo not in listings:
            listings[repo] = hub_sizes(repo, api)
        sizes = listings[repo]
        if sizes is None:
            name = f["filename"] if not patterns else f"{len(patterns)} patterns: {', '.join(patterns)}"
            plan.append({"repo_id": repo, "filename": name, "size": f.get("size"), "exact": False})
        elif patterns:
            plan += [{"repo_id": repo, "filename": n, "size": sizes[n], "exact": sizes[n] is not None}
                     for n in selected_files(sizes, patterns) if not (folder / n).is_file()]
        else:
            size = sizes.get(f["filename"], f.get("size"))
            plan.append({"repo_id": repo, "filename": f["filename"], "size": size,
                         "exact": f["filename"] in sizes and size is not None})
    return plan


def _gb(size: int | None) -> str:
    if size is None:
        return "size unknown"
    return f"{size / 1e9:.2f} GB" if size >= 1e8 else f"{size / 1e6:.1f} MB"


def describe_plan(plan: list[dict], models_dir: str | Path | None = None) -> str:
    """One line per file and the total, for a log, a terminal or a node's text."""
    total = sum(f["size"] or 0 for f in plan)
    approx = "" if all(f["exact"] for f in plan) else "about "
    lines = [f"downloading {len(plan)} file(s), {approx}{_gb(total)}, into {Path(models_dir or default_models_dir())}:"]
    lines += [f"  {f['repo_id']}/{f['filename']}  {'' if f['exact'] else '~'}{_gb(f['size'])}" for f in plan]
    return "\n".join(lines)
