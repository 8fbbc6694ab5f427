"""The gate driven by given C traces ``[n, T]`` (recorded or synthetic) through the same step and loop as a
real generation: no model, no profile. ``benchmarks/gate_budget.py`` and the gate's tests use it to read
the token budget each gate reading reaches."""
from __future__ import annotations

import torch

from ..models.protocol import SamplingDefaults
from .config import RunConfig
from .gate import REASONS
from .loop import run
from .step import Group

_CODES = {name: code for code, name in REASONS.items()}


class _Session:
    def __init__(self, n: int, guided: bool, device):
        self.n, self.halves, self.device = n, 2 if guided else 1, device

    @property
    def num_trajectories(self) -> int:
        return self.n

    def prefill(self) -> torch.Tensor:
        return torch.zeros(self.halves * self.n, 2, device=self.device)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.prefill()

    def keep(self, rows: torch.Tensor) -> None:
        self.n = rows.numel()


class _TraceModel:
    """A model of two tokens and a 1×T grid whose logits never matter."""

    name, vocab_size, defaults = "replay", 2, SamplingDefaults()

    def __init__(self, steps: int, device):
        self.grid, self.device = (1, steps), device

    def start(self, condition, n: int, guidance: bool = True) -> _Session:
        return _Session(n, guidance, self.device)


def replay(gate: dict | object, traces: torch.Tensor) -> dict[int, tuple[int, int]]:
    """``{trajectory: (step, reason code)}`` for every removal the gate ``gate`` (a GateConfig) makes on C
    ``traces`` ``[n, T]``; a removed row leaves the batch as in a generation."""
    n, steps = traces.shape
    config = RunConfig(strategy="scalingar", gate=gate, scheduler={"enabled": False},
                       sampling={"num_trajectories": n, "seed": 0})
    model = _TraceModel(steps, traces.device)
    group = Group(model, None, config, given=traces)
    ((_, _),) = run(model, [group])
    return {i: (t, _CODES[why]) for i, (t, why) in group.removed.items()}
