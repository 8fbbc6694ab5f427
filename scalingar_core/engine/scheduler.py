"""Policy level: the guidance scheduler, eq. 10 (v1 14–15; docs/method.md). Each trajectory gets its own
CFG scale."""
from __future__ import annotations

import torch

from .config import SchedulerConfig


def volatility(window: torch.Tensor, measure: str, padded: bool = False) -> torch.Tensor:
    """Vol_t(I): population variance (or standard deviation, A9) of I over the recent window ``[..., L]``.
    ``padded``: the window may start with NaN (the compiled step's fixed-width one, before step L − 1); only
    its recorded values count."""
    if window.shape[-1] == 1:
        var = torch.zeros(window.shape[:-1], device=window.device)
    elif padded:
        seen = ~torch.isnan(window)
        count = seen.sum(-1)
        mean = window.nan_to_num(0.0).sum(-1) / count
        var = torch.where(seen, (window - mean[..., None]) ** 2, 0.0).sum(-1) / count
    else:
        var = window.var(dim=-1, unbiased=False)
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


def next_scale(cfg: SchedulerConfig, base: float, previous: torch.Tensor, d_hat: torch.Tensor, r: torch.Tensor,
               i_window: torch.Tensor, padded: bool = False) -> torch.Tensor:
    """Eq. 10 (v1 14–15): each trajectory's next CFG scale from condition utilisation D̂, the volatility of I
    over ``i_window`` ``[..., L]`` (``padded``: as in :func:`volatility`) and the rebound R."""
    vol = volatility(i_window, cfg.vol_measure, padded)
    return cfg_update(previous, cfg_target(base, cfg_adjustment(d_hat, vol, r, cfg.alpha, cfg.beta, cfg.gamma),
                                           cfg.form), cfg, base)
