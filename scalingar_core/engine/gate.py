"""Policy level: the adaptive termination gate (eq. 9 (13) of docs/method.md, with warm-up, recovery,
protection horizon, hard fail).

A trajectory is removed when it sits in a low-confidence basin — flagged below θ and not rebounding for a
whole recovery window — or at once when C falls under the hard-fail floor. How "probation" and "rebound"
are read is a setting (``GateConfig.probation`` and ``recovery_reference``, A12); ``config.py`` gives the
reasoning for the defaults and ``benchmarks/gate_budget.py`` the token budget each reading reaches. The
decision for step ``t`` is a device tensor; the sampler reads it back once per step (it must know which rows
to drop from the batch to save their compute).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .confidence import rebound
from .config import GateConfig
from .history import History, RowState, map_fields, recent

KEEP, BASIN, HARD_FAIL = 0, 1, 2
REASONS = {BASIN: "basin", HARD_FAIL: "hard_fail"}
_NEVER = -(1 << 40)  # "no recovery yet": far enough back that t − it always exceeds the window


def steps_from_fraction(fraction: float, total: int) -> int:
    """W_0 and H_prot are fractions of T (12.5 % of 1024 = 128 steps)."""
    return int(round(fraction * total))


def quantile(values: torch.Tensor, p: float) -> torch.Tensor:
    """Eq. 9 (13)'s Quantile_p over the non-NaN entries of each group (``values`` ``[G, ...]`` → ``[G]``;
    linear interpolation, as numpy's default)."""
    return torch.nanquantile(values.flatten(1).float(), p, dim=1)


def threshold_update(theta: torch.Tensor, q: torch.Tensor, rate: float) -> torch.Tensor:
    """Eq. 9 (13): θ ← (1 − λ_θ)·θ + λ_θ·Quantile_p({C}_recent)."""
    return (1.0 - rate) * theta + rate * q


def recovered(c: torch.Tensor, reference: torch.Tensor, r: torch.Tensor, delta_gap: float,
              delta_rec: float) -> torch.Tensor:
    """Recovery test (A12): an absolute rebound C − reference ≥ δ_gap or a relative one R ≥ δ_rec, both
    measured from the same reference (the running minimum, C at the flag, or the minimum since the flag)."""
    return ((c - reference) >= delta_gap) | (r >= delta_rec)


def guard_survivors(kill: torch.Tensor, c: torch.Tensor, min_survivors: int,
                    live: torch.Tensor | None = None) -> torch.Tensor:
    """Never remove the last ``min_survivors`` live rows (A15): rescue the highest-C candidates if needed."""
    rank_key = c.float() + (~kill).float() * 1e6  # survivors first, then the most confident of the doomed
    if live is not None:
        rank_key = torch.where(live, rank_key, float("-inf"))  # rows already gone rescue nobody
    order = torch.argsort(rank_key, descending=True, stable=True)
    rescued = torch.zeros_like(kill).scatter(-1, order[..., :min_survivors], True)
    return kill & ~rescued


@dataclass
class GateState(RowState):
    """Per-trajectory probation bookkeeping."""

    flag_start: torch.Tensor  # [n] long, step probation began, −1 when not flagged
    last_recovery: torch.Tensor  # [n] long, step of the last recovery, _NEVER when none
    flag_c: torch.Tensor  # [n] C when probation began (recovery_reference='flag')
    flag_min: torch.Tensor  # [n] lowest C since probation began (recovery_reference='min_since_flag')

    @classmethod
    def fresh(cls, shape: int | tuple[int, ...], device) -> "GateState":
        shape = (shape,) if isinstance(shape, int) else shape
        long = dict(dtype=torch.long, device=device)
        return cls(torch.full(shape, -1, **long), torch.full(shape, _NEVER, **long), torch.zeros(shape, device=device),
                   torch.zeros(shape, device=device))

    def reset(self, ids: torch.Tensor) -> None:
        """End the probation of trajectories ``ids`` (in place, between steps)."""
        self.flag_start[ids] = -1
        self.last_recovery[ids] = _NEVER


