"""Hand an ARModel to ComfyUI's model management so it can load, evict and offload it like any model."""
from __future__ import annotations

import comfy.model_management as mm
import comfy.model_patcher
import torch

TEXT_ENCODER = "text_encoder"  # the torch_modules() entry that gets its own patcher


def torch_parts(ar_model) -> dict[str, torch.nn.Module]:
    """The ARModel's torch modules: the model itself if it is an nn.Module, else its ``torch_modules()``,
    else its attributes that are nn.Modules."""
    if isinstance(ar_model, torch.nn.Module):
        parts = {"model": ar_model}
    elif callable(getattr(ar_model, "torch_modules", None)):
        parts = dict(ar_model.torch_modules())  # the model names every module a host may move
    else:
        parts = {k.replace(".", "_"): v for k, v in vars(ar_model).items() if isinstance(v, torch.nn.Module)}
    if not parts:
        raise TypeError(f"{type(ar_model).__name__} holds no torch modules; ComfyUI cannot manage its memory")
    return parts


class ARModelModule(torch.nn.Module):
    """nn.Module face of (part of) an ARModel: ModelPatcher moves weights with ``.to()`` and tracks ``.device``.

    The ARModel's torch modules become children, so moving this module moves them in place and the
    ARModel keeps working with the same objects (its ``device`` must follow its weights, as the toy and
    LlamaGen models' do). ``parts``: which of them (default: all, see :func:`torch_parts`).
    """

    def __init__(self, ar_model, parts: dict[str, torch.nn.Module] | None = None):
        super().__init__()
        self.parts = torch.nn.ModuleDict(parts if parts is not None else torch_parts(ar_model))
        object.__setattr__(self, "ar", ar_model)  # not a child: its modules are already registered above
        object.__setattr__(self, "text_encoder_patcher", None)  # set by wrap() when the model has one
        self.device = _first_device(self)


def _first_device(module: torch.nn.Module) -> torch.device:
    for tensor in list(module.parameters()) + list(module.buffers()):
        return tensor.device
    return torch.device("cpu")


def wrap(ar_model) -> comfy.model_patcher.ModelPatcher:
    """A ModelPatcher over ``ar_model``; weights stay where they are until ``load()`` asks for the GPU.

    A text encoder (LlamaGen's 2.4 GB T5) gets a patcher of its own, as ComfyUI gives its text encoders: the
    Text Encode node loads it, and ComfyUI may offload it while the sampler decodes."""
    parts = torch_parts(ar_model)
    text = parts.pop(TEXT_ENCODER, None)
    module = ARModelModule(ar_model, parts)
    if text is not None:
        text_patcher = comfy.model_patcher.ModelPatcher(
            ARModelModule(ar_model, {TEXT_ENCODER: text}), load_device=mm.text_encoder_device(),
            offload_device=mm.text_encoder_offload_device())
        object.__setattr__(module, "text_encoder_patcher", text_patcher)
    return comfy.model_patcher.ModelPatcher(module, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def ar_model(patcher: comfy.model_patcher.ModelPatcher):
    return patcher.model.ar


def memory_estimate(ar, num_trajectories: int, weight_bytes: int = 0, text_encoder: bool = True) -> int:
    """Bytes a generation of ``num_trajectories`` needs beyond the weights ComfyUI already counts (KV cache,
    activations), from the model's own ``memory_estimate(n)`` (which includes its weights) if it has one.
    ``text_encoder=False``: the text encoder has its own patcher, so it is not counted here."""
    estimate = getattr(ar, "memory_estimate", None)
    if not callable(estimate):
        return 0
    total = estimate(num_trajectories) if text_encoder else estimate(num_trajectories, text_encoder=False)
    return max(int(total) - int(weight_bytes), 0)


def load(patcher, num_trajectories: int = 1) -> None:
    """Make room and put the whole model on ComfyUI's torch device.

    Full load on purpose: the ARModel's layers are plain torch modules, not comfy.ops casting layers, so a
    partial (low-VRAM) load would leave some weights on the CPU and fail at the first matmul.
    """
    separate_text = patcher.model.text_encoder_patcher is not None
    extra = memory_estimate(patcher.model.ar, num_trajectories, patcher.model_size(), text_encoder=not separate_text)
    mm.load_models_gpu([patcher], memory_required=extra, force_full_load=True)


def load_for_encoding(patcher) -> None:
    """What encoding a prompt needs on the device: the text encoder's own patcher when the model has one
    (the GPT and VQ stay where ComfyUI keeps them), else the whole model (toy-shapes' caption encoder
    lives in its network; class-to-image models encode without weights)."""
    text_patcher = patcher.model.text_encoder_patcher
    if text_patcher is None:
        load(patcher)
    else:
        mm.load_models_gpu([text_patcher], force_full_load=True)  # plain torch modules: all or nothing
