"""The one decode loop (v3 Algorithm 1 over many groups): admit groups into the batch (neighbours with one
plan as a cohort), give every cohort its rows' logits, run one :func:`~.step.step` per cohort, feed the
tokens back, finish the groups that are done.

``generate`` (one image), ``generate_batch`` (the bench: many images in lock-step) and the queue of prompt
files (continuous batching: new groups join as pruned or finished ones free rows) all run :func:`run`; the
gate's replay does too (:mod:`.replay`).

Same results whatever the batching: a group's random numbers are its own (counter-based per seed,
trajectory and step), admission is in order and deterministic, and a group's decisions read only its own
rows. Batched matmuls may round differently with the batch's composition, so logits agree to rounding.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Iterable, Iterator

import torch

from ..models.protocol import ARModel
from .batch import RowBatch
from .config import RunConfig
from .images import decode_partial, mark_removed
from .step import (  # noqa: F401
    Cohort,
    GenerationResult,
    Group,
    Resolved,
    StepEvent,
    best_finite,
    finish,
    finite_rows,
    step,
    weights_dtype,
)


def run(model: ARModel, groups: Iterable[Group], max_rows: int | None = None, share: bool = False,
        guided: bool | None = None) -> Iterator[tuple[Group, GenerationResult]]:
    """Decode ``groups`` and yield ``(group, result)`` as each finishes (results are not decoded to images).

    At most ``max_rows`` trajectories are live at once (None: no limit, every group starts together).
    Groups are admitted in order, as soon as their N trajectories fit; neighbours admitted together with the
    same plan and N form a :class:`~.step.Cohort` and share one engine step. ``share`` decodes rows with the same
    condition and token history once (see :mod:`.batch`). ``guided``: whether the session keeps
    unconditional rows (default: whether any group needs them)."""
    pending = deque(groups)
    if guided is None:
        guided = any(g.guided for g in pending)
    for g in pending:
        if max_rows is not None and g.rows > max_rows:
            raise ValueError(f"max_rows={max_rows} is smaller than one image's {g.rows} trajectories: use "
                             f"max_rows >= num_trajectories")
    batch = RowBatch(model, guided, share)
    active: list[Cohort] = []
    while pending or active:
        live = sum(c.rows for c in active)
        joining = []
        while pending and batch.can_admit() and (max_rows is None or live + pending[0].rows <= max_rows):
            live += pending[0].rows
            joining.append(pending.popleft())
        if joining:
            waiting = batch.admit(joining)
            pending.extendleft(reversed(waiting))
            active += cohorts(joining[: len(joining) - len(waiting)])
        offset, kept, tokens, changed, still = 0, [], [], False, []
        for co in active:
            m = co.rows
            cond, uncond = batch.rows_of(offset, m)
            fed, rows = step(co, cond, uncond if co.groups[0].guided else None)
            if co.done:
                changed = True
                for g in co.groups:
                    yield g, finish(g)
            else:
                kept.append((offset, m, rows))
                tokens.append(fed)
                changed |= rows is not None
                still.append(co)
            offset += m
        active = still
        if changed or share:  # which logical rows stay (else: all of them, in order)
            kept = [_rows(offset, m, rows, batch.device) for offset, m, rows in kept]
        batch.advance(kept, tokens, changed)


def _rows(offset: int, m: int, rows: torch.Tensor | None, device) -> torch.Tensor:
    own = torch.arange(offset, offset + m, device=device)
    return own if rows is None else own.index_select(0, rows)


def cohorts(groups: list[Group]) -> list[Cohort]:
    """Groups that join together, split into runs of neighbours that can share one engine step."""
    out: list[list[Group]] = []
    for g in groups:
        if out and Cohort.key(out[-1][0]) == Cohort.key(g):
            out[-1].append(g)
        else:
            out.append([g])
    return [Cohort(run) for run in out]


def _start_groups(model: ARModel, conditions: list, configs: list[RunConfig], rewards: list | None,
                  extra_signals: bool = False) -> list[Group]:
    rewards = rewards or [None] * len(configs)
    return [Group(model, c, cfg, r, key=i, extra_signals=extra_signals)
            for i, (c, cfg, r) in enumerate(zip(conditions, configs, rewards))]


@torch.inference_mode()
def generate(model: ARModel, condition: Any, config: RunConfig | None = None, callback=None, reward=None,
             observe: bool = True, decode_all: bool = True) -> GenerationResult:
    """Generate one image with ``config.strategy`` and return it with every candidate and the trace.

    ``reward`` (images → scores) replaces the intrinsic score of Best-of-N and importance sampling.
    ``observe=False`` skips the confidence profile where the strategy does not need it (plain sampling
    at full speed). ``decode_all=False`` decodes only the selected image."""
    group = Group(model, condition, config or RunConfig(), reward, observe, callback)
    ((_, result),) = run(model, [group])
    return decoded(model, result, decode_all)


@torch.inference_mode()
def generate_batch(model: ARModel, conditions: list, configs: list[RunConfig], rewards: list | None = None,
                   decode_all: bool = True, max_rows: int | None = None,
                   extra_signals: bool = False) -> list[GenerationResult]:
    """Several independent generations decoded together: one model forward per step for all of them (a
    small model on a CPU is bound by per-operation overhead, not by rows). Each keeps its own profile, gate,
    scheduler, random streams and trace.

    Rows with the same condition object and the same token history are decoded once (see :mod:`.batch`),
    except with a compiled decode step (a steady batch size, so no recompilation). A model without
    ``start_batch`` runs the groups one at a time. The tokens equal a one-at-a-time run's up to floating-point
    rounding in the batched matmuls. ``extra_signals`` also records the signals of :mod:`.token_signals`
    (not in the paper; the bench's signal report reads them)."""
    groups = _start_groups(model, conditions, configs, rewards, extra_signals)
    batched = getattr(model, "start_batch", None) is not None and len(groups) > 1 and all(g.guided for g in groups)
    if not batched:
        max_rows = max(g.rows for g in groups)  # one group at a time
    share = batched and not getattr(model, "compile_decode", False)
    results: dict[int, GenerationResult] = {}
    for group, result in run(model, groups, max_rows=max_rows, share=share, guided=True if batched else None):
        results[group.key] = decoded(model, result, decode_all)
    return [results[i] for i in range(len(groups))]


def decoded(model: ARModel, result: GenerationResult, decode_all: bool) -> GenerationResult:
    """Decode the selected image (and, with ``decode_all``, every candidate, removed ones marked)."""
    device = torch.device(model.device)
    if decode_all:
        images = decode_partial(model, result.codes.to(device)).cpu()
        result.image = images[result.selected].clone()
        result.decoded = images.clone()
        for record in result.trace.trajectories:
            if record.removed_at is not None:
                images[record.index] = mark_removed(images[record.index])
        result.images = images
    else:
        chosen = result.codes[result.selected: result.selected + 1].to(device)
        result.image = decode_partial(model, chosen)[0].cpu()
    return result


__all__ = ["GenerationResult", "Group", "Resolved", "StepEvent", "best_finite", "decoded", "finite_rows",
           "generate", "generate_batch", "run", "weights_dtype"]
