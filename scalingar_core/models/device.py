"""Devices and dtypes: the torch device and dtype a model loads onto, the device a user named (checked before
work starts), and whether N trajectories of a model can fit in that device's memory at all."""
from __future__ import annotations

import os

import torch

from ..errors import echo

DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
          "half": torch.float16, "fp32": torch.float32, "float32": torch.float32, "float": torch.float32}


def resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    """``None`` -> bf16 on accelerators, fp32 on CPU; strings like 'bf16'/'fp16'/'fp32' accepted."""
    if dtype is None:
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.bfloat16, torch.float16, torch.float32):
            raise ValueError(f"dtype must be bf16, fp16 or fp32, got {dtype}")
        return dtype
    key = str(dtype).lower().removeprefix("torch.")
    if key not in DTYPES:
        raise ValueError(f"dtype must be one of bf16, fp16, fp32, got {dtype!r}")
    return DTYPES[key]


def resolve_device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def check_device(name: str | None, option: str = "--device") -> torch.device | None:
    """The device ``name`` if this torch build and machine have it, else a ``ValueError`` with the fix."""
    if name is None:
        return None
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{option} {echo(name)} is not a torch device: use cpu, cuda, cuda:1 or mps") from None
    kind = device.type
    if kind == "cpu":
        return device
    backend = getattr(torch, kind, None) if kind != "mps" else getattr(torch.backends, "mps", None)
    available = getattr(backend, "is_available", None)
    if available is None or not available():
        build = "a CPU-only build" if kind == "cuda" and torch.version.cuda is None else "this build"
        raise ValueError(f"{option} {name}: torch {torch.__version__} ({build}) sees no {kind} device on this "
                         f"machine. Use {option} cpu, or install a torch build for your accelerator")
    count = getattr(backend, "device_count", lambda: 1)()
    if device.index is not None and device.index >= count:
        raise ValueError(f"{option} {name}: this machine has {count} {kind} device(s), numbered 0..{count - 1}")
    return device


def device_memory(device: torch.device) -> int | None:
    """Total bytes of ``device`` (physical RAM for the CPU), or None when unknown."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.get_device_properties(device).total_memory)
        if device.type == "cpu":
            return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError, RuntimeError):
        pass
    return None


def check_trajectories(model, n: int) -> None:
    """Refuse an ``n`` whose memory estimate (the model's own ``memory_estimate(n)``, when it has one)
    exceeds the device's total memory: such a run can only end in an out-of-memory failure."""
    estimate = getattr(model, "memory_estimate", None)
    if not callable(estimate):
        return
    device = torch.device(model.device)
    total = device_memory(device)
    need = int(estimate(n))
    if total is None or need <= total:
        return
    low, high = 0, n  # largest k with estimate(k) <= total (the estimate grows with k)
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if int(estimate(mid)) <= total else (low, mid - 1)
    fix = f"use at most {low} trajectories" if low else "no N fits: use a smaller dtype (bf16) or another device"
    raise ValueError(f"num_trajectories={n} needs about {need / 2**30:.1f} GiB on {device} (the estimate of "
                     f"{getattr(model, 'name', 'this model')}: weights, KV cache for {2 * n} rows, activations), "
                     f"more than the {total / 2**30:.1f} GiB the device has: {fix}")
