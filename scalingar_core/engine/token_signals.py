"""Per-token signals recorded beside the paper's, to test which intrinsic signal picks winners. NOT IN THE
PAPER: they feed the bench's signal report (``app/signals.py``), never a decision of the sampler.

* :func:`topk_confidence`: DeepConf's token confidence (Fu et al., "Deep Think with Confidence").
* :func:`guidance_gap`: how much the prompt raised the sampled token, log p_cond − log p_uncond.
* :func:`lowest_group_confidence`: DeepConf's trajectory score from the first, computed after the run.
"""
from __future__ import annotations

import torch

TOPK_CONFIDENCE_K = (5, 20)
"""The k of each recorded DeepConf token confidence (the bench chooses one on the builtin split)."""


def topk_confidence(logits: torch.Tensor, k: int) -> torch.Tensor:
    """DeepConf's token confidence: −mean of the top-k log-probabilities of the distribution ``logits``
    ``[n, V]`` (high when the mass sits on few tokens, so the others' log-probabilities are very negative)."""
    k = min(k, logits.shape[-1])
    return -torch.log_softmax(logits.float(), dim=-1).topk(k, dim=-1).values.mean(-1)


def guidance_gap(cond: torch.Tensor, uncond: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p_cond(x) − log p_uncond(x) of each row's sampled token ``x`` (``[n]``): what the prompt added."""
    index = tokens[:, None]
    return (torch.log_softmax(cond.float(), -1).gather(1, index)
            - torch.log_softmax(uncond.float(), -1).gather(1, index)).squeeze(1)


def lowest_group_confidence(confidence: torch.Tensor, window: int) -> torch.Tensor:
    """DeepConf's lowest group confidence of each row of ``confidence`` ``[n, T]``: the mean over every
    sliding window of ``window`` consecutive tokens, then the minimum over windows (the whole row's mean
    when it is shorter than one window)."""
    window = max(1, min(window, confidence.shape[-1]))
    return confidence.float().unfold(-1, window, 1).mean(-1).amin(-1)


def extra_signals(cond: torch.Tensor, uncond: torch.Tensor | None, guided: torch.Tensor, tokens: torch.Tensor,
                  temperature: float) -> dict[str, torch.Tensor]:
    """This module's per-step values for the trace: the guidance gap (NaN without unconditional rows) and
    the top-k confidence of the distribution the token was drawn from (guided logits at the temperature,
    before top-k / top-p filtering, which would leave −inf among the top k)."""
    scaled = guided / max(temperature, 1e-5)
    gap = guidance_gap(cond, uncond, tokens) if uncond is not None else torch.full_like(tokens, float("nan"),
                                                                                         dtype=torch.float32)
    return {"guidance_gap": gap, **{f"topk_conf_{k}": topk_confidence(scaled, k) for k in TOPK_CONFIDENCE_K}}
