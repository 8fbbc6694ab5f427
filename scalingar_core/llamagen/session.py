"""Cached CFG decoding of a :class:`~.gpt.GPT` for ``n`` trajectories (the engine's DecodeSession).

Rows ``0..n-1`` carry the condition, rows ``n..2n-1`` the null condition (LlamaGen's CFG batch). For t2i
both halves use the same caption mask, as upstream does: the null caption is trained under the mask of the
caption it replaced.
"""
from __future__ import annotations

import torch

from .gpt import GPT


def _rows(t: torch.Tensor, n: int, what: str) -> torch.Tensor:
    """Broadcast a batch of 1 to ``n`` rows; otherwise require exactly ``n``."""
    if t.shape[0] == n:
        return t
    if t.shape[0] == 1:
        return t.expand(n, *t.shape[1:])
    raise ValueError(f"{what} has batch {t.shape[0]}, expected 1 or n={n}")


class GPTSession:
    """Decode ``n`` trajectories of one condition with a static KV cache of ``2n`` rows.

    ``cond``: t2i caption features ``[1 or n, L >= cls_token_num, caption_dim]`` with ``cond_mask
    [1 or n, L]`` (1 = attend; None = every slot valid), already laid out on the model's padding side;
    c2i class labels ``[1 or n]`` long (or an int). ``uncond`` overrides the null condition (same
    format as ``cond``; default: the model's ``uncond_embedding`` / null class), and uses the same mask.
    """

    def __init__(self, model: GPT, cond, n: int, cond_mask: torch.Tensor | None = None, uncond=None):
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.model = model
        cfg = model.config
        device = model.tok_embeddings.weight.device
        self._n = n
        self._pos = None  # next position to write; None until prefill
        self._cond, self._uncond = self._as_input(cond, n, device), None
        if uncond is not None:
            self._uncond = self._as_input(uncond, n, device)
        if cfg.model_type == "t2i" and cond_mask is not None:
            cond_mask = _rows(torch.as_tensor(cond_mask, device=device), n, "cond_mask")
        elif cfg.model_type == "c2i":
            cond_mask = None
        with torch.no_grad():
            self.caches = model.new_caches(2 * n)
            mask = None if cond_mask is None else torch.cat([cond_mask, cond_mask])
            self._key_ok = model.key_mask(mask, 2 * n, cfg.seq_len, device)
        # A decode query sees only the written prefix (the cache returns it), so without caption padding
        # (c2i, the toy model, full captions) no mask is needed and SDPA may use its fused kernels.
        self._needs_mask = not bool(self._key_ok.all())

    def _as_input(self, c, n, device):
        if self.model.config.model_type == "c2i":
            c = torch.as_tensor(c, device=device).long().reshape(-1)
        return _rows(c.to(device), n, "condition")

    @property
    def num_trajectories(self) -> int:
        return self._n

    @property
    def position(self) -> int | None:
        """Next sequence position to be written (prefix length after prefill)."""
        return self._pos

    @torch.no_grad()
    def prefill(self) -> torch.Tensor:
        if self._pos is not None:
            raise RuntimeError("prefill() was already called on this session; start a new one")
        model, n = self.model, self._n
        T = model.config.cls_token_num
        x = torch.cat([model.embed_condition(self._cond), model.embed_condition(self._uncond, rows=n)])
        mask = model.attention_mask(self._key_ok, 0, T)
        h = model.trunk(x, 0, mask, self.caches)
        self._pos = T
        self._cond = self._uncond = None  # no longer needed; frees the features
        return model.head(h[:, -1])

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        if self._pos is None:
            raise RuntimeError("call prefill() before step()")
        model, n = self.model, self._n
        if self._pos >= model.config.seq_len:
            raise RuntimeError(f"all {model.config.block_size} image positions are already decoded")
        tokens = torch.as_tensor(tokens, device=self._key_ok.device).long().reshape(-1)
        if tokens.numel() != n:
            raise ValueError(f"step() needs one token per trajectory ({n}), got {tokens.numel()}")
        x = model.tok_embeddings(torch.cat([tokens, tokens])[:, None])
        pos = self._pos
        mask = self._key_ok[:, None, None, : pos + 1] if self._needs_mask else None
        h = model.trunk(x, pos, mask, self.caches)
        self._pos = pos + 1
        return model.head(h[:, -1])

    @torch.no_grad()
    def keep(self, rows: torch.Tensor) -> None:
        rows = torch.as_tensor(rows, device=self._key_ok.device).long().reshape(-1)
        if rows.numel() == 0:
            raise ValueError("keep() needs at least one row")
        if int(rows.min()) < 0 or int(rows.max()) >= self._n:
            raise ValueError(f"keep() rows must be in [0, {self._n}), got {rows.tolist()}")
        idx = torch.cat([rows, rows + self._n])
        length = self._pos or 0
        for cache in self.caches:
            cache.select(idx, length)
        self._key_ok = self._key_ok.index_select(0, idx)
        if self._pos is None:  # before prefill: the inputs follow the rows too
            self._cond = self._cond.index_select(0, rows)
            if self._uncond is not None:
                self._uncond = self._uncond.index_select(0, rows)
        self._n = rows.numel()
