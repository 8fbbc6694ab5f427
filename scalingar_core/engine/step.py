"""The host side of one step of v3 Algorithm 1, and the groups and cohorts it steps.

A **group** is one image being chosen: a condition with its settings and N trajectories. Groups that join the
batch together with one plan form a **cohort**: their state is stacked ``[G, N]`` on the model's device and
one call of :func:`~.kernel.advance` (eqs. 5–10 (v1 5–15)) steps them all. :func:`step` feeds it the
cohort's logits, reads back which rows leave (the one read-back per step), removes them as each group's
prune part chooses (:mod:`.parts`: the step never reads a strategy's name), runs the baselines' resampling,
and returns the tokens to feed next and the rows that stay.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..errors import NonFiniteError
from ..models.device import check_trajectories
from ..models.protocol import ARModel
from . import baselines
from .compiled import engine_math
from .confidence import block_schedule
from .config import RunConfig
from .gate import HARD_FAIL, KEEP, REASONS, GateClock
from .history import TRACE_SIGNALS, TRACE_STATE, History, map_fields
from .kernel import NON_FINITE, EngineState, Plan, spread, finite_rows  # noqa: F401  (finite_rows: re-exported)
from .parts import Strategy, compose
from .sampling import stream_table
from .token_signals import extra_signals
from .trace import Trace


@dataclass
class Resolved:
    """Sampling settings after the model's own defaults fill the gaps."""

    num_trajectories: int
    temperature: float
    top_k: int
    top_p: float
    cfg_scale: float

    @classmethod
    def of(cls, config: RunConfig, model: ARModel, single: bool) -> "Resolved":
        s, d = config.sampling, model.defaults
        s.check_vocab(model.vocab_size)
        pick = lambda value, default: default if value is None else value  # noqa: E731
        n = 1 if single else s.num_trajectories
        check_trajectories(model, n)
        return cls(n, pick(s.temperature, d.temperature), pick(s.top_k, d.top_k), pick(s.top_p, d.top_p),
                   pick(s.cfg_scale, d.cfg_scale))


@dataclass
class StepEvent:
    """Passed to the callback once per decoded token. ``snapshot()`` copies live values to the host."""

    step: int
    total: int
    _snapshot: Callable[[], dict]

    def snapshot(self) -> dict:
        return self._snapshot()


@dataclass
class GenerationResult:
    image: torch.Tensor  # [3, H, W] selected
    images: torch.Tensor | None  # [N, 3, H, W] every candidate, removed ones marked
    selected: int
    codes: torch.Tensor  # [N, T], −1 where not generated
    trace: Trace
    tokens_generated: int
    scores: list[float] = field(default_factory=list)  # the final selection score of each trajectory
    decoded: torch.Tensor | None = None  # [N, 3, H, W] every candidate as decoded, before marking (entropy map)


class Group:
    """One image being chosen: its condition, parts, and the host side of its N trajectories (which are
    live, what left and why, the events). Its tensors live in its :class:`Cohort`.

    ``given`` ``[N, T]`` C traces replace the confidence profile (the gate's replay)."""

    def __init__(self, model: ARModel, condition: Any, config: RunConfig, reward=None, observe: bool = True,
                 callback=None, given: torch.Tensor | None = None, key: Any = None, extra_signals: bool = False):
        self.model, self.condition, self.config, self.callback, self.key = model, condition, config, callback, key
        self.parts: Strategy = compose(config, reward, observe, tuple(model.grid))
        self.s = Resolved.of(config, model, self.parts.single)
        self.device = torch.device(model.device)
        h, w = model.grid
        self.steps = h * w
        parts = self.parts
        self.observe = parts.observe
        self.extra_signals = extra_signals and self.observe  # the bench's signals beyond the paper's (NOT IN THE PAPER)
        # Upstream samples CFG <= 1 from the conditional rows alone. The unconditional rows stay when the
        # profile needs them (eq. 7 (9)'s KL) or the scheduler may raise the scale above 1.
        self.guided = self.observe or parts.schedule or self.s.cfg_scale > 1
        observing = "given" if given is not None else ("profile" if self.observe else None)
        gate = config.gate if parts.gated else None
        self.plan = Plan(observing, config.profile, gate, GateClock.of(gate, self.steps) if gate else None,
                         config.scheduler if parts.schedule else None, self.s.cfg_scale, self.s.temperature,
                         self.s.top_k, self.s.top_p)
        self.given = given
        self.ids = torch.arange(self.s.num_trajectories, device=self.device)  # live trajectories, in row order
        self.removed: dict[int, tuple[int, str]] = {}
        self.events: list[dict] = []
        self.tokens = 0
        self.t = 0  # the next step
        self.cohort: Cohort | None = None  # set when the group joins the batch
        self.index = 0  # its place in the cohort

    @property
    def rows(self) -> int:
        """Live trajectories (each is one conditional and, guided, one unconditional model row)."""
        return self.ids.shape[0]

    @property
    def done(self) -> bool:
        return self.t >= self.steps

    @property
    def state(self) -> EngineState:
        """The group's ``[N]`` slice of its cohort's state (views: writing to them writes the cohort's)."""
        return self.cohort.state_of(self.index)

    def live(self, values: torch.Tensor) -> torch.Tensor:
        """The live trajectories' entries of a ``[N]`` state tensor, in the order of the group's rows."""
        return values.index_select(0, self.ids)


