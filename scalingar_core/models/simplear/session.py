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

from ..janus.session import _cache_keyword


class SimpleARSession:
    def __init__(self, lm, cond_ids: torch.Tensor, uncond_ids: torch.Tensor, n: int, steps: int,
                 offset: int, codebook: int, guidance: bool = True):
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        from transformers import StaticCache

        self.lm = lm
        self.device = lm.get_input_embeddings().weight.device
        rows = [cond_ids.reshape(-1), uncond_ids.reshape(-1)][: 2 if guidance else 1]
        width = max(r.numel() for r in rows)
        self._prefix = torch.stack([torch.cat([r.new_zeros(width - r.numel()), r]) for r in rows]).to(self.device)
        self._pads = torch.tensor([width - r.numel() for r in rows], device=self.device)  # left pads per row
        self._end = width + steps
        mask = torch.ones(len(rows), self._end, dtype=torch.long, device=self.device)
        self._mask = mask.masked_fill(torch.arange(self._end, device=self.device) < self._pads[:, None], 0)
        self._halves, self._n, self._pos = len(rows), n, None
        self.offset, self.codebook = offset, codebook
        self.cache = StaticCache(config=lm.config, max_cache_len=self._end)
        self._cache_kw = _cache_keyword(lm.model)

    @property
    def num_trajectories(self) -> int:
        return self._n

    def _run(self, ids: torch.Tensor, start: int) -> torch.Tensor:
        q = ids.shape[1]
        positions = (torch.arange(start, start + q, device=self.device)[None] - self._pads[:, None]).clamp_min(0)
        out = self.lm.model(input_ids=ids, attention_mask=self._mask[:, : start + q], position_ids=positions,
                            use_cache=True, **{self._cache_kw: self.cache})
        logp = self.lm.lm_head(out.last_hidden_state[:, -1]).float().log_softmax(-1)
        return logp[:, self.offset: self.offset + self.codebook]

    @torch.no_grad()
    def prefill(self) -> torch.Tensor:
        if self._pos is not None:
            raise RuntimeError("prefill() was already called on this session; start a new one")
        logits = self._run(self._prefix, 0)
        self._pos = self._prefix.shape[1]
        spread = torch.arange(self._halves, device=self.device).repeat_interleave(self._n)  # [0]*n + [1]*n
        self._spread(spread)
        return logits.index_select(0, spread)

    def _spread(self, rows: torch.Tensor) -> None:
        """Rows of the cache, the masks and the pads follow ``rows`` (indices into the current rows)."""
        self.cache.reorder_cache(rows)
        self._mask, self._pads = self._mask.index_select(0, rows), self._pads.index_select(0, rows)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        if self._pos is None:
            raise RuntimeError("call prefill() before step()")
        if self._pos >= self._end:
            raise RuntimeError(f"all {self._end - self._prefix.shape[1]} image positions are already decoded")
        tokens = torch.as_tensor(tokens, device=self.device).long().reshape(-1)
        if tokens.numel() != self._n:
            raise ValueError(f"step() needs one token per trajectory ({self._n}), got {tokens.numel()}")
        logits = self._run((torch.cat([tokens] * self._halves) + self.offset)[:, None], self._pos)
        self._pos += 1
        return logits

    @torch.no_grad()
    def keep(self, rows: torch.Tensor) -> None:
        rows = torch.as_tensor(rows, device=self.device).long().reshape(-1)
        if rows.numel() == 0:
            raise ValueError("keep() needs at least one row")
        if int(rows.min()) < 0 or int(rows.max()) >= self._n:
            raise ValueError(f"keep() rows must be in [0, {self._n}), got {rows.tolist()}")
        if self._pos is not None:  # before prefill nothing is cached: the rows are spread at prefill
            self._spread(torch.cat([rows, rows + self._n][: self._halves]))
        self._n = rows.numel()
