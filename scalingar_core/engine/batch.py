"""The model rows behind the loop's groups: one decode session, which rows of it each trajectory reads, and
admission of new groups.

Every live trajectory is a *logical* row; ``phys[j]`` is the session row that holds logical row ``j`` (its
conditional half; the unconditional twin is ``phys[j] + half``). Without sharing the two are the same. With
sharing, rows with the same condition object and the same token history are decoded once: methods that
share a seed draw the same uniforms, so Best-of-N, plain, importance sampling and the pruning methods'
survivors ride one history until guidance makes a different token win (about half the bench's rows).

A session that can ``admit(conditions, counts)`` takes new groups while others decode (continuous
batching: each row at its own position). Otherwise new groups start a fresh session once the last one is
empty (lock-step waves), through ``start_batch`` for several groups or ``start`` for one.
"""
from __future__ import annotations

import torch


class RowBatch:
    def __init__(self, model, guided: bool, share: bool):
        self.model, self.guided, self.share = model, guided, share
        self.device = torch.device(model.device)
        self.session = None
        self.phys = torch.zeros(0, dtype=torch.long, device=self.device)  # logical -> session row
        self.half = 0  # session rows per half
        self.logits: torch.Tensor | None = None  # [2·half, V] guided, [half, V] not: the rows' next-token logits
        self.contiguous = True  # phys is arange(half): groups read slices, no gathers

    @property
    def empty(self) -> bool:
        return self.phys.numel() == 0

    @property
    def continuous(self) -> bool:
        return bool(getattr(self.session, "admits", False))

    def can_admit(self) -> bool:
        """New groups can join now: the session admits mid-flight, or it has no live row left."""
        return self.empty or self.continuous

    def admit(self, groups: list) -> None:
        """Prefill the conditions of ``groups`` into the batch; their logical rows follow the current ones,
        in order, ``g.rows`` each."""
        conds, counts = [g.condition for g in groups], [g.rows for g in groups]
        if self.share:
            first: dict[int, int] = {}  # id(condition) -> its new row: the same object is the same condition
            for c in conds:
                first.setdefault(id(c), len(first))
            distinct = list({id(c): c for c in conds}.values())
            new_phys = torch.tensor([first[id(c)] for c, k in zip(conds, counts) for _ in range(k)],
                                    device=self.device)
            conds, counts = distinct, [1] * len(distinct)
        else:
            new_phys = torch.arange(sum(counts), device=self.device)
        if self.empty:
            first = 1 if self._one_by_one(conds) else len(conds)
            self.session = self._start(conds[:first], counts[:first])
            self.phys, self.half, self.logits = new_phys, sum(counts[:first]), self.session.prefill()
            conds, counts = conds[first:], counts[first:]
        else:
            self.phys = torch.cat([self.phys, new_phys + self.half])
        if conds:
            added = sum(counts)
            self.logits = _join(self.logits, self.session.admit(conds, counts), self.half, added, self.guided)
            self.half += added
        self.contiguous = not self.share

    def _one_by_one(self, conds: list) -> bool:
        """Without ``start_batch`` a session starts with the first condition and admits the others."""
        return len(conds) > 1 and getattr(self.model, "start_batch", None) is None

    def _start(self, conds: list, counts: list[int]):
        model = self.model
        if len(conds) == 1 and not self.share:
            return model.start(conds[0], counts[0], guidance=self.guided)
        return model.start_batch(conds, counts) if self.guided else model.start_batch(conds, counts, guidance=False)

    def rows_of(self, offset: int, m: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The conditional and unconditional logits of logical rows ``offset .. offset+m-1``."""
        logits = self.logits
        if self.contiguous:
            cond = logits[offset: offset + m]
            return cond, (logits[self.half + offset: self.half + offset + m] if self.guided else None)
        mine = self.phys[offset: offset + m]
        return logits.index_select(0, mine), (logits.index_select(0, mine + self.half) if self.guided else None)

    def advance(self, kept: list[torch.Tensor], tokens: list[torch.Tensor], changed: bool) -> None:
        """Feed one token to every logical row that stays (``kept``: logical rows, ``tokens``: theirs) and
        decode the next logits; rows not kept leave the session. ``changed``: some row left, moved or was
        copied since the last step."""
        if not kept:
            self.phys = self.phys[:0]
            self.session, self.logits, self.half = None, None, 0
            return
        logical, fed = torch.cat(kept), torch.cat(tokens)
        source = self.phys.index_select(0, logical) if changed or self.share else self.phys
        if self.share:  # the next distinct histories: (row it continues, token it appends); exact, no hashing
            vocab = self.logits.shape[1]
            keys, self.phys = torch.unique(source * vocab + fed, return_inverse=True)  # reads back the count
            source, fed = keys // vocab, keys % vocab
            changed = source.shape[0] != self.half or not bool(
                (source == torch.arange(self.half, device=self.device)).all())
        elif changed:
            self.phys = torch.arange(source.shape[0], device=self.device)
        if changed:
            self.session.keep(source)  # drops dead rows, copies the histories that split
        self.half = source.shape[0]
        self.logits = self.session.step(fed)


def _join(old: torch.Tensor, new: torch.Tensor, half: int, added: int, guided: bool) -> torch.Tensor:
    """Logits of the current rows and of newly admitted ones in the session's layout: every conditional row,
    then every unconditional one."""
    if not guided:
        return torch.cat([old, new])
    return torch.cat([old[:half], new[:added], old[half:], new[added:]])
