"""Cached CFG decoding of Janus-Pro for ``n`` trajectories (the engine's DecodeSession).

Rows ``0..n-1`` carry the prompt, rows ``n..2n-1`` the model's unconditional row (the engine's contract;
transformers' image generation orders its CFG batch the same way). The prefix is run once for one
conditional and one unconditional row, then the KV cache is copied out to the ``2n`` rows: every
trajectory starts from the same prefix state whatever ``n`` is. The cache is transformers' ``StaticCache``
(what its image generation uses), sized prompt + image tokens; ``keep(rows)`` selects (and with repeats
copies) rows of every layer with its ``reorder_cache``, so removed trajectories stop costing compute
(:class:`~scalingar_core.models.hf_session.CachedCFGSession`).
"""
from __future__ import annotations

import torch

from ..hf_session import CachedCFGSession, cache_keyword


class JanusSession(CachedCFGSession):
    """Decode ``n`` trajectories of one prompt with ``2n`` rows of a static KV cache."""

    def __init__(self, generator, cond_ids: torch.Tensor, uncond_ids: torch.Tensor, n: int, steps: int,
                 guidance: bool = True):
        self._start(n, guidance)
        cond_ids, uncond_ids = cond_ids.reshape(-1), uncond_ids.reshape(-1)
        if cond_ids.shape != uncond_ids.shape:
            raise ValueError(f"conditional row {tuple(cond_ids.shape)} and unconditional row "
                             f"{tuple(uncond_ids.shape)} differ in length")
        from transformers import StaticCache

        self.generator = generator
        lm = generator.language_model
        self.device = lm.embed_tokens.weight.device
        self._prefix = torch.stack([cond_ids, uncond_ids][: self._halves]).to(self.device)  # [2 or 1, L]
        self._end = cond_ids.numel() + steps
        self.cache = StaticCache(config=lm.config, max_cache_len=self._end)
        self._cache_kw = cache_keyword(lm)

    def _run(self, embeds: torch.Tensor, start: int) -> torch.Tensor:
        """Decoder over ``embeds [rows, q, D]`` at positions ``start..start+q-1``; fp32 logits of the last."""
        rows, q = embeds.shape[:2]
        positions = torch.arange(start, start + q, device=self.device)[None].expand(rows, q)
        out = self.generator.language_model(inputs_embeds=embeds, position_ids=positions, use_cache=True,
                                            **{self._cache_kw: self.cache})
        return self.generator.generation_head(out.last_hidden_state[:, -1]).float()

    def _prefill_logits(self) -> torch.Tensor:
        return self._run(self.generator.language_model.embed_tokens(self._prefix), 0)

    def _step_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._run(self.generator.image_embeddings(tokens)[:, None], self._pos)
