"""Confidence profile, termination gate and guidance scheduler: widgets in, a validated config out."""
from __future__ import annotations

from comfy_api.latest import io

from scalingar_core.config import GateConfig, ProfileConfig, SchedulerConfig

from . import types
from .base import ScalingARNode
from .config_fields import build, inputs_for


class ScalingARConfidenceProfile(ScalingARNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ScalingARConfidenceProfile", display_name="ScalingAR Confidence Profile",
            category=types.CATEGORY,
            description="How each trajectory's calibrated confidence C is formed from its own logits "
                        "(eqs. 5-12). Defaults are the paper's universal configuration.",
            inputs=inputs_for(ProfileConfig),
            outputs=[types.Profile.Output(display_name="profile")])

    @classmethod
    def execute(cls, **values):
        return io.NodeOutput(build(ProfileConfig, values))


class ScalingARTerminationGate(ScalingARNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ScalingARTerminationGate", display_name="ScalingAR Termination Gate",
            category=types.CATEGORY,
            description="Adaptive threshold theta (eq. 13) that removes trajectories whose confidence "
                        "stays low, with warm-up, recovery window and hard-fail guard.",
            inputs=inputs_for(GateConfig),
            outputs=[types.Gate.Output(display_name="gate")])

    @classmethod
    def execute(cls, **values):
        return io.NodeOutput(build(GateConfig, values))


class ScalingARGuidanceScheduler(ScalingARNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ScalingARGuidanceScheduler", display_name="ScalingAR Guidance Scheduler",
            category=types.CATEGORY,
            description="Per-trajectory CFG scale steered by the confidence signals (eqs. 14-15).",
            inputs=inputs_for(SchedulerConfig),
            outputs=[types.Scheduler.Output(display_name="scheduler")])

    @classmethod
    def execute(cls, **values):
        return io.NodeOutput(build(SchedulerConfig, values))
