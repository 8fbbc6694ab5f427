"""ScalingAR: test-time scaling of next-token-prediction image models from their own logits.

Framework-independent: nothing here imports ComfyUI.
"""
from .engine.config import (
                     STRATEGIES,
                     BaselineConfig,
                     GateConfig,
                     ProfileConfig,
                     RunConfig,
                     SamplingConfig,
                     SchedulerConfig,
)
from .models.protocol import ARModel, DecodeSession, ModelInfo, SamplingDefaults

__all__ = ["ARModel", "BaselineConfig", "DecodeSession", "GateConfig", "ModelInfo", "ProfileConfig",
           "RunConfig", "STRATEGIES", "SamplingConfig", "SamplingDefaults", "SchedulerConfig"]
