"""The README's first command, as a user runs it: ``scripts/main_job.sh`` on the bundled default model."""
import json
import os
import subprocess
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def test_main_job_prunes_and_writes_every_output(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path)}
    done = subprocess.run(["bash", "scripts/main_job.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "model toy-shapes-256" in done.stdout
    for name in ("image.png", "candidates.png", "trace_plot.png", "entropy.png"):
        assert Image.open(tmp_path / name).size[0] > 0
    trace = json.loads((tmp_path / "trace.json").read_text())
    removed = [t for t in trace["trajectories"] if t["removed_at"] is not None]
    # the default prompt shows the gate at work: removals, and fewer tokens than eight full samples
    assert len(removed) >= 1 and trace["tokens_generated"] < 8 * 256
    # it says whether the chosen image is right, and the trace records the same verdict
    selected = next(t["index"] for t in trace["trajectories"] if t["selected"])
    assert trace["checker"]["chosen"] == selected
    verdict = next(c["verdict"] for c in trace["checker"]["candidates"] if c["index"] == selected)
    assert f"checker: chosen #{selected}: {verdict}" in done.stdout
