"""generate --prompts FILE --samples K: one reader that reports every bad line, GenEval's layout, items written
as units, resume, one writer, and the same images whatever the batching."""
import json
import os
import re
from pathlib import Path

import pytest
import torch

from scalingar_core.app import cli, prompt_files
from scalingar_core.app.prompt_files import PromptFileError, read_prompt_file, run_prompt_file, sample_seed
from scalingar_core.engine.config import RunConfig
from scalingar_core.models import registry

FAST = ["--model", "toy-shapes", "--num-trajectories", "2"]


@pytest.fixture(scope="module")
def toy():
    return registry.load("toy-shapes")


def geneval_read(imagedir: Path) -> list[tuple[dict, str]]:
    """What djghosh13/geneval's evaluation/evaluate_images.py reads from a folder of generated images: every
    all-digit subfolder's metadata.jsonl (json.load, whole) and each samples/ file matching \\d+\\.png."""
    seen = []
    for sub in sorted(os.listdir(imagedir)):
        folder = imagedir / sub
        if not folder.is_dir() or not sub.isdigit():
            continue
        with open(folder / "metadata.jsonl") as fp:
            metadata = json.load(fp)
        for name in sorted(os.listdir(folder / "samples")):
            if (folder / "samples" / name).is_file() and re.match(r"\d+\.png", name):
                seen.append((metadata, f"{sub}/samples/{name}"))
    return seen


def test_every_bad_line_is_reported_at_once_with_file_and_line(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "a red circle"}\n{"prompt": 5}\nnot json\n\n{"prompt": "  "}\n[1]\n'
                 '{"prompt": "x", "seed": -1}\n')
    with pytest.raises(PromptFileError) as err:
        read_prompt_file(f)
    text = str(err.value)
    for line in (2, 3, 5, 6, 7):
        assert f"p.jsonl:{line}:" in text
    assert "p.jsonl:1:" not in text and "5 bad line(s)" in text


