"""The pack's own wire types, so a ScalingAR socket only accepts ScalingAR values."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from comfy_api.latest import io

from scalingar_core.engine.config import GateConfig, ProfileConfig, SchedulerConfig
from scalingar_core.engine.trace import Trace as TraceRecord

Model = io.Custom("SCALINGAR_MODEL")
Conditioning = io.Custom("SCALINGAR_CONDITIONING")
Profile = io.Custom("SCALINGAR_PROFILE")
Gate = io.Custom("SCALINGAR_GATE")
Scheduler = io.Custom("SCALINGAR_SCHEDULER")
Trace = io.Custom("SCALINGAR_TRACE")

CATEGORY = "ScalingAR"


@dataclass
class EncodedPrompt:
    """What travels on a SCALINGAR_CONDITIONING wire: the condition plus the model it belongs to."""

    model_name: str
    prompt: str
    condition: Any


def _is_model(value) -> bool:
    return hasattr(getattr(value, "model", None), "ar")  # a ModelPatcher around patcher.ARModelModule


# what each wire must carry (checked when a node is called directly, without the server's type check)
WIRE_VALUES = {
    Model.io_type: ("a model from ScalingAR Model Loader", _is_model),
    Conditioning.io_type: ("the output of ScalingAR Text Encode", lambda v: isinstance(v, EncodedPrompt)),
    Profile.io_type: ("the output of ScalingAR Confidence Profile", lambda v: isinstance(v, ProfileConfig)),
    Gate.io_type: ("the output of ScalingAR Termination Gate", lambda v: isinstance(v, GateConfig)),
    Scheduler.io_type: ("the output of ScalingAR Guidance Scheduler", lambda v: isinstance(v, SchedulerConfig)),
    Trace.io_type: ("the trace output of ScalingAR Sampler", lambda v: isinstance(v, TraceRecord)),
}
