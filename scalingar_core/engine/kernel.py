"""One step of v3 Algorithm 1 as one pure function over the state of G groups on the model's device.

:func:`advance` maps ``(state, conditional logits, unconditional logits, uniforms)`` to ``(state, tokens,
what leaves)``. The state is a small dataclass of ``[G, N]`` tensors indexed by group and trajectory: rows
never move, a ``live`` mask says which still decode, so the groups keep one shape from their first step to
their last and the compiled step is one graph per shape. Every group has its own θ, counters, rolling pools,
survivor guard and random streams; the groups share the plan and the step. The step index is a 0-d tensor; the eager step also gets it on the
host (``at``) where a host integer gives a shorter computation (the worst-block count, the early volatility
windows). Nothing here reads a value back to the host: the caller reads ``leave`` once per step.

(I) signals and state (eqs. 5–8 (v1 5–12)); (II) per-trajectory CFG (eq. 10 (v1 14–15)) and one token
each; (III) non-finite rows out, then θ and the gate (eq. 9 (13)). What a strategy does besides is chosen by
its parts (:mod:`.parts`) on the host.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .confidence import PROFILE_RECORDS, BlockSchedule, ProfileState, given_step, profile_step, read_logits
from .config import GateConfig, ProfileConfig, SchedulerConfig
from .gate import HARD_FAIL, KEEP, GateClock, GateState, gate_step
from .history import recent
from .sampling import guided_logits, sample_tokens
from .scheduler import next_scale

NON_FINITE = 3  # a leave code beside the gate's KEEP, BASIN and HARD_FAIL: the row's logits are not finite


@dataclass(frozen=True)
class Plan:
    """What a group's step computes: fixed for its whole run (the compiled graph's constants)."""

    observe: str | None  # "profile" (eqs. 5–8), "given" (C from traces: the gate's replay) or None
    profile: ProfileConfig
    gate: GateConfig | None
    clock: GateClock | None
    scheduler: SchedulerConfig | None
    base_scale: float
    temperature: float
    top_k: int
    top_p: float

    @property
    def records(self) -> tuple[str, ...]:
        """The names of :func:`advance`'s ``records``, in order."""
        observed = {"profile": PROFILE_RECORDS, "given": ("C",)}.get(self.observe, ())
        return (*observed, "cfg", *(("token_logprob",) if self.observe else ()))


@dataclass
class EngineState:
    """G groups' state: ``[G, N]`` rows indexed by group and trajectory (one group's: ``[N]``)."""

    live: torch.Tensor  # [G, N] bool: still decoding
    cfg: torch.Tensor  # [G, N] each trajectory's CFG scale (eq. 10 (15))
    profile: ProfileState | None  # eqs. 5–8 (v1 5–12); C, C_min and R alone when C is given
    gate: GateState | None
    theta: torch.Tensor  # [G], eq. 9 (13); NaN before the warm-up ends

    @classmethod
    def fresh(cls, plan: Plan, shape: tuple[int, int], num_blocks: int, device) -> "EngineState":
        profile = (ProfileState.empty(shape, num_blocks, plan.profile.roll_window, device)
                   if plan.observe is not None else None)
        return cls(torch.ones(shape, dtype=torch.bool, device=device),
                   torch.full(shape, float(plan.base_scale), device=device), profile,
                   GateState.fresh(shape, device) if plan.gate is not None else None,
                   torch.full(shape[:1], float("nan"), device=device))


@dataclass
class StepOut:
    tokens: torch.Tensor  # [G, N] one token per live trajectory, −1 for removed ones (as the codes record them)
    guided: torch.Tensor  # [G, N, V] (or the live rows' [m, V]) the logits the tokens were drawn from
    records: torch.Tensor  # [G, k, N] the values of ``plan.records``, NaN where the row is not live
    leave: torch.Tensor  # [G, N] long: KEEP, the gate's BASIN or HARD_FAIL, or NON_FINITE


