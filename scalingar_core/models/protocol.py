"""The model protocol every NTP image model implements to be sampled by the ScalingAR engine.

The engine never touches a model's internals. It needs four things:

* ``ARModel.encode(prompt)`` turns user input into a model-specific condition object
  (T5 features for LlamaGen text-to-image, a class id for class-to-image, caption ids for the toy model, the
  chat-formatted prompt tokens for Janus-Pro).
* ``ARModel.start(condition, n)`` builds a :class:`DecodeSession` for ``n`` trajectories. The session holds a
  doubled batch: rows ``0..n-1`` are conditional, rows ``n..2n-1`` unconditional. That order is the engine's
  contract; each model fills the second half with its own unconditional input (LlamaGen's null caption or
  class, Janus-Pro's prompt with every token but BOS and ``<begin_of_image>`` padded).
  ``start(condition, n, guidance=False)`` holds only the conditional rows (sampling without CFG).
* ``DecodeSession.prefill()`` / ``step(tokens)`` return fp32 logits ``[2n, V]`` (``[n, V]`` without
  guidance) for the next image token;
  ``keep(rows)`` compacts (or, with repeated rows, copies) trajectories in both halves and in the KV cache.
* ``ARModel.decode(codes)`` turns ``[n, h*w]`` raster-order codes into images ``[n, 3, H, W]`` in ``[0, 1]``;
  the pixels per token are the model's own (16 for LlamaGen's and Janus-Pro's VQ-16), the engine never
  assumes them.

Optional: ``ARModel.start_batch(conditions, counts)`` is one guided session for several runs at once,
``counts[i]`` rows of ``conditions[i]`` in order in each half; ``engine.loop.generate_batch`` (the bench) uses it
to decode many runs with one forward per step, and runs them one at a time where a model lacks it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch


@dataclass(frozen=True)
class SamplingDefaults:
    """A base model's own sampling defaults (what 'plain' sampling of that model means)."""

    cfg_scale: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    temperature: float = 1.0


@runtime_checkable
class DecodeSession(Protocol):
    """Decoding state of ``n`` trajectories (``2n`` rows with CFG) with a static KV cache."""

    @property
    def num_trajectories(self) -> int: ...

    def prefill(self) -> torch.Tensor:
        """Run the condition prefix; return fp32 logits ``[2n, V]`` for image token 0."""

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append ``tokens`` (``[n]`` long, one per trajectory) to both the cond and uncond row of each
        trajectory; return fp32 logits ``[2n, V]`` for the next token."""

    def keep(self, rows: torch.Tensor) -> None:
        """Keep trajectories ``rows`` (``[m]`` long indices into the current ``n``; repeats copy a row).

        Both halves and every KV-cache row follow, so later steps cost ``2m`` rows, not ``2n``."""


@runtime_checkable
class ARModel(Protocol):
    """An NTP image model the sampler can drive."""

    name: str
    vocab_size: int
    grid: tuple[int, int]  # (h, w) of the token grid, raster order
    defaults: SamplingDefaults

    @property
    def device(self) -> torch.device: ...

    def encode(self, prompt: str) -> Any:
        """Condition object for ``prompt`` (opaque to the engine)."""

    def start(self, condition: Any, n: int, guidance: bool = True) -> DecodeSession:
        """A fresh session for ``n`` trajectories of ``condition`` (``guidance=False``: no unconditional rows)."""

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``[n, h*w]`` long codes → ``[n, 3, H, W]`` float images in ``[0, 1]``."""


@dataclass
class ModelInfo:
    """What a registry entry says about a model before it is loaded (for UIs and errors)."""

    name: str
    description: str
    grid: tuple[int, int]
    vocab_size: int
    defaults: SamplingDefaults
    extra: dict = field(default_factory=dict)


def set_compile(model: ARModel, enabled: bool) -> None:
    """Turn the model's compiled decode step on or off (models that have one carry ``compile_decode``)."""
    if not hasattr(model, "compile_decode"):
        if enabled:
            raise ValueError(f"model {getattr(model, 'name', type(model).__name__)} has no compiled decode step: "
                             "run it without compile")
        return
    model.compile_decode = bool(enabled)


def step_tokens(tokens, n: int, device) -> torch.Tensor:
    """``DecodeSession.step``'s argument as ``[n]`` long on ``device`` (one token per trajectory), or the error."""
    tokens = torch.as_tensor(tokens, device=device).long().reshape(-1)
    if tokens.numel() != n:
        raise ValueError(f"step() needs one token per trajectory ({n}), got {tokens.numel()}")
    return tokens


def keep_rows(rows, n: int, device) -> torch.Tensor:
    """``DecodeSession.keep``'s argument as ``[m]`` long on ``device`` (indices into the current ``n``)."""
    rows = torch.as_tensor(rows, device=device).long().reshape(-1)
    if rows.numel() == 0:
        raise ValueError("keep() needs at least one row")
    if int(rows.min()) < 0 or int(rows.max()) >= n:
        raise ValueError(f"keep() rows must be in [0, {n}), got {rows.tolist()}")
    return rows


def raster_codes(codes, size: int, device, grid: tuple[int, int] | None = None
                 ) -> tuple[torch.Tensor, tuple[int, int]]:
    """``ARModel.decode``'s argument as ``[B, h*w]`` long on ``device`` with its ``(h, w)`` grid (default: a
    square), every code checked to lie in ``[0, size)``."""
    codes = torch.as_tensor(codes, device=device).long()
    if codes.dim() != 2:
        raise ValueError(f"codes must be [B, h*w], got {tuple(codes.shape)}")
    if grid is None:
        side = int(round(codes.shape[1] ** 0.5))
        grid = (side, side)
    h, w = grid
    if h * w != codes.shape[1]:
        raise ValueError(f"{codes.shape[1]} codes do not fill a {h}x{w} grid")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= size):
        raise ValueError(f"codes must be in [0, {size}), got range [{int(codes.min())}, {int(codes.max())}]")
    return codes, (h, w)
