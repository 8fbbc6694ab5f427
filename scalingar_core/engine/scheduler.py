"""Policy level: the guidance scheduler, eq. 10 (v1 14–15; docs/method.md). Each trajectory gets its own
CFG scale."""
from __future__ import annotations

import torch

from .config import SchedulerConfig
from .history import History


def volatility(window: torch.Tensor, measure: str) -> torch.Tensor:
    """Vol_t(I): population variance (or standard deviation, A9) of I over the recent window ``[n, L]``."""
    var = window.var(dim=-1, unbiased=False) if window.shape[-1] > 1 else torch.zeros(window.shape[0], device=window.device)
    return var.sqrt() if measure == "std" else var


def cfg_adjustment(d_hat: torch.Tensor, vol: torch.Tensor, r: torch.Tensor, alpha: float, beta: float,
                   gamma: float) -> torch.Tensor:
    """Eq. 10 (14): Δs_t = α·(1 − D̂_t) + β·Vol_t(I) − γ·R_t."""
    return alpha * (1.0 - d_hat) + beta * vol - gamma * r


def cfg_target(base: float, delta: torch.Tensor, form: str) -> torch.Tensor:
    """(v1 15) target s*_t: s_base + Δs (additive, v3 Algorithm 1) or s_base·(1 + Δs) (multiplicative, A9)."""
    return base * (1.0 + delta) if form == "multiplicative" else base + delta


def cfg_update(previous: torch.Tensor, target: torch.Tensor, cfg: SchedulerConfig, base: float) -> torch.Tensor:
    """(v1 15): deadband, then smoothing toward the target (or integration, A10), then the clamp."""
    if cfg.update == "integrating":
        proposal = previous + cfg.eta * (target - base)  # s_t = s_{t−1} + η·Δs
        move = proposal - previous
    else:
        proposal = (1.0 - cfg.eta) * previous + cfg.eta * target
        move = target - previous
    low = min(base, max(cfg.min_scale, base - cfg.clamp_below))  # never above the base scale itself
    high = base + cfg.clamp_above
    return torch.where(move.abs() < cfg.deadband, previous, proposal.clamp(low, high))


class GuidanceScheduler:
    """Moves each trajectory's CFG scale from condition utilisation, intrinsic volatility and rebound."""

    def __init__(self, cfg: SchedulerConfig, base: float, history: History):
        self.cfg = cfg
        self.base = base
        self.history = history

    def step(self, t: int, ids: torch.Tensor, previous: torch.Tensor, d_hat: torch.Tensor,
             r: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        vol = volatility(self.history.window("I", ids, t, cfg.vol_window), cfg.vol_measure)
        delta = cfg_adjustment(d_hat, vol, r, cfg.alpha, cfg.beta, cfg.gamma)
        return cfg_update(previous, cfg_target(self.base, delta, cfg.form), cfg, self.base)