def advance(plan: Plan, blocks: BlockSchedule | None, st: EngineState, t: torch.Tensor, cond: torch.Tensor,
            uncond: torch.Tensor | None, uniforms: torch.Tensor, c_hist: torch.Tensor, i_hist: torch.Tensor,
            given: torch.Tensor | None, at: int | None, rows: torch.Tensor | None = None
            ) -> tuple[EngineState, StepOut]:
    """One step of Algorithm 1 for G groups at step ``t``. ``cond``/``uncond`` ``[G, N, V]`` (rows of removed
    trajectories hold anything), or, with ``rows`` (the eager step once rows have left), the live rows'
    ``[m, V]`` and their places in ``[G·N]``: the passes over the vocabulary then cost the live rows only.
    ``uniforms`` ``[G, T, N]`` the groups' random streams, ``c_hist``/``i_hist`` ``[G, N, T]`` C and I recorded
    so far (the gate's and the scheduler's windows), ``given`` ``[G, N, T]`` C traces when ``plan.observe``
    is "given"."""
    live, profile = st.live, st.profile
    pick = lambda x: x if rows is None else x.flatten().index_select(0, rows)  # noqa: E731  (the live rows)
    # Stage I: signals and state
    records: list[torch.Tensor] = []
    if plan.observe == "profile":
        signals = read_logits(plan.profile, cond, uncond, pick(st.cfg), plan.temperature)
        profile, records = profile_step(plan.profile, blocks, profile, t, at,
                                        tuple(spread(x, rows, live, 0.0) for x in signals), live)
    elif plan.observe == "given":
        profile = given_step(given, profile, t)
        records = [profile.c]
    # Stage II: per-trajectory guidance, then one token each
    cfg = st.cfg
    if plan.scheduler is not None:
        window = recent(i_hist, profile.intrinsic, t, plan.scheduler.vol_window, at)
        cfg = next_scale(plan.scheduler, plan.base_scale, cfg, profile.d_hat, profile.r, window, padded=at is None)
    guided = cond if uncond is None else guided_logits(cond, uncond, pick(cfg))
    u = uniforms.index_select(-2, t.view(1))[..., 0, :]
    tokens, logprob = sample_tokens(guided, plan.temperature, plan.top_k, plan.top_p, pick(u))
    tokens, logprob = spread(tokens, rows, live, 0), spread(logprob, rows, live, float("nan"))
    records += [cfg, logprob] if plan.observe else [cfg]
    # Stage III: non-finite rows out, then θ and the gate
    finite = (torch.isfinite(profile.c) if profile is not None
              else spread(finite_rows(None, guided), rows, live, True))
    leave = torch.where(live & ~finite, NON_FINITE, KEEP)
    gate, theta = st.gate, st.theta
    if plan.gate is not None:
        alive = live & finite
        decides = (t < plan.clock.steps - 1) & (alive.sum(-1) > plan.gate.min_survivors)
        recent_c = torch.where(alive[..., None], recent(c_hist, profile.c, t, plan.gate.update_interval, at),
                               float("nan"))
        gate, theta, reason = gate_step(plan.gate, plan.clock, gate, theta, t, profile.c, profile.c_min, profile.r,
                                        alive, decides, recent_c, c_hist, at)
        leave = torch.where(reason != KEEP, reason, leave)
    stacked = torch.where(live[:, None, :], torch.stack(records, 1), float("nan"))
    return (EngineState(live, cfg, profile, gate, theta),
            StepOut(torch.where(live, tokens, -1), guided, stacked, leave))


def spread(values: torch.Tensor, rows: torch.Tensor | None, like: torch.Tensor, fill) -> torch.Tensor:
    """Per-row values of the live rows (``[m]``, at ``rows`` of ``[G·N]``) as ``[G, N]``, ``fill`` elsewhere."""
    if rows is None:
        return values
    return torch.full(like.shape, fill, dtype=values.dtype, device=values.device).flatten().index_copy(
        0, rows, values).view(like.shape)


def finite_rows(c: torch.Tensor | None, guided: torch.Tensor) -> torch.Tensor:
    """``[G, N]`` bool: the row's numbers are usable. C is NaN whenever a logit of the row (conditional or
    unconditional) is NaN or infinite; without a profile, the logsumexp of the guided logits is not finite
    when one of them is NaN or +inf or none is finite."""
    return torch.isfinite(c) if c is not None else torch.isfinite(torch.logsumexp(guided, -1))


__all__ = ["HARD_FAIL", "NON_FINITE", "EngineState", "Plan", "StepOut", "advance"]
