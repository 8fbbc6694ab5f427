"""The engine step under ``torch.compile`` (opt-in, with the model's compiled decode step).

:func:`~.kernel.advance` is compiled whole, with static shapes: a group's state keeps its shape from the first
step to the last (removed rows are masked, not dropped) and the step index is a tensor, so a group size gets
one graph and no step recompiles. The eager step passes the step index on the host as well, where an integer
gives a shorter computation; the compiled one computes the same quantities at a fixed width, and may round
differently in the last bits. A seed still gives the same result run after run.
"""
from __future__ import annotations

import torch

from .kernel import advance

# graphs are per group size and plan: up to N = 64 trajectories, several settings in one process
RECOMPILE_LIMIT = 256


class EagerMath:
    compact = True  # once rows have left, the passes over the vocabulary take the live rows only

    @staticmethod
    def advance(*args, at: int, rows=None):
        return advance(*args, at, rows)


class CompiledMath:
    compact = False  # one shape from the first step to the last: removed rows stay, masked

    def __init__(self, backend: str = "inductor", cpu: bool = False):
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
        # on a CPU the step's small kernels cost less than the Python that launches them: inductor's C++
        # wrapper launches them (about 100 against 150 us a toy step; benchmarks/toy_step.py)
        options = {"cpp_wrapper": True} if cpu and backend == "inductor" else None
        self._advance = torch.compile(advance, fullgraph=True, dynamic=False, backend=backend, options=options)

    def advance(self, *args, at: int, rows=None):
        return self._advance(*args, None)


EAGER = EagerMath()
_COMPILED: dict[tuple[str, bool], CompiledMath] = {}


def engine_math(compiled: bool, backend: str = "inductor", device: str = "cpu"):
    """The step: eager, or compiled for ``device`` (shared by every cohort: graphs are reused across runs)."""
    if not compiled:
        return EAGER
    key = (backend, torch.device(device).type == "cpu")
    if key not in _COMPILED:
        _COMPILED[key] = CompiledMath(*key)
    return _COMPILED[key]
