"""Fault injection on everything that writes results: a full disk at each write, SIGTERM mid-write and during
the moves, device / FIFO targets, a second run into the same folder, and a bench killed while its workers
run. After each, the output folder holds the previous set whole, or a new set whole, or says (run.json) that
it is incomplete; never a silent mix of two runs, never a temporary file, never a surviving worker."""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from scalingar_core.app import bench, cli
from scalingar_core.errors import OutputError
from scalingar_core.app.output_set import LOCK_NAME, MANIFEST

ROOT = Path(__file__).resolve().parents[1]
GENERATE = ["generate", "--model", "toy-shapes", "--prompt", "a red circle", "--n", "2"]
BENCH = ["--model", "toy-shapes", "--per-category", "1", "--limit", "2", "--seeds", "1", "--n", "2", "--workers", "1",
         "--methods", "plain,best_of_n"]


def generate(out, *extra) -> int:
    return cli.main([*GENERATE, "--out", str(out), *extra])


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def run_ids(folder: Path) -> set[str]:
    """The run id of every file of the set in ``folder`` (trace and results JSON, PNG text chunks, run.json)."""
    ids = {json.loads((folder / MANIFEST).read_text())["run_id"]}
    for path in folder.iterdir():
        if path.suffix == ".png":
            ids.add(Image.open(path).text.get("scalingar_run_id"))
        elif path.name == "trace.json":
            ids.add(json.loads(path.read_text())["run_id"])
        elif path.name == "results.json":
            ids.add(json.loads(path.read_text())["meta"]["run_id"])
    return ids


@pytest.fixture
def previous(tmp_path):
    """An output folder holding a complete earlier generate run (seed 1) and a file of the user's."""
    out = tmp_path / "out"
    assert generate(out, "--seed", "1", "--all") == 0
    (out / "notes.txt").write_text("mine")
    return out


@pytest.fixture
def previous_bench(tmp_path):
    out = tmp_path / "bench"
    assert bench.main([*BENCH, "--out", str(out)]) == 0
    (out / "notes.txt").write_text("mine")
    return out


# ---------------------------------------------------------------- a complete set

def test_a_run_replaces_the_whole_set_and_only_it(previous, capsys):
    old = contents(previous)
    assert {n for n in old if n.startswith("candidate_")}, "the earlier run wrote candidates (--all)"
    assert generate(previous, "--seed", "2") == 0
    manifest = json.loads((previous / MANIFEST).read_text())
    assert manifest["complete"] is True and "--seed 2" in manifest["command"]
    names = {p.name for p in previous.iterdir()}
    # the earlier run's candidate_<i>.png went with it; the user's file stayed; nothing temporary is left
    assert names == {*manifest["files"], MANIFEST, "notes.txt"}
    assert (previous / "notes.txt").read_text() == "mine"
    assert len(run_ids(previous)) == 1


def test_a_run_of_another_kind_leaves_the_earlier_files_and_lists_only_its_own(previous):
    images = {n: b for n, b in contents(previous).items() if n.endswith(".png")}
    assert bench.main([*BENCH, "--out", str(previous)]) == 0
    assert {n: b for n, b in contents(previous).items() if n in images} == images  # generate's files stay
    manifest = json.loads((previous / MANIFEST).read_text())
    assert manifest["kind"] == "bench" and sorted(manifest["files"]) == sorted(bench.RESULT_FILES)


# ---------------------------------------------------------------- ENOSPC at each write

