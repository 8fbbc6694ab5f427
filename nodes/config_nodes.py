"""Confidence profile, termination gate and guidance scheduler: widgets in, a validated config out."""
from __future__ import annotations

from comfy_api.latest import io

from scalingar_core.engine.config import GateConfig, ProfileConfig, SchedulerConfig

from . import types
from .base import ScalingARNode
from .config_fields import build, inputs_for


class _ConfigNode(ScalingARNode):
    """One node per config dataclass: its fields are the inputs, the validated dataclass the output."""

    ABSTRACT = True
    NODE_ID = DISPLAY_NAME = DESCRIPTION = OUTPUT_NAME = ""
    CONFIG: type = object
    OUTPUT: type = object

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id=cls.NODE_ID, display_name=cls.DISPLAY_NAME, category=types.CATEGORY,
                         description=cls.DESCRIPTION, inputs=inputs_for(cls.CONFIG),
                         outputs=[cls.OUTPUT.Output(display_name=cls.OUTPUT_NAME)])

    @classmethod
    def execute(cls, **values):
        return io.NodeOutput(build(cls.CONFIG, values))


class ScalingARConfidenceProfile(_ConfigNode):
    NODE_ID, DISPLAY_NAME, OUTPUT_NAME = "ScalingARConfidenceProfile", "ScalingAR Confidence Profile", "profile"
    DESCRIPTION = ("How each trajectory's calibrated confidence C is formed from its own logits (eqs. 5-8, v1 5-12). "
                   "Defaults are the paper's universal configuration.")
    CONFIG, OUTPUT = ProfileConfig, types.Profile


class ScalingARTerminationGate(_ConfigNode):
    NODE_ID, DISPLAY_NAME, OUTPUT_NAME = "ScalingARTerminationGate", "ScalingAR Termination Gate", "gate"
    DESCRIPTION = ("Adaptive threshold theta (eq. 9, v1 13) that removes trajectories whose confidence stays low, "
                   "with warm-up, recovery window and hard-fail guard.")
    CONFIG, OUTPUT = GateConfig, types.Gate


class ScalingARGuidanceScheduler(_ConfigNode):
    NODE_ID, DISPLAY_NAME, OUTPUT_NAME = "ScalingARGuidanceScheduler", "ScalingAR Guidance Scheduler", "scheduler"
    DESCRIPTION = "Per-trajectory CFG scale steered by the confidence signals (eq. 10, v1 14-15)."
    CONFIG, OUTPUT = SchedulerConfig, types.Scheduler