@dataclass(frozen=True)
class GateClock:
    """When the gate acts, in steps: θ from ``warmup`` (W_0) on, removals from ``protect`` (H_prot) on."""

    warmup: int
    protect: int
    steps: int

    @classmethod
    def of(cls, cfg: GateConfig, steps: int) -> "GateClock":
        return cls(steps_from_fraction(cfg.warmup_fraction, steps), steps_from_fraction(cfg.protection_fraction,
                                                                                        steps), steps)


def next_threshold(cfg: GateConfig, clock: GateClock, theta: torch.Tensor, t: torch.Tensor, c: torch.Tensor,
                   recent_c: torch.Tensor, c_hist: torch.Tensor, at: int | None = None) -> torch.Tensor:
    """Eq. 9 (13) with its schedule, θ ``[G]``: NaN during warm-up, initialised at t = W_0 (the p-quantile of
    every C recorded before W_0 in ``c_hist`` ``[G, N, T]``, or of this step's ``c``), then the EMA every K
    steps over ``recent_c`` (the last K steps of the live rows). NaN entries count as not recorded. With the
    step on the host (``at``) only the branch it takes is computed; without, the update is selected on the
    device and the initial quantile (a sort of N·T values) runs under ``torch.cond`` at W_0 alone."""
    def initial() -> torch.Tensor:
        if cfg.theta_init == "warmup_pool" and clock.warmup > 0:
            before = torch.arange(c_hist.shape[-1], device=c_hist.device) < t
            return quantile(torch.where(before, c_hist, float("nan")), cfg.quantile)
        return quantile(c, cfg.quantile)

    def updated() -> torch.Tensor:
        return threshold_update(theta, quantile(recent_c, cfg.quantile), cfg.lambda_theta)

    if at is not None:
        if at == clock.warmup:
            return initial()
        due = at > clock.warmup and (at - clock.warmup) % cfg.update_interval == 0
        return updated() if due else theta
    since = t - clock.warmup
    kept = torch.where((since > 0) & (since % cfg.update_interval == 0), updated(), theta)
    return torch.cond(since == 0, initial, lambda: kept.clone(), ())


def probation(cfg: GateConfig, st: GateState, t: torch.Tensor, c: torch.Tensor, c_min: torch.Tensor,
              r: torch.Tensor, below: torch.Tensor) -> tuple[GateState, torch.Tensor]:
    """Every row's probation advanced by one step, and True where the row is in a basin (A12).

    ``continuous``: probation lasts while C < θ and ends the moment C ≥ θ; a rebound restarts its count.
    ``window``: probation begins at the first step below θ and ends only with a rebound; the row is
    removed when C < θ after Δ_rec steps of probation without one (v1: "no recovery within the last
    Δ_rec steps"; v3: "terminated if it fails to demonstrate a significant rebound within this window").
    ``end_of_window``: probation begins at the first step below θ and lasts Δ_rec steps; then v3
    Algorithm 1's test decides once — removed if C < θ and it has not rebounded (R < δ_rec) — and
    otherwise the flag clears. Rebounds are measured from ``recovery_reference``."""
    newly = below & (st.flag_start < 0)
    t_now = torch.zeros_like(st.flag_start) + t
    cleared = torch.full_like(st.flag_start, -1)
    flag_start = torch.where(newly, t_now, st.flag_start)
    if cfg.probation == "continuous":
        flag_start = torch.where(below, flag_start, cleared)
    on = flag_start >= 0
    flag_c = torch.where(newly, c, st.flag_c)
    flag_min = torch.where(newly, c, torch.minimum(st.flag_min, c))
    if cfg.recovery_reference == "running_min":
        base = c_min  # R of eq. 8 (12) as given
    else:
        base = flag_c if cfg.recovery_reference == "flag" else flag_min
        r = rebound(c, base, 1e-6)  # eq. 8 (12)'s form, from the probation's own reference
    rec = on & recovered(c, base, r, cfg.delta_gap, cfg.delta_rec)
    last_recovery = st.last_recovery
    if cfg.probation == "end_of_window":
        due = on & (t - flag_start >= cfg.recovery_window)
        flag_start = torch.where(due, cleared, flag_start)  # decided: removed, or the flag clears
        basin = due & below & ~rec
    else:
        last_recovery = torch.where(rec, t_now, last_recovery)
        if cfg.probation == "window":  # a rebound clears the flag; a later dip starts a new window
            flag_start = torch.where(rec, cleared, flag_start)
            basin = below & (flag_start >= 0) & (t - flag_start >= cfg.recovery_window)
        else:
            basin = below & (t - torch.maximum(flag_start, last_recovery) >= cfg.recovery_window)
    return GateState(flag_start, last_recovery, flag_c, flag_min), basin


