"""The files of one run as a set: written aside, moved into place together, labelled with one run id, and
guarded by a lock so two runs never write into one folder at once.

A run stages each file in a hidden folder inside its output folder (or, for a file that lives elsewhere, in
a hidden file beside it) and only when every file is complete moves them into place with ``os.replace``
(renames: no copy, no disk space; about 30 ms for generate's set on a busy shared disk, measured by
benchmarks/output_set_commit.py). So:

* a failure or a signal before the first move (a full disk, Ctrl-C, SIGTERM, a bug drawing a plot) leaves
  every old file as it was, and the staged files are removed;
* during the moves SIGINT and SIGTERM wait (they are held for those milliseconds and act right after);
  an error there is reported with the list of files that are already new;
* ``run.json`` names the run id and the files of the set. It is written first with ``"complete": false``
  and again with ``"complete": true`` after the last move, so a reader can always tell a whole set from an
  interrupted one; the trace carries the same run id, the PNGs carry it as a text chunk;
* files that the previous run of the same kind (generate, bench) listed and this run does not write
  (``candidate_5.png`` of an earlier ``--all``) are removed, so the folder never shows two such runs side by
  side; files no run of ours listed are never touched (nor, after a run of another kind, that run's files:
  run.json then lists only the new set).

The lock is ``.scalingar.lock`` in the output folder, holding the writer's PID. A second writer is refused
with that PID; a lock whose process is gone is stale and taken over.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Self

from .. import files
from ..errors import OutputError, signals_held

LOCK_NAME = ".scalingar.lock"
MANIFEST = "run.json"
_HELD: set[str] = set()  # lock files this process holds (a lock naming our own PID but not here is stale)


def new_run_id() -> str:
    """Sortable and unique: UTC time plus 8 random hex digits, e.g. ``20261202T141500Z-3f9a0c1b``."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


# ---------------------------------------------------------------- lock

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    except OSError:
        return False
    return True


