"""The pack's own wire types, so a ScalingAR socket only accepts ScalingAR values."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from comfy_api.latest import io

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
