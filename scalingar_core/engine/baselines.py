"""What the baselines add to the shared sampler: scores for Best-of-N and importance sampling, the
resampling rule of importance sampling, and the random choice of the random-prune control."""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from .confidence import ProfileState
from .sampling import draw, stream_uniform

Reward = Callable[[torch.Tensor], Sequence[float] | torch.Tensor]
"""A reward on decoded images ``[n, 3, H, W]`` in [0, 1] (ungenerated rows grey) → one score per image."""

_SALT_RESAMPLE, _SALT_PRUNE = 1, 2


def intrinsic_score(state: ProfileState, kind: str, steps_done: int) -> torch.Tensor:
    """Model-internal score of each trajectory so far: mean token confidence c_t, mean self-certainty, or C."""
    if kind == "self_certainty":
        return state.self_cert_sum / steps_done
    if kind == "confidence":
        return state.c
    return state.tok_conf_sum / steps_done


def reward_scores(reward: Reward, images: torch.Tensor, device) -> torch.Tensor:
    scores = reward(images)
    scores = torch.as_tensor(scores, dtype=torch.float32).to(device).reshape(-1)
    if scores.numel() != images.shape[0]:
        raise ValueError(f"reward returned {scores.numel()} scores for {images.shape[0]} images: return one per image")
    return scores


def resample_steps(fractions: Sequence[float], grid: tuple[int, int]) -> list[int]:
    """IS resampling points (A19): after the row boundary nearest each fraction of the grid's rows."""
    h, w = grid
    rows = sorted({min(h - 1, max(1, round(f * h))) for f in fractions})
    return [r * w - 1 for r in rows]


def importance_weights(scores: torch.Tensor, lam: float, standardise: bool = True) -> torch.Tensor:
    """TTS-VAR's weights w_i ∝ exp(λ·r_i), normalised (computed stably as a softmax); with ``standardise``
    r_i are the scores' z-scores across the candidates (``BaselineConfig.is_scores``)."""
    r = scores.float()
    if standardise and r.numel() > 1:
        r = (r - r.mean()) / (r.std(unbiased=False) + 1e-6)  # equal scores stay equal: uniform weights
    return torch.softmax(lam * r, dim=0)


def finite_weights(scores: torch.Tensor, lam: float, standardise: bool = True) -> torch.Tensor:
    """:func:`importance_weights` over the finite scores; a NaN or infinite score gets weight 0 (it would
    turn every weight into NaN). With no finite score at all every trajectory weighs the same."""
    finite = torch.isfinite(scores)
    if bool(finite.all()):
        return importance_weights(scores, lam, standardise)
    weights = torch.zeros(scores.shape, device=scores.device)
    if bool(finite.any()):
        weights[finite] = importance_weights(scores[finite], lam, standardise)
    else:
        weights += 1.0 / scores.numel()
    return weights


def resample(weights: torch.Tensor, seed: int, step: int) -> torch.Tensor:
    """Multinomial resampling with replacement: ``n`` parent indices drawn with probability ``weights``."""
    n = weights.shape[0]
    slots = torch.arange(n, device=weights.device)
    uniform = stream_uniform(seed, slots, step, salt=_SALT_RESAMPLE)
    return draw(weights.expand(n, n), uniform)


def random_victims(seed: int, ids: torch.Tensor, step: int, count: int) -> torch.Tensor:
    """Random-prune control: ``count`` rows chosen uniformly among the active ones (a boolean mask)."""
    keys = stream_uniform(seed, ids, step, salt=_SALT_PRUNE)
    mask = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    if count > 0:
        mask[keys.argsort()[:count]] = True
    return mask