def _holder(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        return None


@contextlib.contextmanager
def folder_lock(folder: str | Path, what: str = "--out"):
    """Hold ``folder/.scalingar.lock`` for the block. Another live process holding it: ``ValueError`` naming
    its PID. A lock left by a process that died (or unreadable and older than a minute) is replaced."""
    path = files.check_target(Path(folder) / LOCK_NAME, "lock file")
    for _ in range(5):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pid = _holder(path)
            own_stale = pid == os.getpid() and str(path) not in _HELD  # our PID, left by an earlier process
            if pid is not None and _alive(pid) and not own_stale:
                raise ValueError(f"{what} {folder} is in use by another run (process {pid}, lock {path}); wait for "
                                 f"it to finish or choose another {what}") from None
            if pid is None and _age(path) < 60:  # being created this instant by another process
                raise ValueError(f"{what} {folder} is in use by another run (lock {path} is being written); "
                                 f"try again, or choose another {what}") from None
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # stale: its process is gone
            continue
        except OSError as exc:
            raise ValueError(f"{what} {folder}: cannot create the lock file {path}: {exc.strerror or exc}") from None
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(f"{os.getpid()}\n")
        break
    else:
        raise ValueError(f"{what} {folder}: could not take the lock {path} (other runs keep taking it)")
    _HELD.add(str(path))
    for left in Path(folder).glob(".scalingar-run-*.partial"):  # staged by a run that was killed (SIGKILL)
        shutil.rmtree(left, ignore_errors=True)
    try:
        yield path
    finally:
        _HELD.discard(str(path))
        if _holder(path) == os.getpid():
            with contextlib.suppress(OSError):
                path.unlink()


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return float("inf")


# ---------------------------------------------------------------- the set

class OutputSet:
    """The files one run writes into ``folder`` (and optionally elsewhere), moved into place together.

    Use as a context manager (an exception discards what was staged) and call :meth:`commit` at the end::

        with OutputSet(out, "generate", command="...") as outputs:
            outputs.save_image(image, "image.png")
            outputs.write_json("trace.json", trace_dict)
            outputs.commit()
    """

    def __init__(self, folder: str | Path, kind: str, command: str | None = None):
        self.folder = Path(os.path.abspath(folder))  # absolute: "out/x" and "./out/x" are one file
        self.kind = kind
        self.command = command
        self.run_id = new_run_id()
        self.staging = self.folder / f".scalingar-run-{self.run_id}.partial"
        self._staged: dict[Path, Path] = {}  # final path -> staged path

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        self.discard()

    def target(self, name: str | Path) -> Path:
        """The final path of ``name`` (relative names are in the folder); refused if it is a device etc."""
        path = Path(name)
        return files.check_target(Path(os.path.abspath(path if path.parent != Path(".") else self.folder / path)))

    @contextlib.contextmanager
    def writing(self, name: str | Path):
        """Yield the staging path for ``name`` (same suffix); a write failure is an :class:`OutputError`
        that names the file (nothing of this run is kept: the old files stay)."""
        final = self.target(name)
        if final.parent == self.folder:
            self.staging.mkdir(exist_ok=True)
            staged = self.staging / final.name
        else:  # e.g. --trace elsewhere: staged beside its target, so the move stays a rename
            staged = final.with_name(f".{final.stem}.{self.run_id}.partial{final.suffix}")
        self._staged[final] = staged
        try:
            yield staged
        except OSError as exc:
            raise OutputError(f"could not write {final}: {exc.strerror or exc}; nothing of this run was kept and "
                              f"the files already in {self.folder} are as they were") from None

    def write_text(self, name: str | Path, text: str) -> Path:
        with self.writing(name) as staged:
            staged.write_text(text, encoding="utf-8")
        return self.target(name)

    def write_json(self, name: str | Path, data) -> Path:
        """Strict JSON (a NaN would make it unreadable for browsers), with this run's id added to a dict."""
        if isinstance(data, dict):
            data = {**data, "run_id": self.run_id}
        return self.write_text(name, json.dumps(data, allow_nan=False))

    def save_image(self, image, name: str | Path) -> Path:
        """A PIL image as PNG, carrying the run id as a text chunk."""
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("scalingar_run_id", self.run_id)
        with self.writing(name) as staged:
            image.save(staged, format="PNG", pnginfo=info)
        return self.target(name)

    def _name(self, final: Path) -> str:
        return final.name if final.parent == self.folder else str(final)

    def _manifest(self, complete: bool) -> str:
        return json.dumps({"run_id": self.run_id, "kind": self.kind, "complete": complete, "command": self.command,
                           "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "files": sorted(self._name(f) for f in self._staged)}, indent=1)

    def _previous_files(self) -> list[Path]:
        """Files the previous run of this kind in this folder listed (its run.json), as paths in the folder."""
        try:
            previous = json.loads((self.folder / MANIFEST).read_text(encoding="utf-8"))
            listed = previous["files"] if previous.get("kind") == self.kind else []
            listed = listed if isinstance(listed, list) else []
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            return []
        return [self.folder / n for n in listed if isinstance(n, str) and "/" not in n and n not in ("", ".", "..")]

    def commit(self) -> list[Path]:
        """Move every staged file into place (see the module's notes); returns the final paths."""
        finals = list(self._staged)
        for final in finals:  # checked again: a FIFO may have appeared while the run computed
            files.check_target(final)
        stale = [p for p in self._previous_files() if p not in self._staged and p.is_file()]
        moved: list[Path] = []
        with signals_held():
            try:
                files.write_text(self.folder / MANIFEST, self._manifest(complete=False))
            except OSError as exc:
                raise OutputError(f"could not write {self.folder / MANIFEST}: {exc.strerror or exc}; nothing of this "
                                  f"run was kept and the files already in {self.folder} are as they were") from None
            try:
                for final in finals:
                    os.replace(self._staged[final], final)
                    moved.append(final)
                for path in stale:
                    path.unlink()
                files.write_text(self.folder / MANIFEST, self._manifest(complete=True))
            except OSError as exc:
                new = ", ".join(self._name(p) for p in moved) or "none"
                raise OutputError(f"moving this run's files into {self.folder} failed ({exc.strerror or exc}); new "
                                  f"files: {new}; {MANIFEST} marks the set incomplete (run id {self.run_id})") from None
        self._staged.clear()
        self.discard()
        return finals

    def discard(self) -> None:
        """Remove whatever is still staged (after a failure; nothing after a commit)."""
        for staged in self._staged.values():
            with contextlib.suppress(OSError):
                staged.unlink()
        self._staged.clear()
        shutil.rmtree(self.staging, ignore_errors=True)
