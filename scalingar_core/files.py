"""Output files: paths checked before any work starts, and writes that never leave a truncated file.

A write goes to a temporary file in the target's folder that is renamed over the target when complete
(``os.replace`` is atomic on POSIX and Windows). An interruption (Ctrl-C, a crash, a full disk) therefore
leaves the old file or the new one, never half of one, and the temporary file is removed.
"""
from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path next to ``path`` (same suffix, so writers can infer the format); when the
    block ends normally it replaces ``path``, on any exception (KeyboardInterrupt too) it is deleted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def save_image(image, path: str | Path, format: str = "PNG") -> Path:
    """Save a PIL image atomically."""
    with atomic_path(path) as tmp:
        image.save(tmp, format=format)
    return Path(path)


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def check_output_dir(path: str | Path, what: str = "output folder", create: bool = True) -> Path:
    """``path`` as a folder we can write into, created (with its parents) unless ``create`` is False. A
    ``ValueError`` names ``what``, the path and the problem otherwise."""
    path = Path(path)
    try:
        existing = _nearest_existing(path)
        writable = os.access(existing, os.W_OK | os.X_OK)
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte
        raise ValueError(f"{what} {path} is not a usable path: {exc}") from None
    if not existing.is_dir():
        where = "is a file" if existing == path else f"cannot be created: {existing} is a file, not a folder"
        raise ValueError(f"{what} {path} {where}; give a folder path (it is created if missing)")
    if not writable:
        raise ValueError(f"{what} {path} cannot be written: no write permission in {existing}")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"{what} {path} cannot be created: {exc.strerror or exc}") from None
    return path


def check_output_file(path: str | Path, what: str = "output file") -> Path:
    """``path`` as a file we can write (its folder is created); not a folder, not under a file."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder; give a file path, e.g. {path / 'trace.json'}")
    check_output_dir(path.parent, f"the folder of {what}")
    return path
