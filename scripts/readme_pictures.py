"""The README's pictures and what they were made from.

Beside each picture ``docs/NAME.png`` lies ``docs/NAME.json``: the picture's own sha256, the command that
made it, and the sha256 of every source it shows (the workflow file, the model weights, the script and the module
that draws it). A
picture is stale when any source has changed since (``tests/test_readme_pictures.py`` fails then).

    .venv/bin/python scripts/readme_pictures.py      # retake the main job's pictures (seconds, CPU)

The ComfyUI screenshots are retaken by the browser test's update mode, which stamps them the same way:

    SCALINGAR_UPDATE_SCREENSHOT=1 .scratch/comfyui/venv/bin/python -m pytest tests/browser/test_comfyui_widget.py
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
TOY_WEIGHTS = "scalingar_core/models/toy/weights/toy-shapes-256.safetensors"
TOY_WORKFLOW = "workflows/toy_shapes_scalingar.json"
# main job output -> (README picture, the module that draws it)
MAIN_JOB = {"candidates.png": ("main_job_candidates.png", "scalingar_core/app/candidates.py"),
            "trace_plot.png": ("main_job_trace_plot.png", "scalingar_core/app/plot.py"),
            "entropy.png": ("main_job_entropy.png", "scalingar_core/app/entropy_map.py")}
MAIN_JOB_SOURCES = (TOY_WEIGHTS, "scripts/main_job.sh")
# ComfyUI screenshot -> the sources it shows besides the toy workflow and weights (the code that draws it)
SCREENSHOT_SOURCES = {"widget_screenshot.png": ("web/scalingar_plot.js",),
                      "widget_closeup.png": ("web/scalingar_plot.js",),
                      "widget_closeup_vue.png": ("web/scalingar_plot.js",),
                      "comfyui_trace_plot.png": ("scalingar_core/app/plot.py",),
                      "comfyui_entropy_map.png": ("scalingar_core/app/entropy_map.py",)}


def screenshot_sources(name: str) -> tuple[str, ...]:
    return (TOY_WORKFLOW, TOY_WEIGHTS, *SCREENSHOT_SOURCES.get(name, ()))


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def stamp_path(picture: Path) -> Path:
    return picture.with_suffix(".json")


def stamp(picture: Path, sources, command: str) -> Path:
    """Write the JSON beside ``picture``: its sha256, ``command`` and the sha256 of each source (repo paths)."""
    record = {"picture_sha256": sha256(picture), "command": command,
              "sources": {s: sha256(REPO / s) for s in sources}}
    path = stamp_path(picture)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def problems(picture: Path) -> list[str]:
    """Why ``picture`` cannot be trusted to show today's pack (empty: it is fresh)."""
    path = stamp_path(picture)
    if not path.is_file():
        return [f"{picture.name} has no {path.name} saying what it was made from"]
    record = json.loads(path.read_text())
    out = []
    if record.get("picture_sha256") != sha256(picture):
        out.append(f"{picture.name} was changed after {path.name} was written")
    if not record.get("sources"):
        out.append(f"{path.name} names no source")
    for source, digest in record.get("sources", {}).items():
        if not (REPO / source).is_file():
            out.append(f"{picture.name} shows {source}, which no longer exists")
        elif sha256(REPO / source) != digest:
            out.append(f"{picture.name} is older than {source}: retake it with `{record.get('command')}`")
    return out


def main() -> int:
    """Run the main job as the README shows it and copy its pictures into docs/, stamped."""
    command = "bash scripts/main_job.sh"  # as the README shows it
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(["bash", "scripts/main_job.sh"], cwd=REPO, check=True, env={**os.environ, "OUT": out})
        for made, (picture, drawn_by) in MAIN_JOB.items():
            shutil.copyfile(Path(out) / made, DOCS / picture)
            stamp(DOCS / picture, (*MAIN_JOB_SOURCES, drawn_by),
                  f"python scripts/readme_pictures.py (runs {command})")
            print(f"wrote docs/{picture} and docs/{stamp_path(DOCS / picture).name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
