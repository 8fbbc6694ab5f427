"""ScalingARSampler: N trajectories of an AR image model, profiled, gated and guided; image + trace out."""
from __future__ import annotations

import torch
from comfy_api.latest import io
from comfy_execution.utils import get_executing_context

from scalingar_core.app.entropy_map import entropy_panels
from scalingar_core.app.help import COMPILE_HELP
from scalingar_core.engine.config import (
    STRATEGIES,
    GateConfig,
    ProfileConfig,
    RunConfig,
    SamplingConfig,
    SchedulerConfig,
)
from scalingar_core.engine.loop import generate
from scalingar_core.models.protocol import set_compile

from . import patcher, types
from .base import ScalingARNode
from .progress import StepReporter, json_safe

MAX_SEED = 2**53 - 1  # the browser keeps integers exact up to here

# Sentinels for "use the base model's own default" (the engine's None). 0 is a real value for CFG and
# top-k (off), so those use -1; temperature and top-p cannot be 0, so 0 means default there.
DEFAULT_CFG, DEFAULT_TOP_K, DEFAULT_TEMPERATURE, DEFAULT_TOP_P = -1.0, -1, 0.0, 0.0


def sampling_config(num_trajectories, seed, temperature, top_k, top_p, cfg_scale) -> SamplingConfig:
    return SamplingConfig(
        num_trajectories=num_trajectories, seed=seed,
        temperature=None if temperature == DEFAULT_TEMPERATURE else temperature,
        top_k=None if top_k == DEFAULT_TOP_K else top_k,
        top_p=None if top_p == DEFAULT_TOP_P else top_p,
        cfg_scale=None if cfg_scale == DEFAULT_CFG else cfg_scale)


def run_config(strategy, sampling, profile=None, gate=None, scheduler=None) -> RunConfig:
    """Absent profile: the default profile (C is still measured). Absent gate / scheduler: that part off."""
    return RunConfig(strategy=strategy, sampling=sampling, profile=profile or ProfileConfig(),
                     gate=gate or GateConfig(enabled=False), scheduler=scheduler or SchedulerConfig(enabled=False))


def to_comfy_images(images: torch.Tensor) -> torch.Tensor:
    """``[n, 3, H, W]`` in [0, 1] -> ComfyUI IMAGE ``[n, H, W, 3]`` float32 on the CPU."""
    return images.detach().float().clamp(0, 1).permute(0, 2, 3, 1).contiguous().cpu()


class ScalingARSampler(ScalingARNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ScalingARSampler", display_name="ScalingAR Sampler", category=types.CATEGORY,
            description="Samples N trajectories token by token; the profile scores each from its own logits, "
                        "the gate removes weak ones early and the scheduler adjusts each one's CFG. Outputs "
                        "the selected image, every candidate (removed ones framed in red) and the trace.",
            inputs=[
                types.Model.Input("model", tooltip="From ScalingAR Model Loader."),
                types.Conditioning.Input("conditioning", tooltip="From ScalingAR Text Encode, same model."),
                io.Combo.Input("strategy", options=list(STRATEGIES), default="scalingar",
                               tooltip="scalingar: profile + gate + scheduler. plain: one trajectory. "
                                       "best_of_n: N full images, keep the most confident. "
                                       "importance_sampling: resample by confidence at fixed points. "
                                       "random_prune: remove as many as the gate would, at random."),
                io.Int.Input("num_trajectories", default=8, min=1, max=64,
                             tooltip="N, trajectories sampled together (batch rows; memory grows with N)."),
                io.Int.Input("seed", default=0, min=0, max=MAX_SEED, control_after_generate=True,
                             tooltip="Same seed and settings give the same images."),
                io.Float.Input("temperature", default=DEFAULT_TEMPERATURE, min=0.0, max=10.0, step=0.01,
                               tooltip="Softmax temperature. 0 = the model's default."),
                io.Int.Input("top_k", default=DEFAULT_TOP_K, min=-1, max=1_000_000,
                             tooltip="Keep the k most likely tokens. -1 = the model's default, 0 = off."),
                io.Float.Input("top_p", default=DEFAULT_TOP_P, min=0.0, max=1.0, step=0.01,
                               tooltip="Nucleus sampling mass. 0 = the model's default, 1 = off."),
                io.Float.Input("cfg_scale", default=DEFAULT_CFG, min=-1.0, max=50.0, step=0.1,
                               tooltip="Base classifier-free guidance scale (the scheduler moves around it). "
                                       "-1 = the model's default (7.5 for LlamaGen T2I, 5 for Janus-Pro)."),
                types.Profile.Input("profile", optional=True,
                                    tooltip="Confidence profile settings. Absent: the paper's defaults."),
                types.Gate.Input("gate", optional=True,
                                 tooltip="Termination gate settings. Absent: no trajectory is removed."),
                types.Scheduler.Input("scheduler", optional=True,
                                      tooltip="Guidance scheduler settings. Absent: fixed CFG."),
                io.Boolean.Input("compile", default=False, optional=True,
                                 tooltip=COMPILE_HELP + " Same images as off, up to floating-point rounding."),
            ],
            outputs=[
                io.Image.Output(display_name="image", tooltip="The selected trajectory's image."),
                io.Image.Output(display_name="candidates",
                                tooltip="Every trajectory's image; removed ones decoded from their partial "
                                        "tokens (grey where not generated) and framed in red."),
                types.Trace.Output(display_name="trace", tooltip="Per-step signals, C, theta and CFG."),
                io.Image.Output(display_name="entropy_map",
                                tooltip="Where the model was unsure: each candidate's per-token entropy over its "
                                        "image (bright = unsure), one colour scale for all; removed ones framed "
                                        "in red with the cell of their last token outlined."),
            ],
            hidden=[io.Hidden.unique_id],
            # An output node, so ComfyUI visits it even on a full cache hit and re-sends its UI output (the
            # trace summary the widget redraws from); its plot is a result in its own right.
            is_output_node=True)

    @classmethod
    def execute(cls, model, conditioning, strategy, num_trajectories, seed, temperature, top_k, top_p,
                cfg_scale, profile=None, gate=None, scheduler=None, compile=False):
        ar = patcher.ar_model(model)
        if conditioning.model_name != ar.name:
            raise ValueError(f"the conditioning was encoded for {conditioning.model_name!r} but the sampler's "
                             f"model is {ar.name!r}: feed both from the same ScalingAR Model Loader")
        config = run_config(strategy, sampling_config(num_trajectories, seed, temperature, top_k, top_p,
                                                      cfg_scale), profile, gate, scheduler)
        set_compile(ar, compile)
        patcher.load(model, config.sampling.num_trajectories)
        context = get_executing_context()
        node_id = cls.hidden.unique_id if cls.hidden is not None else None
        reporter = StepReporter(node_id, context.prompt_id if context is not None else None)
        try:
            with torch.inference_mode():
                result = generate(ar, conditioning.condition, config, callback=reporter)
        finally:
            if compile and callable(getattr(ar, "release_decode_memory", None)):
                ar.release_decode_memory()  # ComfyUI does not count the compiled step's static KV cache
        summary = json_safe(result.trace.summary())
        entropy_map = to_comfy_images(entropy_panels(result.decoded, result.trace))
        return io.NodeOutput(to_comfy_images(result.image[None]), to_comfy_images(result.images), result.trace,
                             entropy_map, ui={"scalingar_trace": [summary]})
