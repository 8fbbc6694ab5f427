"""Cached CFG decoding of a :class:`~.gpt.GPT` for ``n`` trajectories (the engine's DecodeSession).

Rows ``0..n-1`` carry the condition, rows ``n..2n-1`` the null condition (LlamaGen's CFG batch); a session
started without guidance holds only the ``n`` conditional rows (upstream samples those alone at CFG <= 1).
For t2i both halves use the same caption mask, as upstream does: the null caption is trained under the mask
of the caption it replaced.

What keeps a step cheap:

* the prefill runs once per *distinct* row (2 rows for one condition with CFG) and its cache is then
  expanded to every row;
* the caption slots the mask hides are dropped from the cache right after the prefill. Prefix positions
  have zero RoPE, so where the valid slots sit inside the prefix does not matter; afterwards every query
  attends every written slot and needs no mask (left padding, LlamaGen, and right padding, AR-GRPO, alike);
* the cache slot and the RoPE row of a step are device tensors, so the step has static shapes and
  ``torch.compile`` captures it once per batch size (``compiled=True``; see :mod:`.compile`).
"""
from __future__ import annotations

import torch

from .gpt import GPT, KVCache
from .protocol import keep_rows, step_tokens


def _rows(t: torch.Tensor, n: int, what: str) -> torch.Tensor:
    """A batch of 1 (shared by every trajectory) or exactly ``n``."""
    if t.shape[0] not in (1, n):
        raise ValueError(f"{what} has batch {t.shape[0]}, expected 1 or n={n}")
    return t


class GPTSession:
    """Decode ``n`` trajectories with a static KV cache of ``2n`` rows (``n`` without guidance).

    ``cond``: t2i caption features ``[1 or n, L >= cls_token_num, caption_dim]`` with ``cond_mask
    [1 or n, L]`` (1 = attend; None = every slot valid; every row the same mask), already laid out on the
    model's padding side; c2i class labels ``[1 or n]`` long (or an int). ``uncond`` overrides the null
    condition (same format as ``cond``; default: the model's ``uncond_embedding`` / null class), and uses
    the same mask. ``compiled`` decodes with the model's compiled static-shape step.
    """

    def __init__(self, model: GPT, cond, n: int, cond_mask: torch.Tensor | None = None, uncond=None,
                 guidance: bool = True, compiled: bool = False):
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.model = model
        cfg = model.config
        device = model.tok_embeddings.weight.device
        self._n = n
        self.guidance = guidance
        self._cond = self._as_input(cond, n, device)
        self._uncond = None if uncond is None else self._as_input(uncond, n, device)
        self._prefix_ok = None  # [L] bool: the caption slots every row may attend
        if cfg.model_type == "t2i" and cond_mask is not None:
            mask = _rows(torch.as_tensor(cond_mask, device=device).bool().reshape(-1, cond_mask.shape[-1]), n,
                         "cond_mask")
            if not bool((mask == mask[:1]).all()):
                raise ValueError("the trajectories of one session share one caption mask (one prompt per "
                                 "session); got different masks per row")
            self._prefix_ok = mask[0, : cfg.cls_token_num]
        self._decoder = None
        if compiled:
            from .compile import decoder_for

            self._decoder = decoder_for(model)
        self.caches: list[KVCache] | None = None
        self._slot = None  # next cache slot to write (python int); None until prefill
        self._pos = None  # next sequence position (python int)
        self._slot_t = self._pos_t = None  # the same two on the device, for the static-shape step
        self._rope = model.rope(device)

    def _as_input(self, c, n, device):
        if self.model.config.model_type == "c2i":
            c = torch.as_tensor(c, device=device).long().reshape(-1)
        return _rows(c.to(device), n, "condition")

    @property
    def num_trajectories(self) -> int:
        return self._n

    @property
    def position(self) -> int | None:
        """Next sequence position to be decoded (``cls_token_num`` right after prefill)."""
        return self._pos

    @property
    def _halves(self) -> int:
        return 2 if self.guidance else 1

    @torch.no_grad()
    def prefill(self) -> torch.Tensor:
        if self._slot is not None:
            raise RuntimeError("prefill() was already called on this session; start a new one")
        model, n = self.model, self._n
        T = model.config.cls_token_num
        device = self._rope.device
        # distinct rows only: one per condition given (1 or n), then one per null condition
        cond = model.embed_condition(self._cond)
        rows = [cond]
        src = [torch.arange(n, device=device) if cond.shape[0] == n else torch.zeros(n, dtype=torch.long, device=device)]
        if self.guidance:
            uncond = model.embed_condition(self._uncond, rows=1)
            rows.append(uncond)
            src.append(cond.shape[0] + (torch.arange(n, device=device) if uncond.shape[0] == n
                                        else torch.zeros(n, dtype=torch.long, device=device)))
        x, src = torch.cat(rows), torch.cat(src)
        prefix_ok = self._prefix_ok if self._prefix_ok is not None else torch.ones(T, dtype=torch.bool, device=device)
        mask = model.attention_mask(model.key_mask(prefix_ok[None], x.shape[0], T, device), 0, T)
        pre = model.new_caches(x.shape[0], seq=T)
        h = model.trunk(x, self._rope[None, :T], mask, pre, torch.arange(T, device=device), T)
        # keep only the slots image tokens may attend: the mask is gone from here on
        kept = prefix_ok.nonzero().squeeze(1)
        self.caches = self._decoder.claim(self, src.numel()) if self._decoder else model.new_caches(src.numel())
        for cache, p in zip(self.caches, pre):
            cache.load(p.k.index_select(0, src).index_select(2, kept), p.v.index_select(0, src).index_select(2, kept))
        self._slot, self._pos = kept.numel(), T
        self._slot_t = torch.tensor([self._slot], device=device)
        self._pos_t = torch.tensor([self._pos], device=device)
        if self._decoder:
            self._decoder.mark_static(self.caches)
        self._cond = self._uncond = None  # no longer needed; frees the features
        return model.head(h[:, -1]).index_select(0, src)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        if self._slot is None:
            raise RuntimeError("call prefill() before step()")
        model, n = self.model, self._n
        if self._pos >= model.config.seq_len:
            raise RuntimeError(f"all {model.config.block_size} image positions are already decoded")
        tokens = step_tokens(tokens, n, self._rope.device)
        if self.guidance:
            tokens = torch.cat([tokens, tokens])
        if self._decoder:
            logits = self._decoder.step(self, tokens, self._pos_t, self._slot_t, self.caches, self._rope)
        else:
            logits = model.decode_step(tokens, self._pos_t, self._slot_t, self.caches, self._rope,
                                       kv_len=self._slot + 1)
        self._slot += 1
        self._pos += 1
        self._slot_t += 1  # in place on the device: no host-to-device copy per step
        self._pos_t += 1
        return logits

    @torch.no_grad()
    def keep(self, rows: torch.Tensor) -> None:
        rows = keep_rows(rows, self._n, self._rope.device)
        if self.caches is None:  # before prefill: the per-row inputs follow the rows (shared ones stay)
            self._cond = self._cond if self._cond.shape[0] == 1 else self._cond.index_select(0, rows)
            if self._uncond is not None and self._uncond.shape[0] > 1:
                self._uncond = self._uncond.index_select(0, rows)
        else:
            idx = torch.cat([rows, rows + self._n]) if self.guidance else rows
            for cache in self.caches:
                cache.select(idx, self._slot)
            if self._decoder:
                self._decoder.mark_static(self.caches)
        self._n = rows.numel()