def test_empty_and_missing_files_are_errors(tmp_path):
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(PromptFileError, match="has no prompt"):
        read_prompt_file(tmp_path / "empty.txt")
    with pytest.raises(PromptFileError, match="not found"):
        read_prompt_file(tmp_path / "missing.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PromptFileError, match="not UTF-8"):
        read_prompt_file(tmp_path / "bin.txt")


def test_bad_captions_are_found_before_anything_is_decoded(tmp_path, capsys):
    f = tmp_path / "p.txt"
    f.write_text("two red circles\na flying elephant\na blue square\nthe moon\n")
    out = tmp_path / "out"
    assert cli.main(["generate", "--prompts", str(f), "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert "p.txt:2:" in err and "p.txt:4:" in err and "elephant" in err
    assert not out.exists() or not any(p.name.isdigit() for p in out.iterdir())  # nothing was generated


def test_geneval_layout_seeds_and_reproduction(tmp_path, toy):
    f = tmp_path / "meta.jsonl"
    lines = [{"tag": "counting", "include": [{"class": "circle", "count": 2}], "prompt": "two red circles"},
             {"tag": "single_object", "prompt": "a blue square"},
             {"tag": "single_object", "prompt": "a blue square"},  # a duplicate line: other seeds, other images
             {"tag": "single_object", "prompt": "a red circle", "seed": 42}]
    f.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "out"
    assert cli.main(["generate", "--prompts", str(f), "--out", str(out), "--samples", "2", "--seed", "3",
                     *FAST]) == 0
    seen = geneval_read(out)
    assert [(m, p) for m, p in seen] == [(lines[i], f"{i:05d}/samples/{k:04d}.png") for i in range(4) for k in range(2)]
    for i in range(4):
        assert sorted(os.listdir(out / f"{i:05d}" / "samples")) == ["0000.png", "0001.png"]  # nothing else there
        assert (out / f"{i:05d}" / "metadata.jsonl").read_text().count("\n") == 1
    index = [json.loads(x) for x in (out / "index.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in index] == [x["prompt"] for x in lines]
    seeds = [[s["seed"] for s in r["samples"]] for r in index]
    assert seeds[0] == [sample_seed(3, 0, 0), sample_seed(3, 0, 1)] and seeds[3] == [sample_seed(42, 0, 0),
                                                                                      sample_seed(42, 0, 1)]
    assert len({s for row in seeds for s in row}) == 8
    assert (out / "00001/samples/0000.png").read_bytes() != (out / "00002/samples/0000.png").read_bytes()
    trace = json.loads((out / "00001/traces/0001.json").read_text())
    assert trace["seed"] == seeds[1][1]
    # generate --prompt P --seed S with the recorded seed reproduces the sample
    single = tmp_path / "single"
    assert cli.main(["generate", "--prompt", "a blue square", "--seed", str(seeds[1][1]), "--out", str(single),
                     *FAST]) == 0
    fate = lambda tr: [(r["removed_at"], r["selected"]) for r in tr["trajectories"]]  # noqa: E731
    assert fate(json.loads((single / "trace.json").read_text())) == fate(trace)  # floats agree to rounding
    from PIL import Image  # generate's PNG also carries its run id: compare the pixels

    assert Image.open(single / "image.png").tobytes() == Image.open(out / "00001/samples/0001.png").tobytes()


def test_interrupted_run_keeps_complete_items_and_resumes_without_rewriting(tmp_path, toy, monkeypatch):
    f = tmp_path / "p.txt"
    f.write_text("".join(f"{c} {s}\n" for c in ("a red", "a blue", "a green") for s in
                         ("circle", "square", "triangle", "circle left of a red square")))
    out = tmp_path / "out"
    out.mkdir()
    config = RunConfig.from_dict({"sampling": {"num_trajectories": 2}})
    real = prompt_files.publish
    moved = []

    def stop_after_four(src, dst):
        if len(moved) == 4:
            raise KeyboardInterrupt
        moved.append(dst)
        return real(src, dst)
    monkeypatch.setattr(prompt_files, "publish", stop_after_four)
    with pytest.raises(KeyboardInterrupt):
        run_prompt_file(toy, config, f, out, samples=2, max_rows=6, model_name="toy-shapes", progress=False)
    monkeypatch.setattr(prompt_files, "publish", real)
    done = sorted(p.name for p in out.iterdir() if p.name.isdigit())
    assert len(done) == 4 and not list(out.glob(".*partial*")) and not (out / ".scalingar.lock").exists()
    stamps = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for d in done for p in (out / d).rglob("*") if p.is_file()}
    assert run_prompt_file(toy, config, f, out, samples=2, max_rows=6, model_name="toy-shapes", progress=False) == 0
    assert sorted(p.name for p in out.iterdir() if p.name.isdigit()) == [f"{i:05d}" for i in range(12)]
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in stamps} == stamps  # no finished file rewritten
    assert len(geneval_read(out)) == 24
    other = RunConfig.from_dict({"strategy": "best_of_n", "sampling": {"num_trajectories": 2}})
    with pytest.raises(PromptFileError, match="strategy='scalingar' .this run: 'best_of_n'."):
        run_prompt_file(toy, other, f, out, samples=2, model_name="toy-shapes", progress=False)


def test_batching_does_not_change_the_images(tmp_path, toy):
    f = tmp_path / "p.txt"
    f.write_text("two red circles\na blue square\na green triangle above a red circle\n")
    config = RunConfig.from_dict({"sampling": {"num_trajectories": 2}})
    for rows in (2, 5, 64):
        run_prompt_file(toy, config, f, tmp_path / str(rows), samples=2, max_rows=rows, progress=False)
    for i in range(3):
        for k in range(2):
            name = f"{i:05d}/samples/{k:04d}.png"
            assert (tmp_path / "2" / name).read_bytes() == (tmp_path / "5" / name).read_bytes() == \
                (tmp_path / "64" / name).read_bytes()


def test_a_second_launch_into_the_same_folder_is_refused(tmp_path, toy):
    from scalingar_core.app.output_set import folder_lock

    f = tmp_path / "p.txt"
    f.write_text("two red circles\n")
    (tmp_path / "o").mkdir()
    with folder_lock(tmp_path / "o"):
        with pytest.raises(ValueError, match=f"in use by another run .process {os.getpid()}"):
            run_prompt_file(toy, RunConfig(), f, tmp_path / "o", progress=False)


def test_max_rows_below_n_is_refused(tmp_path, toy):
    f = tmp_path / "p.txt"
    f.write_text("two red circles\n")
    with pytest.raises(PromptFileError, match="--max-rows 3 is smaller than one image's 8 trajectories"):
        run_prompt_file(toy, RunConfig(), f, tmp_path / "o", max_rows=3, progress=False)
    assert torch.is_tensor(torch.zeros(1))


def test_sigterm_keeps_complete_items_leaves_no_partial_folder_and_a_rerun_resumes(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    f = tmp_path / "p.txt"
    f.write_text("".join(f"{c} {s}\n" for c in ("a red", "a blue", "a green") for s in
                         ("circle", "square", "triangle", "circle left of a red square")))
    out = tmp_path / "out"
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "scalingar_core", "generate", "--prompts", str(f), "--samples", "2",
           "--max-rows", "4", "--out", str(out), *FAST]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and not (out.is_dir() and any(p.name.isdigit() for p in out.iterdir())):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    done = sorted(p.name for p in out.iterdir() if p.name.isdigit())
    assert 1 <= len(done) < 12 and not list(out.glob(".*partial*")) and not (out / ".scalingar.lock").exists()
    stamps = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for d in done for p in (out / d).rglob("*") if p.is_file()}
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(geneval_read(out)) == 24
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in stamps} == stamps  # no finished file rewritten