class Cohort:
    """Groups that decode side by side with the same plan, trajectory count and step (they join the batch
    together): their state is stacked ``[G, N]`` and one :func:`~.kernel.advance` call steps them all. Each
    group's history, codes and state are views of the cohort's tensors."""

    def __init__(self, groups: list[Group]):
        g = groups[0]
        n, steps, device = g.s.num_trajectories, g.steps, g.device
        self.groups, self.plan, self.steps, self.device, self.n = groups, g.plan, steps, device, n
        model = g.model
        # the step compiles with the model's decode step (one switch: --compile, the node's toggle)
        self.math = engine_math(bool(getattr(model, "compile_decode", False)),
                                getattr(model, "compile_backend", "inductor"), device)
        p = g.config.profile
        self.blocks = (block_schedule(model.grid, p.block_size, p.min_fill, p.worst_fraction, device)
                       if g.plan.observe == "profile" else None)
        self.state = EngineState.fresh(self.plan, (len(groups), n), self.blocks.count.shape[1] if self.blocks else 0,
                                       device)
        names = TRACE_SIGNALS + TRACE_STATE
        self.data = torch.full((len(groups), len(names), n, steps), float("nan"), device=device)
        self.threshold = torch.full((len(groups), steps), float("nan"), device=device)
        self.codes = torch.full((len(groups), n, steps), -1, dtype=torch.long, device=device)
        # every uniform number each group's token draws can use, [G, T, N], drawn once
        self.uniforms = torch.stack([stream_table(x.config.sampling.seed, n, steps, device) for x in groups])
        self.given = None if g.given is None else torch.stack([x.given for x in groups])
        self.clock = torch.arange(steps, device=device)  # step t as a device tensor: clock[t]
        self.t = 0
        for j, x in enumerate(groups):
            x.cohort, x.index = self, j
            x.history = History(n, steps, device, self.data[j], self.threshold[j])
            x.codes = self.codes[j]
        history = groups[0].history
        self.c_hist, self.i_hist = self.data[:, history.slot("C")], self.data[:, history.slot("I")]
        self.record_rows = torch.tensor([history.slot(k) for k in self.plan.records], device=device)
        self.flat: torch.Tensor | None = None  # [rows] each live row's place in [G·N], once a row has left
        self._logits: tuple[torch.Tensor, torch.Tensor | None] | None = None  # [G·N, V] once rows have left

    @staticmethod
    def key(g: Group) -> tuple:
        """Groups with equal keys that join together form one cohort."""
        return g.plan, g.s.num_trajectories, g.extra_signals, g.given is None

    @property
    def rows(self) -> int:
        return sum(g.rows for g in self.groups)

    @property
    def done(self) -> bool:
        return self.t >= self.steps

    def state_of(self, j: int) -> EngineState:
        st = self.state
        pick = lambda obj: None if obj is None else map_fields(lambda x: x[j], obj)  # noqa: E731
        return EngineState(st.live[j], st.cfg[j], pick(st.profile), pick(st.gate), st.theta[j])


