"""ScalingAR: test-time scaling for next-token-prediction image models, as a ComfyUI node pack.

Inside ComfyUI this exports the nodes both ways ComfyUI looks for them: the classic NODE_CLASS_MAPPINGS /
NODE_DISPLAY_NAME_MAPPINGS / WEB_DIRECTORY and the V3 ``comfy_entrypoint``. Anywhere else (plain Python,
pytest at the repository root) it imports cleanly and exports nothing ComfyUI-specific; the engine is
``scalingar_core``.
"""
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _in_comfyui() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("folder_paths", "comfy_api"))


__all__ = []

if _in_comfyui():
    # ComfyUI imports this folder under a path-like module name; the engine imports itself absolutely, so
    # make ``scalingar_core`` importable. Appended, never prepended: our ``nodes`` package must not shadow
    # ComfyUI's top-level ``nodes`` module.
    if importlib.util.find_spec("scalingar_core") is None:
        sys.path.append(_HERE)

    from .nodes import classic_mappings, comfy_entrypoint  # noqa: E402

    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = classic_mappings()
    WEB_DIRECTORY = "./web"
    __all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY", "comfy_entrypoint"]