def gate_step(cfg: GateConfig, clock: GateClock, st: GateState, theta: torch.Tensor, t: torch.Tensor,
              c: torch.Tensor, c_min: torch.Tensor, r: torch.Tensor, live: torch.Tensor, decides: torch.Tensor,
              recent_c: torch.Tensor, c_hist: torch.Tensor, at: int | None = None
              ) -> tuple[GateState, torch.Tensor, torch.Tensor]:
    """One step of the gate over G groups' rows ``[G, N]``: the new probation state, θ ``[G]``, and each
    row's reason (KEEP, BASIN or HARD_FAIL). ``live``: rows still decoding; ``decides`` ``[G]``: whether the
    gate may remove rows of the group at this step at all (not the last step, more than ``min_survivors``
    live). Before H_prot, and when it does not decide, θ still follows its schedule and probation stands
    still. ``at``: as in :func:`next_threshold`."""
    theta = next_threshold(cfg, clock, theta, t, torch.where(live, c, float("nan")), recent_c, c_hist, at)
    if at is not None and at < clock.protect:
        return st, theta, torch.zeros_like(st.flag_start)
    # relative floor uses θ, which is NaN before warm-up ends: comparisons with NaN are False
    floor = cfg.hard_fail * theta[..., None] if cfg.hard_fail_mode == "relative" else cfg.hard_fail
    hard = c < floor
    acts = decides[..., None] & (t >= clock.protect)
    reason = torch.where(hard, HARD_FAIL, KEEP)
    if at is None or at >= clock.warmup:  # probation runs once θ exists
        advanced, basin = probation(cfg, st, t, c, c_min, r, (c < theta[..., None]) & ~hard)
        moves = acts & (t >= clock.warmup)
        st = map_fields(lambda new, old: torch.where(moves, new, old), advanced, st)
        reason = torch.where(moves & basin & ~hard, BASIN, reason)
    kill = guard_survivors(acts & live & (reason != KEEP), c, cfg.min_survivors, live)
    return st, theta, torch.where(kill, reason, KEEP)


class TerminationGate:
    """:func:`gate_step` over the active trajectories of one sequence of steps, compacted as rows leave (for
    driving the gate with synthetic C sequences)."""

    def __init__(self, cfg: GateConfig, total_steps: int, num_trajectories: int, device, history: History):
        self.cfg, self.history = cfg, history
        self.clock = GateClock.of(cfg, total_steps)
        self.warmup, self.protect = self.clock.warmup, self.clock.protect
        self.theta = torch.tensor(float("nan"), device=device)
        self.state = GateState.fresh(num_trajectories, device)

    def reset(self, rows: list[int]) -> None:
        """End the probation of ``rows`` (indices into the active batch)."""
        if rows:
            self.state.reset(torch.tensor(rows, device=self.state.flag_start.device))

    def decide(self, t: int, ids: torch.Tensor, c: torch.Tensor, c_min: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """Reasons ``[n]`` (KEEP, BASIN or HARD_FAIL) for step ``t``; updates θ and probation in place."""
        step = torch.tensor(t, device=c.device)
        live = torch.ones_like(c, dtype=torch.bool)
        c_hist = self.history.buffers["C"]
        recent_c = recent(c_hist.index_select(0, ids), c, step, self.cfg.update_interval, t)
        one = lambda x: x[None]  # noqa: E731  (a group of one)
        state = map_fields(one, self.state)
        state, theta, reason = gate_step(self.cfg, self.clock, state, one(self.theta), step, one(c), one(c_min),
                                         one(r), one(live), torch.tensor([True]), one(recent_c), one(c_hist), t)
        self.state, self.theta = map_fields(lambda x: x[0], state), theta[0]
        if t >= self.warmup:
            self.history.threshold[t] = self.theta
        return reason[0]


def tokens_spent(removed: dict[int, tuple[int, int]], n: int, steps: int) -> int:
    """Visual tokens of one image (A18): every trajectory counts the steps it was decoded, removals included."""
    return sum(removed[i][0] + 1 if i in removed else steps for i in range(n))
