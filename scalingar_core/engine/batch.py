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

    def admit(self, groups: list) -> list:
        """Prefill the conditions of ``groups`` into the batch; their logical rows follow the current ones,
        in order, ``g.rows`` each. Returns the groups that must wait: a model with neither ``start_batch`` nor
        sessions that admit decodes one group per session (Janus-Pro: lock-step, one image at a time)."""
        if not self.empty:
            self._append(groups)
            return []
        if len(groups) > 1 and getattr(self.model, "start_batch", None) is None:
            self._open(groups[:1])  # a session starts with one condition, and admits the others if it can
            if not self.continuous:
                return groups[1:]
            self._append(groups[1:])
            return []
        self._open(groups)
        return []

    def _layout(self, groups: list) -> tuple[list, list[int], torch.Tensor]:
        """The distinct conditions to prefill, their row counts, and each new logical row's new session row."""
        conds, counts = [g.condition for g in groups], [g.rows for g in groups]
        if not self.share:
            return conds, counts, torch.arange(sum(counts), device=self.device)
        first: dict[int, int] = {}  # id(condition) -> its new row: the same object is the same condition
        for c in conds:
            first.setdefault(id(c), len(first))
        rows = torch.tensor([first[id(c)] for c, k in zip(conds, counts) for _ in range(k)], device=self.device)
        return list({id(c): c for c in conds}.values()), [1] * len(first), rows

    def _open(self, groups: list) -> None:
        conds, counts, rows = self._layout(groups)
        self.session = self._start(conds, counts)
        self.phys, self.half, self.logits = rows, sum(counts), self.session.prefill()
        self.contiguous = not self.share

    def _append(self, groups: list) -> None:
        if not groups:
            return
        conds, counts, rows = self._layout(groups)
        added = sum(counts)
        self.phys = torch.cat([self.phys, rows + self.half])
        self.logits = _join(self.logits, self.session.admit(conds, counts), self.half, added, self.guided)
        self.half += added

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

    def advance(self, kept: list, tokens: list[torch.Tensor], changed: bool) -> None:
        """Feed one token to every logical row that stays (``kept``: logical rows, as tensors when
        ``changed`` or sharing, else every row in order; ``tokens``: theirs) and decode the next logits; rows
        not kept leave the session. ``changed``: some row left, moved or was copied since the last step."""
        if not kept:
            self.phys = self.phys[:0]
            self.session, self.logits, self.half = None, None, 0
            return
        fed = tokens[0] if len(tokens) == 1 else torch.cat(tokens)
        source = self.phys.index_select(0, torch.cat(kept)) if changed or self.share else self.phys
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
