"""ComfyUI glue for ScalingAR (V3 node schema). Imported only inside ComfyUI: see the root __init__.py."""
from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .config_nodes import (
    ScalingARConfidenceProfile,
    ScalingARGuidanceScheduler,
    ScalingARTerminationGate,
)
from .encode import ScalingARTextEncode
from .loader import ScalingARModelLoader
from .sampler import ScalingARSampler
from .trace_nodes import ScalingARTracePlot, ScalingARTraceSave

NODES: list[type[io.ComfyNode]] = [
    ScalingARModelLoader, ScalingARTextEncode, ScalingARConfidenceProfile, ScalingARTerminationGate,
    ScalingARGuidanceScheduler, ScalingARSampler, ScalingARTracePlot, ScalingARTraceSave,
]


class ScalingARExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


async def comfy_entrypoint() -> ScalingARExtension:
    return ScalingARExtension()


def classic_mappings() -> tuple[dict, dict]:
    """NODE_CLASS_MAPPINGS / NODE_DISPLAY_NAME_MAPPINGS for ComfyUI's classic loader (V3 classes carry the
    V1 interface, so the same classes serve both)."""
    schemas = [(node, node.GET_SCHEMA()) for node in NODES]
    return ({s.node_id: node for node, s in schemas}, {s.node_id: s.display_name for _, s in schemas})
