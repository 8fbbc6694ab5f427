"""Cached CFG decoding of SimpleAR for ``n`` trajectories (the engine's DecodeSession).

Rows ``0..n-1`` carry the prompt, rows ``n..2n-1`` SimpleAR's negative prompt (the engine's contract). The two
rows differ in length, so the shorter is left-padded: each row has its own attention mask (pads never
attended) and its own position ids (its first real token is position 0), which is what running the rows
apart, as SimpleAR and transformers' unbatched CFG do, computes. The prefix runs once for the two rows and
the cache is then copied out to ``2n`` rows; the cache is transformers' ``StaticCache``.

Logits: SimpleAR guides log-probabilities over the whole vocabulary (``logp_u + s·(logp_c − logp_u)``), so
each row's logits are log-softmaxed over the whole vocabulary here, then cut to the 64,000 image codes: the
engine's ``u + s·(c − u)`` then is SimpleAR's formula exactly, and sampling is restricted to image codes
(SimpleAR does not mask text tokens; a text token it draws becomes code 0 by its clamp).
"""
from __future__ import annotations

import torch

from ..hf_session import CachedCFGSession, cache_keyword


class SimpleARSession(CachedCFGSession):
    def __init__(self, lm, cond_ids: torch.Tensor, uncond_ids: torch.Tensor, n: int, steps: int,
                 offset: int, codebook: int, guidance: bool = True):
        self._start(n, guidance)
        from transformers import StaticCache

        self.lm = lm
        self.device = lm.get_input_embeddings().weight.device
        rows = [cond_ids.reshape(-1), uncond_ids.reshape(-1)][: self._halves]
        width = max(r.numel() for r in rows)
        self._prefix = torch.stack([torch.cat([r.new_zeros(width - r.numel()), r]) for r in rows]).to(self.device)
        self._pads = torch.tensor([width - r.numel() for r in rows], device=self.device)  # left pads per row
        self._end = width + steps
        mask = torch.ones(len(rows), self._end, dtype=torch.long, device=self.device)
        self._mask = mask.masked_fill(torch.arange(self._end, device=self.device) < self._pads[:, None], 0)
        self.offset, self.codebook = offset, codebook
        self.cache = StaticCache(config=lm.config, max_cache_len=self._end)
        self._cache_kw = cache_keyword(lm.model)

    def _run(self, ids: torch.Tensor, start: int) -> torch.Tensor:
        """Decoder over ``ids [rows, q]`` at cache slots ``start..start+q-1`` (each row at its own positions);
        the image codes' full-vocabulary log-probabilities of the last, fp32."""
        q = ids.shape[1]
        positions = (torch.arange(start, start + q, device=self.device)[None] - self._pads[:, None]).clamp_min(0)
        out = self.lm.model(input_ids=ids, attention_mask=self._mask[:, : start + q], position_ids=positions,
                            use_cache=True, **{self._cache_kw: self.cache})
        logp = self.lm.lm_head(out.last_hidden_state[:, -1]).float().log_softmax(-1)
        return logp[:, self.offset: self.offset + self.codebook]

    def _prefill_logits(self) -> torch.Tensor:
        return self._run(self._prefix, 0)

    def _step_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._run((tokens + self.offset)[:, None], self._pos)

    def _reorder(self, rows: torch.Tensor) -> None:
        """The cache, the attention masks and the pads follow ``rows``."""
        self.cache.reorder_cache(rows)
        self._mask, self._pads = self._mask.index_select(0, rows), self._pads.index_select(0, rows)