class DiskFull:
    """Counts writes (text files, PNGs, matplotlib figures) and fails the ``fail_at``-th with ENOSPC, after
    writing half of it, as a full disk does."""

    def __init__(self, monkeypatch, fail_at: int | None):
        from matplotlib.figure import Figure

        self.count, self.fail_at = 0, fail_at
        real_text, real_save, real_fig = Path.write_text, Image.Image.save, Figure.savefig

        def text(path, data, *a, **k):
            self.hit(lambda: real_text(path, data[: len(data) // 2], *a, **k))
            return real_text(path, data, *a, **k)

        def save(image, fp, *a, **k):
            self.hit(lambda: Path(fp).write_bytes(b"\x89PNG half"))
            return real_save(image, fp, *a, **k)

        def fig(figure, fname, *a, **k):
            self.hit(lambda: Path(fname).write_bytes(b"\x89PNG half"))
            return real_fig(figure, fname, *a, **k)
        monkeypatch.setattr(Path, "write_text", text)
        monkeypatch.setattr(Image.Image, "save", save)
        monkeypatch.setattr(Figure, "savefig", fig)

    def hit(self, half):
        self.count += 1
        if self.count == self.fail_at:
            half()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_at_any_write_of_generate_never_mixes_two_runs(previous, monkeypatch, capsys, tmp_path):
    with monkeypatch.context() as m:
        counter = DiskFull(m, None)
        assert generate(tmp_path / "count", "--seed", "2") == 0
    writes = counter.count
    assert writes == 7  # 5 PNGs, the trace, run.json twice (before and after the moves)
    old = contents(previous)
    for k in range(1, writes + 1):
        folder = tmp_path / f"case{k}"
        shutil.copytree(previous, folder)
        with monkeypatch.context() as m:
            DiskFull(m, k)
            assert generate(folder, "--seed", "2") == 1, k  # a failed run, not bad input
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "No space left on device" in err and str(folder) in err, (k, err)
        assert len(err.strip().splitlines()) == 1
        if k < writes:  # before the moves: the earlier set, whole and alone
            assert contents(folder) == old, k
            assert "as they were" in err
        else:  # the last write (run.json marked complete) failed after the moves: said, and marked
            assert "new files: " in err and "candidates.png" in err
            assert json.loads((folder / MANIFEST).read_text())["complete"] is False
            assert len(run_ids(folder)) == 1
            assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_a_full_disk_while_the_bench_writes_never_mixes_two_runs(previous_bench, monkeypatch, capsys, tmp_path):
    """The reported case: tradeoff.png (the fourth result file) hits the full disk."""
    old = contents(previous_bench)
    records = [json.loads(line) for line in (previous_bench / "records.jsonl").read_text().splitlines()]
    summary = json.loads((previous_bench / "results.json").read_text())
    for k in range(1, 7):  # results.json, records.jsonl, results.md, tradeoff.png, run.json twice
        with monkeypatch.context() as m:
            DiskFull(m, k)
            with pytest.raises(OutputError, match="No space left on device"):
                bench.write_results(previous_bench, summary, records)
        if k < 6:
            assert contents(previous_bench) == old, k
    # through the command line: exit 1 (a failed run, not bad input), the file named, the old results whole
    with monkeypatch.context() as m:
        DiskFull(m, 4)
        status = bench.main([*BENCH, "--seeds", "2", "--out", str(previous_bench)])
    err = capsys.readouterr().err
    assert status == 1 and "tradeoff.png" in err and "as they were" in err
    assert contents(previous_bench) == old


# ---------------------------------------------------------------- SIGTERM

def test_sigterm_mid_write_exits_143_and_keeps_the_previous_set(previous, monkeypatch, capsys):
    old = contents(previous)
    real_save = Image.Image.save
    saves = []

    def terminated_mid_write(image, fp, *a, **k):
        saves.append(fp)
        if len(saves) == 3:  # half of the third PNG is on disk when SIGTERM arrives
            Path(fp).write_bytes(b"\x89PNG half")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler raises here
        return real_save(image, fp, *a, **k)
    monkeypatch.setattr(Image.Image, "save", terminated_mid_write)
    assert generate(previous, "--seed", "2") == 143
    assert "terminated" in capsys.readouterr().err
    assert contents(previous) == old  # no .partial file, no lock, no new file


def test_sigterm_during_the_moves_waits_for_them(previous, monkeypatch, capsys):
    import threading

    # another thread in the process (torch, a pool's manager): a signal may be delivered to it, not to main
    threading.Thread(target=time.sleep, args=(3,), daemon=True).start()
    real_replace = os.replace
    moves = []

    def replace(src, dst):
        moves.append(dst)
        real_replace(src, dst)
        if len(moves) == 2:  # run.json (incomplete) and image.png are in place
            os.kill(os.getpid(), signal.SIGTERM)
    monkeypatch.setattr(os, "replace", replace)
    assert generate(previous, "--seed", "2") == 143
    capsys.readouterr()
    # the signal waited until the set was in place: a whole new set, marked complete
    assert json.loads((previous / MANIFEST).read_text())["complete"] is True
    assert len(run_ids(previous)) == 1
    assert not [p for p in previous.iterdir() if p.name.startswith(".")]


def test_sigterm_while_the_bench_writes_keeps_the_previous_results(previous_bench, monkeypatch, capsys):
    old = contents(previous_bench)
    real_text = Path.write_text

    def terminated(path, data, *a, **k):
        if path.name == "records.jsonl":
            real_text(path, data[:10], *a, **k)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        return real_text(path, data, *a, **k)
    monkeypatch.setattr(Path, "write_text", terminated)
    assert bench.main([*BENCH, "--seeds", "2", "--out", str(previous_bench)]) == 143
    capsys.readouterr()
    assert contents(previous_bench) == old


# ---------------------------------------------------------------- devices, FIFOs, sockets

def _device(path: Path) -> Path:
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # the null device's numbers
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a device node here ({exc.strerror}): mknod needs CAP_MKNOD")
    return path


@pytest.mark.parametrize("kind", ["fifo", "device"])
@pytest.mark.parametrize("where", ["--trace", "--out", "image.png in --out", "run.json in --out"])
def test_generate_refuses_special_targets_before_anything_runs(kind, where, tmp_path, capsys, monkeypatch):
    from scalingar_core.models import registry

    out = tmp_path / "out"
    out.mkdir()
    target = {"--trace": tmp_path / "trace.json", "--out": tmp_path / "special",
              "image.png in --out": out / "image.png", "run.json in --out": out / MANIFEST}[where]
    if kind == "fifo":
        os.mkfifo(target)
    else:
        _device(target)
    loads = []
    monkeypatch.setattr(registry, "load", lambda *a, **k: loads.append(1))
    extra = ["--trace", str(target)] if where == "--trace" else []
    folder = target if where == "--out" else out
    assert generate(folder, *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and ("FIFO" in err if kind == "fifo" else "character device" in err)
    assert loads == []
    mode = os.stat(target).st_mode
    assert stat.S_ISFIFO(mode) if kind == "fifo" else stat.S_ISCHR(mode)


def test_the_bench_refuses_a_fifo_where_a_result_goes(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "results.md")
    assert bench.main([*BENCH, "--out", str(out)]) == 2
    assert "results.md is a FIFO (named pipe)" in capsys.readouterr().err
    assert stat.S_ISFIFO(os.stat(out / "results.md").st_mode)


def test_a_socket_is_refused_by_every_atomic_write(tmp_path):
    import socket

    from scalingar_core import files

    path = tmp_path / "s.json"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        with pytest.raises(ValueError, match="is a socket"):
            files.write_text(path, "{}")
    assert stat.S_ISSOCK(os.stat(path).st_mode)


# ---------------------------------------------------------------- one run at a time

def test_a_second_run_into_a_locked_folder_is_refused_naming_the_holder(previous, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (previous / LOCK_NAME).write_text(f"{holder.pid}\n")
        old = contents(previous)
        assert generate(previous, "--seed", "2") == 2
        assert bench.main([*BENCH, "--out", str(previous)]) == 2
        err = capsys.readouterr().err
        assert err.count(f"in use by another run (process {holder.pid}") == 2
        assert contents(previous) == old
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale and the next run takes it over, then releases it
    assert generate(previous, "--seed", "2") == 0
    assert not (previous / LOCK_NAME).exists()


# ---------------------------------------------------------------- bench workers

def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                kids.append(int(entry))
    return kids


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the workers through /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_no_bench_worker_outlives_the_bench(sig, tmp_path):
    """SIGTERM: the bench kills its pool and exits 143. SIGKILL (nothing can be handled): the kernel ends the
    workers (PR_SET_PDEATHSIG). Either way no worker is left running."""
    cmd = [sys.executable, "-m", "scalingar_core", "bench", "--model", "toy-shapes", "--per-category", "100",
           "--seeds", "1", "--n", "8", "--methods", "best_of_n", "--workers", "2", "--out", str(tmp_path)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    workers = []
    try:
        deadline = time.monotonic() + 60
        while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            workers = _children(proc.pid)
        assert len(workers) >= 2, "the bench did not start its workers"
        time.sleep(1)  # the workers are generating
        assert proc.poll() is None, "the run finished before the signal could be sent"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        deadline = time.monotonic() + 10
        while any(map(_running, workers)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [w for w in workers if _running(w)], "a worker outlived the bench"
    finally:
        for pid in [proc.pid, *workers]:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        proc.communicate()
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and "terminated" in err and "Traceback" not in err
        assert sorted(os.listdir(tmp_path)) == []  # no result, no lock, nothing staged
    else:  # only the lock can be left (a later run takes it over: its PID is dead)
        assert set(os.listdir(tmp_path)) <= {LOCK_NAME}


def test_stopping_the_pool_kills_a_worker_in_a_long_job():
    """shutdown() alone would wait for the running job (minutes for a large model); the bench's stop kills it."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(1, mp_context=mp.get_context("fork"))
    pool.submit(time.sleep, 60)
    time.sleep(0.5)  # the job is running
    workers = list(pool._processes)
    start = time.monotonic()
    bench._stop(pool, kill=True)
    assert time.monotonic() - start < 10 and not [w for w in workers if _running(w)]
