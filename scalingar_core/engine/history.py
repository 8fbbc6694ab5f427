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


class RowState:
    """A dataclass of ``[n, ...]`` tensors whose rows follow the active trajectories of a group."""

    def keep(self, rows: torch.Tensor) -> None:
        """Rows ``rows`` (indices into the current ones; repeats copy) become the state's rows."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name).index_select(0, rows))


class History:
    """``[N, T]`` float buffers (NaN = not recorded) for every traced signal and state variable.

    They are slices of one ``[names, N, T]`` tensor, so a step records all its values with one scatter."""

    def __init__(self, num_trajectories: int, steps: int, device):
        names = TRACE_SIGNALS + TRACE_STATE
        self.data = torch.full((len(names), num_trajectories, steps), float("nan"), device=device)
        self.buffers = {name: self.data[i] for i, name in enumerate(names)}
        self._slot = {name: i for i, name in enumerate(names)}
        self._rows: dict[tuple[str, ...], torch.Tensor] = {}  # name tuple -> [k, 1] index, made once
        self.threshold = torch.full((steps,), float("nan"), device=device)

    def record(self, t: int, ids: torch.Tensor, **values: torch.Tensor) -> None:
        """Write each named ``[n]`` value of the active rows ``ids`` at step ``t``."""
        names = tuple(values)
        rows = self._rows.get(names)
        if rows is None:
            rows = self._rows[names] = torch.tensor([self._slot[k] for k in names], device=self.data.device)[:, None]
        self.data[:, :, t][rows, ids] = torch.stack(list(values.values()))

    def window(self, name: str, ids: torch.Tensor, t: int, length: int) -> torch.Tensor:
        """The last ``length`` recorded values up to step ``t`` for the active rows: ``[n, ≤length]``."""
        return self.buffers[name][ids, max(0, t + 1 - length): t + 1]

    def copy_rows(self, dest: torch.Tensor, src: torch.Tensor, upto: int) -> None:
        """Importance-sampling resample: trajectory ``dest[j]`` inherits ``src[j]``'s past."""
        self.data[:, dest, : upto + 1] = self.data[:, src, : upto + 1]  # advanced indexing already copies

    def to_host(self) -> dict[str, list[list[float]]]:
        data = self.data.cpu()
        return {name: data[i].tolist() for name, i in self._slot.items()}


class RollingPool:
    """Trailing window of ``length`` steps × ``N`` trajectories for the rolling normalisations (A4, A5)."""

    def __init__(self, length: int, num_trajectories: int, device):
        self.length = length
        self.ring = torch.full((length, num_trajectories), float("nan"), device=device)

    def push(self, t: int, ids: torch.Tensor, values: torch.Tensor | None) -> None:
        row = self.ring[t % self.length]
        row.fill_(float("nan"))
        if values is not None:  # a non-finite value counts as not recorded: one bad row must not poison the pool
            row[ids] = values.nan_to_num(float("nan"), float("nan"), float("nan"))

    def copy_rows(self, dest: torch.Tensor, src: torch.Tensor) -> None:
        """Importance-sampling resample: trajectory ``dest[j]`` inherits ``src[j]``'s recorded window."""
        self.ring[:, dest] = self.ring[:, src]

    def forget(self, ids: torch.Tensor) -> None:
        """Drop every recorded value of trajectories ``ids`` (they left the batch)."""
        self.ring[:, ids] = float("nan")

    def _view(self, t: int, ids: torch.Tensor, mode: str) -> torch.Tensor:
        """Values each active row is normalised against, as ``[L, n]`` (per trajectory) or ``[L·N]``."""
        if mode == "per_trajectory":
            return self.ring[:, ids]
        if mode == "cross_sectional":
            return self.ring[t % self.length, ids]
        return self.ring.reshape(-1)  # pooled

    def min_max(self, t: int, ids: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._view(t, ids, mode)
        low = x.nan_to_num(float("inf")).amin(0)
        high = x.nan_to_num(float("-inf")).amax(0)
        return low, high

    def mean_std(self, t: int, ids: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and population standard deviation of the recorded values."""
        x = self._view(t, ids, mode)
        seen = ~torch.isnan(x)
        count = seen.sum(0).clamp_min(1)
        values = x.nan_to_num(0.0)
        mean = values.sum(0) / count
        var = (((values - mean) * seen) ** 2).sum(0) / count
        return mean, var.sqrt()
