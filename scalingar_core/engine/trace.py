"""The record of one generation: every signal and state value per trajectory and step, as JSON."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .. import files
from .history import TRACE_SIGNALS, TRACE_STATE


def _clean(x: float) -> float | None:
    """NaN (not recorded) and ±inf (a broken row) become None: JSON has no such numbers."""
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def json_safe(value):
    """NaN/inf -> None throughout nested dicts and lists: Python's json writes a bare NaN that JSON parsers
    (and the browser's JSON.parse) reject."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


@dataclass
class TrajectoryRecord:
    index: int
    removed_at: int | None = None
    removed_reason: str | None = None
    selected: bool = False
    signals: dict[str, list] = field(default_factory=dict)
    state: dict[str, list] = field(default_factory=dict)


@dataclass
class Trace:
    config: dict
    grid: tuple[int, int]
    vocab_size: int
    num_trajectories: int
    seed: int
    steps: int
    strategy: str
    tokens_generated: int
    threshold: list
    trajectories: list[TrajectoryRecord]
    events: list[dict] = field(default_factory=list)  # resampling points etc. (not part of the core schema)

    @classmethod
    def from_history(cls, history: dict[str, list[list[float]]], threshold: list[float], alive_steps: list[int],
                     removed: dict[int, tuple[int, str]], selected: int, **meta) -> "Trace":
        """Builds the per-trajectory lists, each covering the steps that trajectory was alive."""
        records = []
        for i, n_steps in enumerate(alive_steps):
            at, why = removed.get(i, (None, None))
            records.append(TrajectoryRecord(
                index=i, removed_at=at, removed_reason=why, selected=i == selected,
                signals={k: [_clean(v) for v in history[k][i][:n_steps]] for k in TRACE_SIGNALS},
                state={k: [_clean(v) for v in history[k][i][:n_steps]] for k in TRACE_STATE}))
        return cls(threshold=[_clean(v) for v in threshold], trajectories=records, **meta)

    @property
    def selected(self) -> int:
        return next(r.index for r in self.trajectories if r.selected)

    def to_dict(self) -> dict:
        return {
            "config": self.config, "grid": list(self.grid), "vocab_size": self.vocab_size,
            "num_trajectories": self.num_trajectories, "seed": self.seed, "steps": self.steps,
            "strategy": self.strategy, "tokens_generated": self.tokens_generated, "threshold": self.threshold,
            "trajectories": [
                {"index": r.index, "removed_at": r.removed_at, "removed_reason": r.removed_reason,
                 "selected": r.selected, "signals": r.signals, "state": r.state}
                for r in self.trajectories],
            "events": self.events,
        }

    def summary(self) -> dict:
        """Compact form for UIs: C and CFG per trajectory, θ, removals."""
        return {
            "steps": self.steps, "num_trajectories": self.num_trajectories, "strategy": self.strategy,
            "selected": self.selected, "threshold": self.threshold, "tokens_generated": self.tokens_generated,
            "trajectories": [
                {"index": r.index, "removed_at": r.removed_at, "removed_reason": r.removed_reason,
                 "selected": r.selected, "C": r.state["C"], "cfg": r.state["cfg"]}
                for r in self.trajectories],
        }

    def save_json(self, path: str | Path) -> Path:
        """Strict JSON (no NaN), written atomically: an interrupted save leaves no truncated file."""
        return files.write_text(path, json.dumps(json_safe(self.to_dict()), allow_nan=False))

    def save_csv(self, path: str | Path) -> Path:
        """One row per (trajectory, step): every signal and state value."""
        names = list(TRACE_SIGNALS) + list(TRACE_STATE)
        lines = [",".join(["trajectory", "step", "threshold", *names])]
        for r in self.trajectories:
            for t in range(len(r.state["C"])):
                values = [r.signals[k][t] if k in r.signals else r.state[k][t] for k in names]
                theta = self.threshold[t] if t < len(self.threshold) else None
                lines.append(",".join(str(v) if v is not None else "" for v in [r.index, t, theta, *values]))
        return files.write_text(path, "\n".join(lines) + "\n")
