"""scripts/setup_env.sh runs pip only when the requirements changed since the last successful install
(a stamp in the venv), on a stand-in venv whose pip records its calls."""
import os
import shutil
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fake_repo(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup_env.sh", tmp_path / "scripts")
    shutil.copy(ROOT / "requirements.txt", tmp_path)
    bin_ = tmp_path / ".venv" / "bin"
    bin_.mkdir(parents=True)
    for name, body in (("python", "exit 0"),  # "import torch" succeeds
                       ("pip", f'echo "$*" >> "{tmp_path}/pip_calls"')):
        (bin_ / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
        (bin_ / name).chmod((bin_ / name).stat().st_mode | stat.S_IEXEC)
    return tmp_path


def run(repo: Path) -> list[str]:
    subprocess.run(["bash", "scripts/setup_env.sh"], cwd=repo, check=True, env={**os.environ, "PYTHON": "false"},
                   capture_output=True, text=True, timeout=60)
    calls = repo / "pip_calls"
    return calls.read_text().splitlines() if calls.exists() else []


def test_pip_runs_once_then_only_when_requirements_change(tmp_path):
    repo = fake_repo(tmp_path)
    calls = run(repo)
    assert len(calls) == 1 and "-r requirements.txt" in calls[0]  # installed once ...
    assert len(run(repo)) == 1  # ... and skipped while nothing changed
    with open(repo / "requirements.txt", "a") as f:
        f.write("tqdm>=4\n")
    assert len(run(repo)) == 2  # a changed requirement installs again
    assert len(run(repo)) == 2


def test_a_failed_install_leaves_no_stamp(tmp_path):
    repo = fake_repo(tmp_path)
    (repo / ".venv" / "bin" / "pip").write_text("#!/usr/bin/env bash\necho broken >&2\nexit 1\n")
    done = subprocess.run(["bash", "scripts/setup_env.sh"], cwd=repo, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 1 and "broken" in done.stderr
    assert not (repo / ".venv" / ".scalingar-requirements.sha256").exists()
