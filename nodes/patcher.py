"""Hand an ARModel to ComfyUI's model management so it can load, evict and offload it like any model."""
from __future__ import annotations

import torch

import comfy.model_management as mm
import comfy.model_patcher


class ARModelModule(torch.nn.Module):
    """nn.Module face of an ARModel: ModelPatcher moves weights with ``.to()`` and tracks ``.device``.

    The ARModel's torch modules become children, so moving this module moves them in place and the
    ARModel keeps working with the same objects (its ``device`` must follow its weights, as the toy and
    LlamaGen models' do). Which modules: the ARModel itself if it is an nn.Module, else its
    ``torch_modules()``, else its attributes that are nn.Modules.
    """

    def __init__(self, ar_model):
        super().__init__()
        if isinstance(ar_model, torch.nn.Module):
            parts = {"model": ar_model}
        elif callable(getattr(ar_model, "torch_modules", None)):
            parts = dict(ar_model.torch_modules())  # the model names every module a host may move
        else:
            parts = {k.replace(".", "_"): v for k, v in vars(ar_model).items() if isinstance(v, torch.nn.Module)}
        if not parts:
            raise TypeError(f"{type(ar_model).__name__} holds no torch modules; ComfyUI cannot manage its memory")
        self.parts = torch.nn.ModuleDict(parts)
        object.__setattr__(self, "ar", ar_model)  # not a child: its modules are already registered above
        self.device = _first_device(self)


def _first_device(module: torch.nn.Module) -> torch.device:
    for tensor in list(module.parameters()) + list(module.buffers()):
        return tensor.device
    return torch.device("cpu")


def wrap(ar_model) -> comfy.model_patcher.ModelPatcher:
    """A ModelPatcher over ``ar_model``; weights stay where they are until ``load()`` asks for the GPU."""
    module = ARModelModule(ar_model)
    return comfy.model_patcher.ModelPatcher(module, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def ar_model(patcher: comfy.model_patcher.ModelPatcher):
    return patcher.model.ar


def memory_estimate(ar, num_trajectories: int, weight_bytes: int = 0) -> int:
    """Bytes a generation of ``num_trajectories`` needs beyond the weights ComfyUI already counts (KV cache,
    activations), from the model's own ``memory_estimate(n)`` (which includes its weights) if it has one."""
    estimate = getattr(ar, "memory_estimate", None)
    if not callable(estimate):
        return 0
    return max(int(estimate(num_trajectories)) - int(weight_bytes), 0)


def load(patcher, num_trajectories: int = 1) -> None:
    """Make room and put the whole model on ComfyUI's torch device.

    Full load on purpose: the ARModel's layers are plain torch modules, not comfy.ops casting layers, so a
    partial (low-VRAM) load would leave some weights on the CPU and fail at the first matmul.
    """
    extra = memory_estimate(patcher.model.ar, num_trajectories, patcher.model_size())
    mm.load_models_gpu([patcher], memory_required=extra, force_full_load=True)