def step(co: Cohort, cond: torch.Tensor, uncond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One step of Algorithm 1 for every group of a cohort, on the logits of its rows: ``cond`` ``[m, V]``
    and ``uncond`` (None without guidance), groups in order. Returns the tokens to feed next, already
    following the rows kept, and those rows (indices into the cohort's current rows; None = all kept, in
    order). Advances the cohort and its groups by one step."""
    t, g0 = co.t, co.groups[0]
    compact = co.flat is not None and co.math.compact
    if not compact:
        cond, uncond = _dense(co, cond, uncond)
    co.state, out = co.math.advance(co.plan, co.blocks, co.state, co.clock[t], cond, uncond, co.uniforms,
                                    co.c_hist, co.i_hist, co.given, at=t, rows=co.flat if compact else None)
    co.data[..., t].index_copy_(1, co.record_rows, out.records)  # one scatter for the step's records
    if g0.extra_signals:
        flat = lambda x: x if compact else x.flatten(0, 1)  # noqa: E731  (one row per live trajectory, or all)
        tokens = out.tokens.flatten()
        extra = extra_signals(flat(cond), None if uncond is None else flat(uncond), flat(out.guided),
                              (tokens.index_select(0, co.flat) if compact else tokens).clamp_min(0), g0.s.temperature)
        rows = co.flat if compact else None
        for k, v in extra.items():
            v = spread(v, rows, co.state.live, float("nan")).view(co.state.live.shape)
            for j, g in enumerate(co.groups):
                g.history.record(t, g.ids, **{k: g.live(v[j])})
    co.codes[..., t] = out.tokens
    if co.plan.gate is not None and t >= co.plan.clock.warmup:
        co.threshold[:, t] = co.state.theta
    leave = out.leave.tolist()  # the one read-back per step: which rows leave the batch
    kept, offset, changed = [], 0, False
    for j, g in enumerate(co.groups):
        m = g.rows
        g.tokens += m
        rows = _leave(g, t, leave[j]) if any(leave[j]) else None
        resample = g.parts.resample
        if resample is not None and t in resample.steps:
            rows = _then(rows, _resample(g, t, resample.score))
        if g.callback is not None:
            g.callback(StepEvent(t, g.steps, lambda t=t, g=g: _snapshot(g, t)))
        g.t = t + 1
        kept.append((offset, m, rows))
        changed |= rows is not None
        offset += m
    co.t = t + 1
    if not changed:
        fed = out.tokens.flatten() if co.flat is None else out.tokens.flatten().index_select(0, co.flat)
        return fed, None
    rows = torch.cat([torch.arange(offset, offset + m, device=co.device) if rows is None else rows + offset
                      for offset, m, rows in kept])
    source = (co.flat if co.flat is not None else torch.arange(offset, device=co.device)).index_select(0, rows)
    co.flat = torch.cat([g.ids + j * co.n for j, g in enumerate(co.groups)])  # where each row now lives
    return out.tokens.flatten().index_select(0, source), rows


def _dense(co: Cohort, cond: torch.Tensor, uncond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The step's logits as ``[G, N, V]``, indexed by group and trajectory: removed trajectories hold zeros."""
    shape = (len(co.groups), co.n, cond.shape[1])
    if co.flat is None:
        return cond.view(shape), None if uncond is None else uncond.view(shape)  # every trajectory live, in order
    if co._logits is None:
        co._logits = (cond.new_zeros(shape), None if uncond is None else uncond.new_zeros(shape))
    dense_c, dense_u = co._logits
    dense_c.view(-1, shape[2]).index_copy_(0, co.flat, cond)
    if uncond is not None:
        dense_u.view(-1, shape[2]).index_copy_(0, co.flat, uncond)
    return dense_c, dense_u


def _leave(g: Group, t: int, leave: list[int]) -> torch.Tensor | None:
    """Remove the rows ``leave`` names: non-finite ones first, whatever the survivors guard says; then the
    gate's, as the strategy's prune part chooses. Returns the rows kept."""
    ids = g.ids.tolist()
    bad = [i for i, j in enumerate(ids) if leave[j] == NON_FINITE]
    rows = None
    if bad:
        if len(bad) == len(ids):
            raise NonFiniteError(_nonfinite_message(g, t, len(ids)))
        g.events.append({"step": t, "type": "non_finite", "trajectories": [ids[i] for i in bad]})
        rows = _remove(g, t, bad, [HARD_FAIL] * len(bad))
        ids = g.ids.tolist()
    victims = [i for i, j in enumerate(ids) if leave[j] not in (KEEP, NON_FINITE)]
    if victims:
        victims, why = g.parts.prune.choose(g, t, victims, [leave[ids[v]] for v in victims])
        if victims:
            rows = _then(rows, _remove(g, t, victims, why))
    return rows


def _remove(g: Group, t: int, rows: list[int], reasons: list[int]) -> torch.Tensor:
    """Rows ``rows`` (indices into the group's current rows) leave for ``reasons``; their values leave the
    rolling normalisations at once. Returns the rows kept."""
    ids = g.ids.tolist()
    for v, r in zip(rows, reasons):
        g.removed[ids[v]] = (t, REASONS[r])
    gone = set(rows)
    kept = torch.tensor([i for i in range(len(ids)) if i not in gone], device=g.device)
    dead = torch.tensor([ids[v] for v in rows], device=g.device)
    state = g.state
    state.live[dead] = False
    if state.profile is not None:
        state.profile.forget(dead)
    g.ids = g.ids.index_select(0, kept)
    return kept


def _nonfinite_message(g: Group, t: int, remaining: int) -> str:
    m = g.model
    return (f"every remaining trajectory ({remaining} of {g.s.num_trajectories}) produced NaN or infinite "
            f"logits at step {t} of {g.steps} ({getattr(m, 'name', type(m).__name__)}, weights in "
            f"{weights_dtype(m)} on {m.device}, base CFG {g.s.cfg_scale}): there is no image to choose. "
            f"Try bf16 or fp32 instead of fp16 (fp16 overflows in large models), a lower CFG scale, or "
            f"fetch the weights again (a corrupt weight gives NaN)")


def _resample(g: Group, t: int, score: Callable) -> torch.Tensor:
    scores = score(g, t + 1)
    base = g.config.baseline
    weights = baselines.finite_weights(scores, base.is_lambda, base.is_scores == "standardised")
    parents = baselines.resample(weights, g.config.sampling.seed, t)
    src = g.ids.index_select(0, parents)
    g.history.copy_rows(g.ids, src, t)
    g.codes[g.ids, : t + 1] = g.codes[src, : t + 1]  # advanced indexing already copies
    g.events.append({"step": t, "type": "resample", "parents": src.tolist(), "scores": scores.tolist()})
    state = g.state
    if state.profile is not None:
        state.profile.copy_rows(g.ids, src)
    state.cfg[g.ids] = state.cfg[src]
    return parents  # ids stay the slots 0..N-1; each slot now continues its parent's prefix


def _snapshot(g: Group, t: int) -> dict:
    theta = float(g.history.threshold[t]) if g.plan.gate is not None else float("nan")
    profile = g.state.profile
    return {
        "step": t, "total": g.steps, "num_trajectories": g.s.num_trajectories, "ids": g.ids.tolist(),
        "C": g.live(profile.c).tolist() if profile is not None else [],
        "cfg": g.live(g.state.cfg).tolist(),
        "theta": None if theta != theta else theta,
        "removed": [{"index": i, "step": s, "reason": r} for i, (s, r) in sorted(g.removed.items())],
    }


def finish(g: Group) -> GenerationResult:
    """Select among the survivors and build the trace (the images are decoded by the loop)."""
    scores = g.parts.select(g, g.steps)
    best = best_finite(scores)
    if best is None:
        raise NonFiniteError(f"none of the {len(scores)} finished candidates has a finite score "
                             f"({g.parts.name}): check the reward function, it returned NaN or infinity")
    selected = int(g.ids[best])
    n = g.s.num_trajectories
    all_scores = [float("nan")] * n
    for i, sc in zip(g.ids.tolist(), scores.tolist()):
        all_scores[i] = sc
    alive = [g.steps if i not in g.removed else g.removed[i][0] + 1 for i in range(n)]
    trace = Trace.from_history(
        g.history.to_host(), g.history.threshold.cpu().tolist(), alive, g.removed, selected,
        config=_config_record(g), grid=tuple(g.model.grid), vocab_size=g.model.vocab_size,
        num_trajectories=n, seed=g.config.sampling.seed, steps=g.steps,
        strategy=g.parts.name, tokens_generated=g.tokens)
    trace.events = g.events
    return GenerationResult(image=None, images=None, selected=selected, codes=g.codes.cpu(), trace=trace,
                            tokens_generated=g.tokens, scores=all_scores)


def _config_record(g: Group) -> dict:
    record = g.config.to_dict()
    resample = g.parts.resample
    record["resolved"] = {
        "model": getattr(g.model, "name", type(g.model).__name__),
        "num_trajectories": g.s.num_trajectories, "temperature": g.s.temperature, "top_k": g.s.top_k,
        "top_p": g.s.top_p, "cfg_scale": g.s.cfg_scale, "steps": g.steps,
        "warmup_steps": g.plan.clock.warmup if g.plan.clock else None,
        "protection_steps": g.plan.clock.protect if g.plan.clock else None,
        "profile": g.observe, "gate": g.plan.gate is not None, "scheduler": g.plan.scheduler is not None,
        "is_steps": sorted(resample.steps) if resample else [],
    }
    return record


def _then(first: torch.Tensor | None, second: torch.Tensor | None) -> torch.Tensor | None:
    """Two successive row selections of one step as one (``second`` indexes the rows ``first`` kept)."""
    if first is None or second is None:
        return second if first is None else first
    return first.index_select(0, second)


def best_finite(scores: torch.Tensor) -> int | None:
    """Index of the highest finite score (None if there is none): NaN would win a plain argmax."""
    finite = torch.isfinite(scores)
    if not bool(finite.any()):
        return None
    return int(torch.where(finite, scores.float(), float("-inf")).argmax())


def weights_dtype(model) -> str:
    """The dtype of a model's weights, for error messages (its first floating tensor or module)."""
    for value in vars(model).values():
        tensors = value.parameters() if isinstance(value, torch.nn.Module) else [value]
        for tensor in tensors:
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
                return str(tensor.dtype).removeprefix("torch.")
    return "an unknown dtype"
