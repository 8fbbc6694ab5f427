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
from .history import History, RowState

KEEP, BASIN, HARD_FAIL = 0, 1, 2
REASONS = {BASIN: "basin", HARD_FAIL: "hard_fail"}
_NEVER = -(1 << 40)  # "no recovery yet": far enough back that t − it always exceeds the window


def steps_from_fraction(fraction: float, total: int) -> int:
    """W_0 and H_prot are fractions of T (12.5 % of 1024 = 128 steps)."""
    return int(round(fraction * total))


def quantile(values: torch.Tensor, p: float) -> torch.Tensor:
    """Eq. 9 (13)'s Quantile_p over the finite entries (linear interpolation, as numpy's default)."""
    values = values.reshape(-1)
    return torch.nanquantile(values.float(), p)


def threshold_update(theta: torch.Tensor, q: torch.Tensor, rate: float) -> torch.Tensor:
    """Eq. 9 (13): θ ← (1 − λ_θ)·θ + λ_θ·Quantile_p({C}_recent)."""
    return (1.0 - rate) * theta + rate * q


def recovered(c: torch.Tensor, reference: torch.Tensor, r: torch.Tensor, delta_gap: float,
              delta_rec: float) -> torch.Tensor:
    """Recovery test (A12): an absolute rebound C − reference ≥ δ_gap or a relative one R ≥ δ_rec, both
    measured from the same reference (the running minimum, C at the flag, or the minimum since the flag)."""
    return ((c - reference) >= delta_gap) | (r >= delta_rec)


def guard_survivors(kill: torch.Tensor, c: torch.Tensor, min_survivors: int) -> torch.Tensor:
    """Never remove the last ``min_survivors`` rows (A15): rescue the highest-C candidates if needed."""
    rank_key = c.float() + (~kill).float() * 1e6  # survivors first, then the most confident of the doomed
    order = torch.argsort(rank_key, descending=True, stable=True)
    rescued = torch.zeros_like(kill)
    rescued[order[:min_survivors]] = True
    return kill & ~rescued


@dataclass
class GateState(RowState):
    """Per-trajectory probation bookkeeping (rows follow the active batch)."""

    flag_start: torch.Tensor  # [n] long, step probation began, −1 when not flagged
    last_recovery: torch.Tensor  # [n] long, step of the last recovery, _NEVER when none
    flag_c: torch.Tensor  # [n] C when probation began (recovery_reference='flag')
    flag_min: torch.Tensor  # [n] lowest C since probation began (recovery_reference='min_since_flag')



