"""Cached CFG decoding of a :class:`~.gpt.GPT` for ``n`` trajectories (the engine's DecodeSession).

Trajectory ``j`` has two model rows, ``2j`` with the condition and ``2j + 1`` with the null condition
(LlamaGen's CFG pair; its logits are returned as upstream lays them out, every conditional row, then every
unconditional one). Pairs sit side by side so that removing a trajectory moves only the pairs after it and
admitting one appends a pair. A session started without guidance holds only the ``n`` conditional rows
(upstream samples those alone at CFG <= 1).
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

Continuous batching: an eager session built with ``inputs`` (how a family's condition objects become GPT
inputs) can ``admit`` new trajectories between steps. Each new condition is prefilled on its own (two rows,
its own caption mask), its kept prefix goes into new rows after the current ones in both halves, and from
then on every trajectory has its own cache slot and RoPE position: a step writes each row's k/v at its own
slot, and each run of rows at the same step attends only its own written slots (no mask, and no row pays
for the longest history in the batch). When every row is at the same step again (the older rows were
dropped by ``keep``), the session returns to the one shared slot and the unmasked step.
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
                 guidance: bool = True, compiled: bool = False, inputs=None):
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
        self._inputs = inputs  # condition object -> (cond, cond_mask): how admit() reads a family's conditions
        self._slots: list[int] | None = None  # per trajectory, once rows sit at different steps (admit)
        self._positions: list[int] | None = None

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

    def _prefix(self, cond, uncond, n: int, prefix_ok: torch.Tensor | None):
        """Run the condition prefix of ``n`` trajectories once per distinct row; return the per-layer k/v of the
        slots image tokens may attend (``[rows, H, kept, D]``, rows in the cache's pair order), the number of
        those slots, and the fp32 logits of every row (conditional, then unconditional)."""
        model = self.model
        T = model.config.cls_token_num
        device = self._rope.device
        # distinct rows only: one per condition given (1 or n), then one per null condition
        cond = model.embed_condition(cond)
        rows = [cond]
        src = [torch.arange(n, device=device) if cond.shape[0] == n else torch.zeros(n, dtype=torch.long, device=device)]
        if self.guidance:
            uncond = model.embed_condition(uncond, rows=1)
            rows.append(uncond)
            src.append(cond.shape[0] + (torch.arange(n, device=device) if uncond.shape[0] == n
                                        else torch.zeros(n, dtype=torch.long, device=device)))
        x, by_half = torch.cat(rows), torch.cat(src)
        src = torch.stack(src, 1).reshape(-1)  # pairs: row 2j conditional, 2j + 1 unconditional
        prefix_ok = prefix_ok if prefix_ok is not None else torch.ones(T, dtype=torch.bool, device=device)
        mask = model.attention_mask(model.key_mask(prefix_ok[None], x.shape[0], T, device), 0, T)
        pre = model.new_caches(x.shape[0], seq=T)
        h = model.trunk(x, self._rope[None, :T], mask, pre, torch.arange(T, device=device), T)
        # keep only the slots image tokens may attend: the mask is gone from here on
        kept = prefix_ok.nonzero().squeeze(1)
        kv = [(p.k.index_select(0, src).index_select(2, kept), p.v.index_select(0, src).index_select(2, kept))
              for p in pre]
        return kv, kept.numel(), model.head(h[:, -1]).index_select(0, by_half)

    @torch.no_grad()
    def prefill(self) -> torch.Tensor:
        if self._slot is not None:
            raise RuntimeError("prefill() was already called on this session; start a new one")
        n = self._n
        kv, kept, logits = self._prefix(self._cond, self._uncond, n, self._prefix_ok)
        device = self._rope.device
        self.caches = self._decoder.claim(self, 2 * n if self.guidance else n) if self._decoder else \
            self.model.new_caches(2 * n if self.guidance else n)
        for cache, (k, v) in zip(self.caches, kv):
            cache.load(k, v)
        self._slot, self._pos = kept, self.model.config.cls_token_num
        self._slot_t = torch.tensor([self._slot], device=device)
        self._pos_t = torch.tensor([self._pos], device=device)
        if self._decoder:
            self._decoder.mark_static(self.caches)
        self._cond = self._uncond = None  # no longer needed; frees the features
        return logits

    @property
    def admits(self) -> bool:
        """New trajectories can join mid-flight (eager decoding only: a compiled step keeps its cache)."""
        return self._decoder is None and self._inputs is not None and self.caches is not None

    @torch.no_grad()
    def admit(self, conditions: list, counts: list[int]) -> torch.Tensor:
        """Add ``counts[i]`` trajectories of ``conditions[i]`` (the family's condition objects) after the
        current ones, in both halves, each at its first image position while the others keep theirs; return
        the new rows' fp32 logits (their conditional rows, then their unconditional ones)."""
        if not self.admits:
            raise RuntimeError("this session cannot admit new trajectories (compiled, or not prefilled)")
        device = self._rope.device
        n, halves = self._n, self._halves
        self._per_row()
        parts, logits, length = [], [], max(self._slots)
        for condition, k in zip(conditions, counts):
            cond, mask = self._inputs(condition)
            prefix_ok = None if mask is None else torch.as_tensor(mask, device=device).bool().reshape(-1)[
                : self.model.config.cls_token_num]
            kv, kept, out = self._prefix(_rows(self._as_input(cond, k, device), k, "condition"), None, k, prefix_ok)
            parts.append((kv, k))
            logits.append(out)
            self._slots += [kept] * k
            self._positions += [self.model.config.cls_token_num] * k
            length = max(length, kept)
        added = sum(counts)
        for layer, cache in enumerate(self.caches):
            cache.grow(halves * (n + added), length)  # the current pairs stay where they are
            row = halves * n
            for kv, k in parts:
                kk, vv = kv[layer]
                width, end = kk.shape[2], row + halves * k
                cache.k[row:end, :, :width], cache.v[row:end, :, :width] = kk, vv
                cache.k[row:end, :, width:length] = 0
                cache.v[row:end, :, width:length] = 0
                row = end
        self._n = n + added
        self._sync_rows()
        new = torch.cat(logits)  # [cond_1, uncond_1, cond_2, ...] per condition: regroup by half
        pieces = torch.split(new, [halves * k for k in counts])
        return torch.cat([piece[h * k: (h + 1) * k] for h in range(halves) for piece, k in zip(pieces, counts)])

    def _per_row(self) -> None:
        """Switch to per-trajectory slots and positions (rows at different steps)."""
        if self._slots is None:
            self._slots = [self._slot] * self._n
            self._positions = [self._pos] * self._n

    def _sync_rows(self) -> None:
        """Per-row slots back to one shared slot when every row is at the same step again."""
        if self._slots and len(set(self._slots)) == 1 and len(set(self._positions)) == 1:
            self._slot, self._pos = self._slots[0], self._positions[0]
            self._slot_t.fill_(self._slot)
            self._pos_t.fill_(self._pos)
            self._slots = self._positions = None

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        if self._slot is None:
            raise RuntimeError("call prefill() before step()")
        model, n = self.model, self._n
        if self._slots is None and self._pos >= model.config.seq_len:
            raise RuntimeError(f"all {model.config.block_size} image positions are already decoded")
        tokens = step_tokens(tokens, n, self._rope.device)
        if self.guidance:
            tokens = tokens.repeat_interleave(2)
        if self._slots is not None:
            return self._halves_first(self._step_rows(tokens))
        if self._decoder:
            logits = self._decoder.step(self, tokens, self._pos_t, self._slot_t, self.caches, self._rope)
        else:
            logits = model.decode_step(tokens, self._pos_t, self._slot_t, self.caches, self._rope,
                                       kv_len=self._slot + 1)
        logits = self._halves_first(logits)
        self._slot += 1
        self._pos += 1
        self._slot_t += 1  # in place on the device: no host-to-device copy per step
        self._pos_t += 1
        return logits

    def _halves_first(self, logits: torch.Tensor) -> torch.Tensor:
        """Pair-ordered logits ``[2n, V]`` as every conditional row, then every unconditional one."""
        if not self.guidance:
            return logits
        return logits.view(self._n, 2, -1).transpose(0, 1).reshape(2 * self._n, -1)

    def _step_rows(self, tokens: torch.Tensor) -> torch.Tensor:
        """A step with every trajectory at its own slot and position (both rows of a pair share them)."""
        device = self._rope.device
        halves = self._halves
        slots = torch.tensor(self._slots, device=device).repeat_interleave(halves)
        positions = torch.tensor(self._positions, device=device).repeat_interleave(halves)
        if max(self._positions) >= self.model.config.seq_len:
            raise RuntimeError(f"all {self.model.config.block_size} image positions are already decoded")
        logits = self.model.decode_step(tokens, positions, slots[:, None], self.caches, self._rope,
                                        kv_len=self._runs(halves))
        self._slots = [s + 1 for s in self._slots]
        self._positions = [p + 1 for p in self._positions]
        return logits

    def _runs(self, halves: int) -> tuple[tuple[int, int, int], ...]:
        """Runs of consecutive cache rows at the same slot as ``(first, end, slots to attend)``. Rows
        admitted together stay together through ``keep``, so there are few runs."""
        n, runs, start = self._n, [], 0
        for i in range(1, n + 1):
            if i == n or self._slots[i] != self._slots[start]:
                runs.append((halves * start, halves * i, self._slots[start] + 1))
                start = i
        return tuple(runs)

    @torch.no_grad()
    def keep(self, rows: torch.Tensor) -> None:
        rows = keep_rows(rows, self._n, self._rope.device)
        if self.caches is None:  # before prefill: the per-row inputs follow the rows (shared ones stay)
            self._cond = self._cond if self._cond.shape[0] == 1 else self._cond.index_select(0, rows)
            if self._uncond is not None and self._uncond.shape[0] > 1:
                self._uncond = self._uncond.index_select(0, rows)
        else:
            picked = rows.tolist()
            moved = next((j for j, r in enumerate(picked) if r != j), len(picked))  # pairs before it stay put
            idx = torch.stack([2 * rows, 2 * rows + 1], 1).reshape(-1) if self.guidance else rows
            length = self._slot if self._slots is None else max(self._slots)
            for cache in self.caches:
                cache.select(idx, length, start=self._halves * moved)
            if self._slots is not None:
                self._slots = [self._slots[i] for i in picked]
                self._positions = [self._positions[i] for i in picked]
            if self._decoder:
                self._decoder.mark_static(self.caches)
        self._n = rows.numel()
        self._sync_rows()
