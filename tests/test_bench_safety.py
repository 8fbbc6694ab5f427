"""The bench never destroys or loses results: every input is checked before the first generation, the output
folder is made first, results are written atomically, and a worker killed mid-run leaves the previous
results as they were (fault injection)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scalingar_core.app import bench

ROOT = Path(__file__).resolve().parents[1]
PREVIOUS = json.dumps({"methods": {"scalingar": {"accuracy": {"overall": 0.5}}}, "note": "a good earlier run"})
SMALL = ["--model", "toy-shapes", "--per-category", "1", "--limit", "2", "--seeds", "1", "--n", "2", "--workers", "1", "--methods", "plain"]


@pytest.fixture
def out(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "results.json").write_text(PREVIOUS)
    return folder


@pytest.fixture
def generations(monkeypatch):
    """Counts model loads and generations, to prove a bad input is refused before any compute."""
    calls = []
    real_init, real_run = bench._init, bench._run_job
    monkeypatch.setattr(bench, "_init", lambda *a: calls.append("load") or real_init(*a))
    monkeypatch.setattr(bench, "_run_job", lambda job: calls.append("generate") or real_run(job))
    return calls


def _cases(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    numeric = tmp_path / "numeric.jsonl"
    numeric.write_text('{"prompt": "a red circle", "category": 5}\n{"prompt": "a blue square"}\n')
    afile = tmp_path / "afile"
    afile.write_text("x")
    return {
        "empty prompt file": (["--prompts", str(empty)], "no prompts"),
        "zero seeds": (["--seeds", "0"], "--seeds 0"),
        "zero per category": (["--per-category", "0"], "--per-category 0"),
        "numeric category": (["--prompts", str(numeric)], "'category' must be a non-empty text"),
        "unknown method": (["--methods", "plain,beam"], "unknown method 'beam'"),
        "unknown model": (["--model", "no-such-model"], "unknown model"),
        "bad config": (["--config", "{gate"], "not valid JSON"),
        "string boolean": (["--methods", "scalingar@gate.enabled=nope"], "gate.enabled='nope'"),
        "n in an override": (["--methods", "best_of_n@sampling.num_trajectories=4"], "use --n"),
        "n in config": (["--config", '{"sampling": {"num_trajectories": 4}}'], "--config sets sampling.num_trajectories"),
        "seed in config": (["--config", '{"sampling": {"seed": 7}}'], "use --seeds"),
        "strategy as a section": (["--methods", "scalingar@strategy.x=1"], "unknown section 'strategy'"),
    }


@pytest.mark.parametrize("case", ["empty prompt file", "zero seeds", "zero per category", "numeric category",
                                  "unknown method", "unknown model", "bad config", "string boolean",
                                  "n in an override", "n in config", "seed in config", "strategy as a section"])
def test_bad_input_is_refused_before_any_generation_and_keeps_previous_results(case, out, generations, tmp_path,
                                                                               capsys):
    args, expected = _cases(tmp_path)[case]
    assert bench.main([*SMALL, *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err
    assert generations == []
    assert (out / "results.json").read_text() == PREVIOUS and sorted(os.listdir(out)) == ["results.json"]


def test_an_unusable_out_folder_is_refused_before_any_generation(generations, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert bench.main([*SMALL, "--out", str(afile / "sub")]) == 2
    assert "is a file" in capsys.readouterr().err and generations == []


def test_the_output_folder_exists_before_the_first_generation(tmp_path, monkeypatch):
    target = tmp_path / "new" / "out"
    seen = []
    real = bench._run_job
    monkeypatch.setattr(bench, "_run_job", lambda job: seen.append(target.is_dir()) or real(job))
    assert bench.main([*SMALL, "--out", str(target)]) == 0
    assert seen and all(seen)


def test_an_interrupted_write_leaves_the_previous_results_whole(out, monkeypatch):
    real_write = Path.write_text

    def interrupted(self, data, *a, **k):
        real_write(self, data[: len(data) // 2], *a, **k)  # half the file, then Ctrl-C
        raise KeyboardInterrupt
    monkeypatch.setattr(Path, "write_text", interrupted)
    try:
        status = bench.main([*SMALL, "--out", str(out)])
    except KeyboardInterrupt:  # caught here so it cannot end the whole test session
        status = "KeyboardInterrupt escaped"
    assert status == 130
    monkeypatch.undo()
    assert (out / "results.json").read_text() == PREVIOUS and sorted(os.listdir(out)) == ["results.json"]


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry))
    return kids


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers through /proc (Linux)")
def test_killing_a_worker_mid_run_keeps_the_previous_results(out):
    """Fault injection: SIGKILL one of two workers while they generate. The run must stop with a clear
    error (multiprocessing.Pool would wait forever for the lost task) and leave the old results whole."""
    for name in ("records.jsonl", "results.md"):
        (out / name).write_text(f"previous {name}")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    cmd = [sys.executable, "-m", "scalingar_core", "bench", "--per-category", "100", "--seeds", "1", "--n", "8",
           "--methods", "best_of_n", "--workers", "2", "--out", str(out)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(_children(proc.pid)) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        workers = _children(proc.pid)
        assert len(workers) >= 2, "the bench did not start its workers"
        time.sleep(2)  # the workers load the model and generate for a while
        assert proc.poll() is None, "the run finished before the fault could be injected"
        os.kill(workers[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1
    assert "a bench worker died" in err and "results in" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_each_results_row_was_run_with_the_settings_its_label_names(tmp_path):
    """The label is the truth: every method's recorded settings are the ones its name (and --config, --n) give."""
    labels = ["plain", "best_of_n@sampling.top_k=3;gate.quantile=0.4", "termination-only"]
    config = '{"profile": {"lambda_tok": 0.5}}'
    args = [*SMALL[:-2], "--methods", ",".join(labels), "--n", "3", "--config", config, "--out", str(tmp_path)]
    assert bench.main(args) == 0
    methods = json.loads((tmp_path / "results.json").read_text())["methods"]
    assert sorted(methods) == sorted(labels)
    for label in labels:
        recorded = methods[label]["config"]
        expected = json.loads(json.dumps(bench.method_config(label, 3, 0, json.loads(config)).to_dict()))
        del expected["sampling"]["seed"]
        assert {k: v for k, v in recorded.items() if k != "resolved"} == expected, label
        assert recorded["profile"]["lambda_tok"] == 0.5
    assert methods[labels[1]]["config"]["resolved"]["num_trajectories"] == 3
    assert methods[labels[1]]["config"]["resolved"]["top_k"] == 3
