"""Output files: paths checked before any work starts, and writes that never leave a truncated file.

A write goes to a temporary file in the target's folder that is renamed over the target when complete
(``os.replace`` is atomic on POSIX and Windows). An interruption (Ctrl-C, a crash, a full disk) therefore
leaves the old file or the new one, never half of one, and the temporary file is removed.

Only regular files and folders are ever written or replaced: renaming a temporary file over ``/dev/null``, a
FIFO or a socket would destroy it (as root, a device node), so such a target is refused (:func:`check_target`).
The files of one run that belong together are written as a set by :mod:`scalingar_core.app.output_set`.
"""
from __future__ import annotations

import contextlib
import os
import stat
import uuid
from pathlib import Path

_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISSOCK, "a socket"))


def special_kind(path: str | Path) -> str | None:
    """What ``path`` is when it exists and is neither a regular file nor a folder (links followed), else None."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # absent, a dangling link, a NUL byte: not special
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def check_target(path: str | Path, what: str = "output file") -> Path:
    """``path`` unless it is a device, FIFO or socket, which a write would replace (a ``ValueError`` says so)."""
    kind = special_kind(path)
    if kind is not None:
        raise ValueError(f"{what} {path} is {kind}, not a regular file: refusing to write over it; give the path "
                         f"of a file or folder")
    return Path(path)


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path next to ``path`` (same suffix, so writers can infer the format); when the
    block ends normally it replaces ``path``, on any exception (KeyboardInterrupt too) it is deleted."""
    path = check_target(path)
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
    kind = special_kind(existing)
    if kind is not None:
        raise ValueError(f"{what} {path} cannot be used: {existing} is {kind}; give a folder path")
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
    path = check_target(path, what)
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder; give a file path, e.g. {path / 'trace.json'}")
    check_output_dir(path.parent, f"the folder of {what}")
    return path
