"""Token drawing: classifier-free guidance per row, temperature, top-k, top-p, and per-trajectory random
streams.

Randomness is counter-based: the uniform number trajectory ``i`` of seed ``s`` uses at step ``t`` is a hash
of ``(s, i, t)``. A trajectory therefore draws the same tokens whatever happens to the others (pruning,
batch size), on any device, and no generator state has to follow rows through compaction.
"""
from __future__ import annotations

import torch

_MASK32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x·c) mod 2³² in int64 without overflow (split c in 16-bit halves)."""
    lo = (x * (c & 0xFFFF)) & _MASK32
    hi = ((x * (c >> 16)) & 0xFFFF) << 16
    return (lo + hi) & _MASK32


def _fmix32(x: torch.Tensor) -> torch.Tensor:
    """MurmurHash3's 32-bit finaliser, an avalanche mix of 32-bit values held in int64."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x85EBCA6B)
    x = x ^ (x >> 13)
    x = _mul32(x, 0xC2B2AE35)
    return x ^ (x >> 16)


def stream_uniform(seed: int, ids: torch.Tensor, step, salt: int = 0) -> torch.Tensor:
    """Uniform numbers in [0, 1), one per trajectory id, a pure function of (seed, id, step, salt).

    ``step`` is an int or a tensor that broadcasts against ``ids`` (see :func:`stream_table`)."""
    x = _fmix32((ids.long() * 0x9E3779B1 + step * 0x632BE5AB + salt * 0x2545F491) & _MASK32)
    x = _fmix32(x ^ (seed & _MASK32))
    x = _fmix32(x ^ ((seed >> 32) & _MASK32) ^ 0x5BD1E995)
    return (x >> 8).double().div(1 << 24).to(torch.float32)  # 24 random bits: exact in float32


def stream_table(seed: int, num_trajectories: int, steps: int, device, salt: int = 0) -> torch.Tensor:
    """Every uniform number a run's token draws can use, ``[steps, num_trajectories]``, drawn once before
    the loop: row ``t`` is ``stream_uniform(seed, arange(N), t)``, the same values, so seeds and survivor
    invariance do not change, and a step only gathers its row."""
    ids = torch.arange(num_trajectories, device=device)[None, :]
    steps_ = torch.arange(steps, device=device)[:, None]
    return stream_uniform(seed, ids, steps_, salt)


def guided_logits(cond: torch.Tensor, uncond: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """ℓ_u + s_i·(ℓ_c − ℓ_u) with one fp32 scale per row (LlamaGen's CFG on fp32 logits). A scale <= 1 gives
    the conditional logits ℓ_c exactly: upstream reads CFG <= 1 as "no guidance"."""
    return torch.lerp(uncond, cond, scale.clamp_min(1.0)[..., None])  # u + s·(c − u) in one pass


def filter_logits(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Temperature, then top-k (ties with the k-th value survive), then top-p (the first token always survives)."""
    if temperature != 1.0:
        logits = logits / max(temperature, 1e-5)
    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        sorted_probs = sorted_logits.softmax(-1)
        drop_sorted = (sorted_probs.cumsum(-1) - sorted_probs) > top_p  # mass before this token
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def draw(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw of one index per row of ``probs`` ``[n, V]`` with the given uniforms ``[n]``."""
    cdf = probs.cumsum(-1, dtype=torch.float32)
    target = (uniform * cdf[..., -1])[..., None]
    index = torch.searchsorted(cdf, target, right=True).squeeze(-1)
    return index.clamp_max(probs.shape[-1] - 1)


def sample_tokens(logits: torch.Tensor, temperature: float, top_k: int, top_p: float,
                  uniform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One token per row from guided logits, drawn with each row's uniform number (its stream's value at
    this step, from :func:`stream_table`), and its log-probability under the distribution it was drawn from."""
    probs = filter_logits(logits, temperature, top_k, top_p).softmax(-1)
    tokens = draw(probs, uniform)
    return tokens, probs.gather(-1, tokens[..., None]).squeeze(-1).log()
