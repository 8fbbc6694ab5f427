"""Cached CFG decoding of Janus-Pro for ``n`` trajectories (the engine's DecodeSession).

Rows ``0..n-1`` carry the prompt, rows ``n..2n-1`` the model's unconditional row (the engine's contract;
transformers' image generation orders its CFG batch the same way). The prefix is run once for one
conditional and one unconditional row, then the KV cache is copied out to the ``2n`` rows: every
trajectory starts from the same prefix state whatever ``n`` is. The cache is transformers' ``StaticCache``
(what its image generation uses), sized prompt + image tokens; ``keep(rows)`` selects (and with repeats
copies) rows of every layer with its ``reorder_cache``, so removed trajectories stop costing compute.
"""
from __future__ import annotations

import inspect

import torch


def _cache_keyword(language_model) -> str:
    """transformers renamed the decoder's cache argument ``past_key_values`` -> ``cache`` in the 5.x line."""
    params = inspect.signature(language_model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class JanusSession:
    """Decode ``n`` trajectories of one prompt with ``2n`` rows of a static KV cache."""

    def __init__(self, generator, cond_ids: torch.Tensor, uncond_ids: torch.Tensor, n: int, steps: int,
                 guidance: bool = True):
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        cond_ids, uncond_ids = cond_ids.reshape(-1), uncond_ids.reshape(-1)
        if cond_ids.shape != uncond_ids.shape:
            raise ValueError(f"conditional row {tuple(cond_ids.shape)} and unconditional row "
                             f"{tuple(uncond_ids.shape)} differ in length")
        from transformers import StaticCache

        self.generator = generator
        lm = generator.language_model
        self.device = lm.embed_tokens.weight.device
        self._halves = 2 if guidance else 1  # without guidance (CFG <= 1) only the conditional rows
        self._prefix = torch.stack([cond_ids, uncond_ids][: self._halves]).to(self.device)  # [2 or 1, L]
        self._n = n
        self._pos: int | None = None
        self._end = cond_ids.numel() + steps
        self.cache = StaticCache(config=lm.config, max_cache_len=self._end)
        self._cache_kw = _cache_keyword(lm)

    @property
    def num_trajectories(self) -> int:
        return self._n

    def _run(self, embeds: torch.Tensor, start: int) -> torch.Tensor:
        """Decoder over ``embeds [rows, q, D]`` at positions ``start..start+q-1``; fp32 logits of the last."""
        rows, q = embeds.shape[:2]
        positions = torch.arange(start, start + q, device=self.device)[None].expand(rows, q)
        out = self.generator.language_model(inputs_embeds=embeds, position_ids=positions, use_cache=True,
                                            **{self._cache_kw: self.cache})
        return self.generator.generation_head(out.last_hidden_state[:, -1]).float()

    @torch.no_grad()
    def prefill(self) -> torch.Tensor:
        if self._pos is not None:
            raise RuntimeError("prefill() was already called on this session; start a new one")
        embeds = self.generator.language_model.embed_tokens(self._prefix)
        logits = self._run(embeds, 0)  # [2, V]: one conditional, one unconditional row
        self._pos = self._prefix.shape[1]
        spread = torch.arange(self._halves, device=self.device).repeat_interleave(self._n)  # [0]*n + [1]*n
        self.cache.reorder_cache(spread)
        return logits.index_select(0, spread)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        if self._pos is None:
            raise RuntimeError("call prefill() before step()")
        if self._pos >= self._end:
            raise RuntimeError(f"all {self._end - self._prefix.shape[1]} image positions are already decoded")
        tokens = torch.as_tensor(tokens, device=self.device).long().reshape(-1)
        if tokens.numel() != self._n:
            raise ValueError(f"step() needs one token per trajectory ({self._n}), got {tokens.numel()}")
        embeds = self.generator.image_embeddings(torch.cat([tokens] * self._halves))[:, None]
        logits = self._run(embeds, self._pos)
        self._pos += 1
        return logits

    @torch.no_grad()
    def keep(self, rows: torch.Tensor) -> None:
        rows = torch.as_tensor(rows, device=self.device).long().reshape(-1)
        if rows.numel() == 0:
            raise ValueError("keep() needs at least one row")
        if int(rows.min()) < 0 or int(rows.max()) >= self._n:
            raise ValueError(f"keep() rows must be in [0, {self._n}), got {rows.tolist()}")
        if self._pos is not None:  # before prefill there is nothing cached: the rows are spread at prefill
            self.cache.reorder_cache(torch.cat([rows, rows + self._n][: self._halves]))
        self._n = rows.numel()