class TerminationGate:
    """Decides, after each step, which active trajectories leave the batch and why."""

    def __init__(self, cfg: GateConfig, total_steps: int, num_trajectories: int, device, history: History):
        self.cfg = cfg
        self.history = history
        self.warmup = steps_from_fraction(cfg.warmup_fraction, total_steps)
        self.protect = steps_from_fraction(cfg.protection_fraction, total_steps)
        self.theta = torch.tensor(float("nan"), device=device)
        self.ready = False
        long = dict(dtype=torch.long, device=device)
        self.state = GateState(torch.full((num_trajectories,), -1, **long),
                               torch.full((num_trajectories,), _NEVER, **long),
                               torch.zeros(num_trajectories, device=device),
                               torch.zeros(num_trajectories, device=device))

    def reset(self, rows: list[int]) -> None:
        """End the probation of ``rows`` (indices into the active batch)."""
        if rows:
            index = torch.tensor(rows, device=self.state.flag_start.device)
            self.state.flag_start[index] = -1
            self.state.last_recovery[index] = _NEVER

    def update_threshold(self, t: int, ids: torch.Tensor, c: torch.Tensor) -> None:
        """Eq. 9 (13) with its schedule: nothing during warm-up, initialise at t = W_0, EMA every K steps."""
        cfg = self.cfg
        if t < self.warmup:
            return
        if not self.ready:
            warm = self.history.buffers["C"][:, :t]  # every C of the warm-up steps (NaN = not alive)
            pool = warm if cfg.theta_init == "warmup_pool" and t > 0 else c
            self.theta = quantile(pool, cfg.quantile)
            self.ready = True
        elif (t - self.warmup) % cfg.update_interval == 0:
            recent = self.history.window("C", ids, t, cfg.update_interval)
            self.theta = threshold_update(self.theta, quantile(recent, cfg.quantile), cfg.lambda_theta)
        self.history.threshold[t] = self.theta

    def decide(self, t: int, ids: torch.Tensor, c: torch.Tensor, c_min: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """Reasons ``[n]`` (KEEP, BASIN or HARD_FAIL) for step ``t``; updates probation state in place."""
        cfg, st = self.cfg, self.state
        self.update_threshold(t, ids, c)
        reason = torch.zeros_like(st.flag_start)
        if t < self.protect:
            return reason
        # relative floor uses θ, which is NaN before warm-up ends: comparisons with NaN are False
        floor = cfg.hard_fail * self.theta if cfg.hard_fail_mode == "relative" else cfg.hard_fail
        hard = c < floor
        if self.ready:
            below = (c < self.theta) & ~hard
            basin = self._probation(t, c, c_min, r, below)
            reason = torch.where(basin, torch.full_like(reason, BASIN), reason)
        reason = torch.where(hard, torch.full_like(reason, HARD_FAIL), reason)
        kill = guard_survivors(reason != KEEP, c, cfg.min_survivors)
        return torch.where(kill, reason, torch.zeros_like(reason))

    def _probation(self, t: int, c: torch.Tensor, c_min: torch.Tensor, r: torch.Tensor,
                   below: torch.Tensor) -> torch.Tensor:
        """Advance every row's probation by one step; True where the row is in a basin (A12).

        ``continuous``: probation lasts while C < θ and ends the moment C ≥ θ; a rebound restarts its count.
        ``window``: probation begins at the first step below θ and ends only with a rebound; the row is
        removed when C < θ after Δ_rec steps of probation without one (v1: "no recovery within the last
        Δ_rec steps"; v3: "terminated if it fails to demonstrate a significant rebound within this window").
        ``end_of_window``: probation begins at the first step below θ and lasts Δ_rec steps; then v3
        Algorithm 1's test decides once — removed if C < θ and it has not rebounded (R < δ_rec) — and
        otherwise the flag clears. Rebounds are measured from ``recovery_reference``."""
        cfg, st = self.cfg, self.state
        newly = below & (st.flag_start < 0)
        t_now = torch.full_like(st.flag_start, t)
        cleared = torch.full_like(st.flag_start, -1)
        st.flag_start = torch.where(newly, t_now, st.flag_start)
        if cfg.probation == "continuous":
            st.flag_start = torch.where(below, st.flag_start, cleared)
        on = st.flag_start >= 0
        st.flag_c = torch.where(newly, c, st.flag_c)
        st.flag_min = torch.where(newly, c, torch.minimum(st.flag_min, c))
        if cfg.recovery_reference == "running_min":
            base = c_min  # R of eq. 8 (12) as given
        else:
            base = st.flag_c if cfg.recovery_reference == "flag" else st.flag_min
            r = rebound(c, base, 1e-6)  # eq. 8 (12)'s form, from the probation's own reference
        rec = on & recovered(c, base, r, cfg.delta_gap, cfg.delta_rec)
        if cfg.probation == "end_of_window":
            due = on & (t - st.flag_start >= cfg.recovery_window)
            st.flag_start = torch.where(due, cleared, st.flag_start)  # decided: removed, or the flag clears
            return due & below & ~rec
        st.last_recovery = torch.where(rec, t_now, st.last_recovery)
        if cfg.probation == "window":  # a rebound clears the flag; a later dip starts a new window
            st.flag_start = torch.where(rec, cleared, st.flag_start)
            return below & (st.flag_start >= 0) & (t - st.flag_start >= cfg.recovery_window)
        since = t - torch.maximum(st.flag_start, st.last_recovery)
        return below & (since >= cfg.recovery_window)

def tokens_spent(removed: dict[int, tuple[int, int]], n: int, steps: int) -> int:
    """Visual tokens of one image (A18): every trajectory counts the steps it was decoded, removals included."""
    return sum(removed[i][0] + 1 if i in removed else steps for i in range(n))
