"""The README's Python example runs as printed, and the README stays a short guide."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_is_at_most_250_lines():
    assert len(README.splitlines()) <= 250


@pytest.mark.slow
def test_python_example_runs_and_writes_what_it_says(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README, re.DOTALL)
    assert len(blocks) == 1
    done = subprocess.run([sys.executable, "-c", blocks[0]], cwd=tmp_path, capture_output=True, text=True,
                          check=False, timeout=600, env={"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    trace = json.loads((tmp_path / "trace.json").read_text())
    chosen = next(t["index"] for t in trace["trajectories"] if t["selected"])
    assert f"chosen {chosen} tokens {trace['tokens_generated']}" in done.stdout
    assert (tmp_path / "image.png").stat().st_size > 0
    removed = [line for line in done.stdout.splitlines()[1:] if not line.endswith("None None")]
    assert len(removed) == sum(t["removed_at"] is not None for t in trace["trajectories"])
