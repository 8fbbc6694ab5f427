"""Watching a model's decode sessions from a test."""
from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def step_rows(model):
    """Yield a list that collects the number of trajectories of every ``step`` of every session ``model``
    starts inside the block (to see a session shrink when the gate removes trajectories)."""
    seen: list[int] = []
    start = model.start

    def spy(condition, n, **kw):
        session = start(condition, n, **kw)
        step = session.step
        session.step = lambda tokens: seen.append(len(tokens)) or step(tokens)
        return session

    model.start = spy
    try:
        yield seen
    finally:
        del model.start
