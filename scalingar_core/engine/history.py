"""Per-step records kept on the model's device: the trace buffers and the rolling pools of eqs. 6 (7) and 7 (9).

Both are indexed by a trajectory's original index, so compacting the active batch never moves them and a
step writes its values with one scatter, without reading anything back to the host.
"""
from __future__ import annotations

from dataclasses import fields

import torch

from .token_signals import TOPK_CONFIDENCE_K

TRACE_SIGNALS = ("entropy_norm", "margin", "kl", "worst_block_entropy", "token_logprob", "guidance_gap",
                 *(f"topk_conf_{k}" for k in TOPK_CONFIDENCE_K))  # the last ones: token_signals.py, not in the paper
TRACE_STATE = ("s_tok", "B", "I", "D", "D_hat", "C", "C_min", "R", "cfg")


def map_fields(fn, obj, *others):
    """A dataclass of ``obj``'s type whose every field is ``fn`` of that field of ``obj`` and of ``others``
    (tensors are not copied, unlike ``dataclasses.astuple``)."""
    return type(obj)(*(fn(getattr(obj, f.name), *(getattr(o, f.name) for o in others)) for f in fields(obj)))


class RowState:
    """A dataclass of ``[n, ...]`` tensors whose rows follow the active trajectories of a group."""

    def keep(self, rows: torch.Tensor) -> None:
        """Rows ``rows`` (indices into the current ones; repeats copy) become the state's rows."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name).index_select(0, rows))


class History:
    """``[N, T]`` float buffers (NaN = not recorded) for every traced signal and state variable.

    They are slices of one ``[names, N, T]`` tensor, so a step records all its values with one scatter."""

    def __init__(self, num_trajectories: int, steps: int, device, data: torch.Tensor | None = None,
                 threshold: torch.Tensor | None = None):
        names = TRACE_SIGNALS + TRACE_STATE
        if data is None:  # else a view of a cohort's [G, names, N, T] buffers
            data = torch.full((len(names), num_trajectories, steps), float("nan"), device=device)
            threshold = torch.full((steps,), float("nan"), device=device)
        self.data, self.threshold = data, threshold
        self.buffers = {name: self.data[i] for i, name in enumerate(names)}
        self._slot = {name: i for i, name in enumerate(names)}
        self._rows: dict[tuple[str, ...], torch.Tensor] = {}  # name tuple -> [k, 1] index, made once

    def slot(self, name: str) -> int:
        """The index of ``name`` in :attr:`data`."""
        return self._slot[name]

    def record(self, t: int, ids: torch.Tensor, **values: torch.Tensor) -> None:
        """Write each named ``[n]`` value of the active rows ``ids`` at step ``t``."""
        names = tuple(values)
        rows = self._rows.get(names)
        if rows is None:
            rows = self._rows[names] = torch.tensor([self._slot[k] for k in names], device=self.data.device)[:, None]
        self.data[:, :, t][rows, ids] = torch.stack(list(values.values()))

    def copy_rows(self, dest: torch.Tensor, src: torch.Tensor, upto: int) -> None:
        """Importance-sampling resample: trajectory ``dest[j]`` inherits ``src[j]``'s past."""
        self.data[:, dest, : upto + 1] = self.data[:, src, : upto + 1]  # advanced indexing already copies

    def to_host(self) -> dict[str, list[list[float]]]:
        data = self.data.cpu()
        return {name: data[i].tolist() for name, i in self._slot.items()}


def ring_push(ring: torch.Tensor, slot: torch.Tensor, values: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
    """The rolling pools ``ring`` ``[G, L, N]`` (a trailing window of ``L`` steps of each group's N
    trajectories, A4, A5) with row ``slot`` (a 0-d tensor: step mod L) holding this step's ``values``
    ``[G, N]`` of the live trajectories, NaN elsewhere. A non-finite value counts as not recorded: one bad
    row must not poison the pool."""
    row = torch.where(live, values.nan_to_num(float("nan"), float("nan"), float("nan")), float("nan"))
    return ring.index_copy(-2, slot.view(1), row[..., None, :])


def ring_forget(ring: torch.Tensor, ids: torch.Tensor) -> None:
    """Drop every recorded value of trajectories ``ids`` (they left the batch), in place between steps."""
    ring[..., ids] = float("nan")


def _ring_view(ring: torch.Tensor, slot: torch.Tensor, mode: str) -> tuple[torch.Tensor, int]:
    """The values each trajectory is normalised against, and the dimension to reduce: ``[G, L, N]`` over
    the steps (per trajectory), this step's ``[G, 1, N]`` over the trajectories (cross-sectional), or all
    ``[G, 1, L·N]`` (pooled). Statistics keep the reduced dimension, then drop the middle one: ``[G, N]``
    or ``[G, 1]``."""
    if mode == "per_trajectory":
        return ring, -2
    if mode == "cross_sectional":
        return ring.index_select(-2, slot.view(1)), -1
    return ring.flatten(-2)[..., None, :], -1


def ring_min_max(ring: torch.Tensor, slot: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    x, dim = _ring_view(ring, slot, mode)
    low = x.nan_to_num(float("inf")).amin(dim, keepdim=True)
    high = x.nan_to_num(float("-inf")).amax(dim, keepdim=True)
    return low.squeeze(-2), high.squeeze(-2)


def ring_mean_std(ring: torch.Tensor, slot: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population standard deviation of the recorded values."""
    x, dim = _ring_view(ring, slot, mode)
    seen = ~torch.isnan(x)
    count = seen.sum(dim, keepdim=True).clamp_min(1)
    values = x.nan_to_num(0.0)
    mean = values.sum(dim, keepdim=True) / count
    var = (((values - mean) * seen) ** 2).sum(dim, keepdim=True) / count
    return mean.squeeze(-2), var.sqrt().squeeze(-2)


def recent(hist: torch.Tensor, current: torch.Tensor, t: torch.Tensor, length: int, at: int | None) -> torch.Tensor:
    """The last ``length`` values of a recorded ``[N, T]`` signal up to step ``t``, this step's ``current``
    last (it is recorded after the step). With the step's index on the host (``at``, eager) the window has
    exactly min(t + 1, length) columns; without it (the compiled step) it has ``length``, NaN before step 0."""
    if at is not None:
        width = min(at + 1, length)
        return torch.cat([hist[..., at + 1 - width: at], current[..., None]], -1)
    cols = t - (length - 1) + torch.arange(length - 1, device=hist.device)
    past = hist.index_select(-1, cols.clamp_min(0)).masked_fill(cols < 0, float("nan"))
    return torch.cat([past, current[..., None]], -1)
