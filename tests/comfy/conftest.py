"""Shared set-up for the ComfyUI tiers.

Both need the ComfyUI built by ``scripts/comfyui/setup.sh`` and run under its venv:

    bash scripts/comfyui/setup.sh
    .scratch/comfyui/venv/bin/python -m pytest tests/comfy -q            # fast tier + server tier
    .scratch/comfyui/venv/bin/python -m pytest tests/comfy -q -m "not comfyui"   # fast tier only

Elsewhere (no ComfyUI, or another interpreter) the tests that need it are skipped with the reason.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

# One intra-op thread: on the small shared CI machine torch's pool spins against other processes and a toy
# generation takes seconds instead of ~0.2 s (measured: 30 us vs 8 ms per tiny linear layer).
torch.set_num_threads(int(os.environ.get("SCALINGAR_COMFY_THREADS", "1")))

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "comfyui"))
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # scalingar_core; appended so this repo's nodes/ never shadows ComfyUI's nodes

import harness  # noqa: E402

COMFY_DIR = harness.comfyui_home() / "ComfyUI"


def pytest_configure(config):
    config.addinivalue_line("markers", "comfyui: starts a real ComfyUI server (needs scripts/comfyui/setup.sh)")


def _comfy_import_problem() -> str | None:
    if not harness.is_set_up():
        return f"no ComfyUI in {harness.comfyui_home()}: run `bash scripts/comfyui/setup.sh`"
    for module in ("aiohttp", "av", "torchsde"):
        if importlib.util.find_spec(module) is None:
            return (f"this interpreter lacks ComfyUI's dependency {module!r}: run the tests with "
                    f"{harness.comfyui_home() / 'venv/bin/python'}")
    return None


@pytest.fixture(scope="session")
def cenv(tmp_path_factory):
    """ComfyUI's modules imported in this process (no server) and the pack loaded as ComfyUI loads it.

    Returns a namespace: ``pack`` (the root package), ``nodes`` (its nodes subpackage), ``base`` (the
    temporary base folder holding models/ and output/)."""
    problem = _comfy_import_problem()
    if problem:
        pytest.skip(problem)
    base = tmp_path_factory.mktemp("comfy-base")
    # ComfyUI's folder first: its top-level ``nodes`` module must win over this repository's nodes/.
    sys.path.insert(0, str(COMFY_DIR))
    from comfy.cli_args import args

    # CPU unless asked otherwise (the device machine runs this tier with SCALINGAR_COMFY_DEVICE=cuda).
    args.cpu = os.environ.get("SCALINGAR_COMFY_DEVICE", "cpu") == "cpu"
    import folder_paths

    folder_paths.models_dir = str(base / "models")
    folder_paths.set_output_directory(str(base / "output"))
    folder_paths.set_temp_directory(str(base / "temp"))
    spec = importlib.util.spec_from_file_location("ScalingAR", REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    pack = importlib.util.module_from_spec(spec)
    sys.modules["ScalingAR"] = pack
    spec.loader.exec_module(pack)

    class Env:
        pass

    env = Env()
    env.pack, env.nodes, env.base = pack, sys.modules["ScalingAR.nodes"], base
    return env
