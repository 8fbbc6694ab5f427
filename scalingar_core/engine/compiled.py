"""The engine step's pure math under ``torch.compile`` (opt-in, with the model's compiled decode step).

Three pure functions carry almost all of a step's elementwise work: the token signals read from the logits
(eqs. 5 and 7 (v1 5, 9): passes over the vocabulary), the state after the rolling statistics (v3 §4.1.1
to eq. 8 (v1 8–12)), and guidance with the token draw (eq. 1 (1) and the sampler). Each is compiled once with static
shapes, so a batch size gets one graph per function and no step recompiles (the step index never enters
them: where the math depends on it, the step passes tensors or one of two fixed branches). The rest of a
step (rolling pools indexed by the step, the gate's quantile, bookkeeping) stays eager. Compiled math may
round differently from eager math in the last bits; a seed still gives the same result run after run.
"""
from __future__ import annotations

import functools

import torch

from .confidence import fused_state, logit_signals
from .sampling import guided_logits, sample_tokens

# one graph per batch size and branch (first step or not): up to N = 64 trajectories must fit
RECOMPILE_LIMIT = 256


def guide_and_sample(cond: torch.Tensor, uncond: torch.Tensor | None, scale: torch.Tensor, temperature: float,
                     top_k: int, top_p: float, uniform: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Eq. 1 (1)'s guided logits with one CFG scale per row, then one token each: (guided, tokens, logprob)."""
    guided = cond if uncond is None else guided_logits(cond, uncond, scale)
    tokens, logprob = sample_tokens(guided, temperature, top_k, top_p, uniform)
    return guided, tokens, logprob


class EagerMath:
    logit_signals = staticmethod(logit_signals)
    fused_state = staticmethod(fused_state)
    guide_and_sample = staticmethod(guide_and_sample)


class CompiledMath:
    def __init__(self, backend: str = "inductor"):
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
        compile_ = functools.partial(torch.compile, fullgraph=True, dynamic=False, backend=backend)
        self.logit_signals = compile_(logit_signals)
        self.fused_state = compile_(fused_state)
        self.guide_and_sample = compile_(guide_and_sample)


EAGER = EagerMath()
_COMPILED: dict[str, CompiledMath] = {}


def engine_math(compiled: bool, backend: str = "inductor"):
    """The step's math: eager, or compiled (shared by every group: graphs are reused across runs)."""
    if not compiled:
        return EAGER
    if backend not in _COMPILED:
        _COMPILED[backend] = CompiledMath(backend)
    return _COMPILED[backend]
