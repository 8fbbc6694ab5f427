"""The batched NTP sampler: N trajectories decoded together, observed by the confidence profile, steered by
the guidance scheduler and pruned by the termination gate (v3 Algorithm 1); the baselines run on it too.

One step: (I) signals and state from the step's logits, (II) per-trajectory CFG and a token per trajectory,
(III) threshold update and pruning. Removed trajectories leave the batch and the KV cache, so later steps
cost less. The only host read-backs in the loop are the gate's decision (once per step after the protection
horizon, to know which rows to drop) and what a callback asks for.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..errors import NonFiniteError
from ..models.device import check_trajectories
from ..models.protocol import ARModel
from . import baselines
from .confidence import ConfidenceProfile
from .config import RunConfig
from .gate import HARD_FAIL, KEEP, REASONS, TerminationGate
from .history import History
from .images import decode_partial, mark_removed
from .sampling import guided_logits, sample_tokens, stream_table
from .scheduler import GuidanceScheduler
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
    def of(cls, config: RunConfig, model: ARModel) -> "Resolved":
        s, d = config.sampling, model.defaults
        s.check_vocab(model.vocab_size)
        pick = lambda value, default: default if value is None else value  # noqa: E731
        n = 1 if config.strategy == "plain" else s.num_trajectories
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


class _Run:
    """One generation. Kept as an object so the step loop reads like Algorithm 1."""

    def __init__(self, model: ARModel, condition: Any, config: RunConfig, reward, observe: bool):
        self.model, self.condition, self.config, self.reward = model, condition, config, reward
        self.s = Resolved.of(config, model)
        self.device = torch.device(model.device)
        h, w = model.grid
        self.steps = h * w
        n = self.s.num_trajectories
        strategy = config.strategy
        pruning = strategy in ("scalingar", "random_prune")
        self.use_gate = pruning and config.gate.enabled
        self.use_scheduler = pruning and config.scheduler.enabled
        needs_profile = pruning or (strategy in ("best_of_n", "importance_sampling") and reward is None)
        self.observe = observe or needs_profile
        # Upstream samples CFG <= 1 from the conditional rows alone. The unconditional rows stay when the
        # profile needs them (eq. 9's KL) or the scheduler may raise the scale above 1.
        self.guided = self.observe or self.use_scheduler or self.s.cfg_scale > 1
        self.history = History(n, self.steps, self.device)
        self.profile = ConfidenceProfile(config.profile, model.grid, n, self.device, self.history) if self.observe else None
        self.gate = TerminationGate(config.gate, self.steps, n, self.device, self.history) if self.use_gate else None
        self.scheduler = GuidanceScheduler(config.scheduler, self.s.cfg_scale, self.history) if self.use_scheduler else None
        self.is_steps = (set(baselines.resample_steps(config.baseline.is_fractions, model.grid))
                         if strategy == "importance_sampling" else set())
        self.ids = torch.arange(n, device=self.device)
        self.cfg = torch.full((n,), float(self.s.cfg_scale), device=self.device)
        self.codes = torch.full((n, self.steps), -1, dtype=torch.long, device=self.device)
        self.removed: dict[int, tuple[int, str]] = {}
        self.events: list[dict] = []
        self.tokens = 0
        self.uniforms: torch.Tensor | None = None
        self.state = None  # the profile's state after the latest step

    # ------------------------------------------------------------------ the loop
    def run(self, callback) -> GenerationResult:
        session = self.model.start(self.condition, self.s.num_trajectories, guidance=self.guided)
        logits = session.prefill()
        for t in range(self.steps):
            tokens, rows = self.advance(t, logits, callback)
            if t == self.steps - 1:
                break
            if rows is not None:
                session.keep(rows)
            logits = session.step(tokens)
        return self.finish()

    def advance(self, t: int, logits: torch.Tensor, callback=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One step of Algorithm 1 on this run's logits (``[cond rows; uncond rows]``, or the conditional
        rows alone without guidance). Returns the tokens to feed next, already following the rows kept, and
        those rows (indices into the current batch; None = all kept, in order)."""
        if self.uniforms is None:
            self.uniforms = stream_table(self.config.sampling.seed, self.s.num_trajectories, self.steps,
                                         self.device)  # [T, N], drawn once
        m = self.ids.shape[0]
        cond, uncond = (logits[:m], logits[m:]) if self.guided else (logits, None)
        # Stage I: signals and state
        state = self.profile.step(t, self.ids, cond, uncond, self.cfg, self.s.temperature) if self.observe else None
        self.state = state
        # Stage II: per-trajectory guidance, then one token each
        if self.scheduler is not None:
            self.cfg = self.scheduler.step(t, self.ids, self.cfg, state.d_hat, state.r)
        guided = cond if uncond is None else guided_logits(cond, uncond, self.cfg)
        tokens, logprob = sample_tokens(guided, self.s.temperature, self.s.top_k, self.s.top_p,
                                        self.uniforms[t].index_select(0, self.ids))
        recorded = {"cfg": self.cfg}
        if self.observe:
            recorded.update(token_logprob=logprob, **extra_signals(cond, uncond, guided, tokens, self.s.temperature))
        self.history.record(t, self.ids, **recorded)  # one scatter for the step's records
        self.codes[self.ids, t] = tokens
        self.tokens += m
        # Stage III: non-finite rows out, then threshold and pruning (or the baselines' resampling)
        rows = self._drop_nonfinite(t, state, guided)
        if self.gate is not None:
            rows = _then(rows, self._prune(t, state))
        if t in self.is_steps:
            rows = _then(rows, self._resample(t, state))
        if callback is not None:
            callback(StepEvent(t, self.steps, lambda t=t, state=state: self._snapshot(t, state)))
        return (tokens if rows is None else tokens.index_select(0, rows)), rows

    def _prune(self, t: int, state) -> torch.Tensor | None:
        if t == self.steps - 1 or self.ids.shape[0] <= self.gate.cfg.min_survivors:
            self.gate.update_threshold(t, self.ids, state.c)  # θ stays in the trace; nobody can leave
            return None
        reason = self.gate.decide(t, self.ids, state.c, state.c_min, state.r)
        if t < self.gate.protect:
            return None
        reasons = reason.tolist()  # the one read-back per step: which rows leave the batch
        victims = [i for i, r in enumerate(reasons) if r != KEEP]
        if not victims:
            return None
        if self.config.strategy == "random_prune":  # same count at the same step, chosen at random
            mask = baselines.random_victims(self.config.sampling.seed, self.ids, t, len(victims)).tolist()
            chosen = [i for i, v in enumerate(mask) if v]
            reasons = [reasons[v] for v in victims]  # reasons follow the count, not the rows
            # the rows the gate condemned but chance spared start a fresh probation; otherwise they stay
            # condemned and the control removes one more row every step
            self.gate.reset([v for v in victims if v not in chosen])
            victims = chosen
        else:
            reasons = [reasons[v] for v in victims]
        ids = self.ids.tolist()
        for v, r in zip(victims, reasons):
            self.removed[ids[v]] = (t, REASONS[r])
        self.profile.forget(self.ids[victims])  # their values leave the rolling normalisations now
        gone = set(victims)
        survivors = [i for i in range(len(ids)) if i not in gone]
        return self._keep(torch.tensor(survivors, device=self.device))

    def _drop_nonfinite(self, t: int, state, guided: torch.Tensor) -> torch.Tensor | None:
        """A trajectory whose logits turned NaN or infinite (fp16 overflow, a bad weight) leaves at once as a
        hard fail, before the gate and whatever its survivors guard says: its C means nothing, so it must
        never be selected, resampled or kept waiting for a recovery. Every strategy runs this check."""
        ok = finite_rows(state.c if state is not None else None, guided)
        if bool(ok.all()):  # one scalar read-back per step
            return None
        ok = ok.tolist()
        ids = self.ids.tolist()
        bad = [ids[i] for i, good in enumerate(ok) if not good]
        if len(bad) == len(ids):
            raise NonFiniteError(self._nonfinite_message(t, len(ids)))
        for i in bad:
            self.removed[i] = (t, REASONS[HARD_FAIL])
        if self.profile is not None:  # their values leave the rolling normalisations now, as the gate's victims'
            self.profile.forget(torch.tensor(bad, device=self.device))
        self.events.append({"step": t, "type": "non_finite", "trajectories": bad})
        return self._keep(torch.tensor([i for i, good in enumerate(ok) if good], device=self.device))

    def _nonfinite_message(self, t: int, remaining: int) -> str:
        m = self.model
        return (f"every remaining trajectory ({remaining} of {self.s.num_trajectories}) produced NaN or infinite "
                f"logits at step {t} of {self.steps} ({getattr(m, 'name', type(m).__name__)}, weights in "
                f"{weights_dtype(m)} on {m.device}, base CFG {self.s.cfg_scale}): there is no image to choose. "
                f"Try bf16 or fp32 instead of fp16 (fp16 overflows in large models), a lower CFG scale, or "
                f"fetch the weights again (a corrupt weight gives NaN)")

    def _resample(self, t: int, state) -> torch.Tensor:
        scores = self._scores(state, t + 1)
        base = self.config.baseline
        weights = baselines.finite_weights(scores, base.is_lambda, base.is_scores == "standardised")
        parents = baselines.resample(weights, self.config.sampling.seed, t)
        src = self.ids.index_select(0, parents)
        self.history.copy_rows(self.ids, src, t)
        self.codes[self.ids, : t + 1] = self.codes[src, : t + 1]  # advanced indexing already copies
        self.events.append({"step": t, "type": "resample", "parents": src.tolist(), "scores": scores.tolist()})
        if self.profile is not None:
            self.profile.state.keep(parents)
            self.profile.copy_pools(self.ids, src)
        self.cfg = self.cfg.index_select(0, parents)
        return parents  # ids stay the slots 0..N-1; each slot now continues its parent's prefix

    def _keep(self, rows: torch.Tensor) -> torch.Tensor:
        self.ids = self.ids.index_select(0, rows)
        self.cfg = self.cfg.index_select(0, rows)
        for part in (self.profile, self.gate):
            if part is not None:
                part.state.keep(rows)
        return rows

    def _scores(self, state, steps_done: int) -> torch.Tensor:
        if self.reward is not None:
            images = decode_partial(self.model, self.codes.index_select(0, self.ids))
            return baselines.reward_scores(self.reward, images, self.device)
        return baselines.intrinsic_score(state, self.config.baseline.score, steps_done)

    def _snapshot(self, t: int, state) -> dict:
        ids = self.ids.tolist()
        theta = float(self.history.threshold[t]) if self.gate is not None else float("nan")
        return {
            "step": t, "total": self.steps, "num_trajectories": self.s.num_trajectories, "ids": ids,
            "C": state.c.tolist() if state is not None else [],
            "cfg": self.cfg.tolist(),
            "theta": None if theta != theta else theta,
            "removed": [{"index": i, "step": s, "reason": r} for i, (s, r) in sorted(self.removed.items())],
        }

    # ------------------------------------------------------------------ the end
    def finish(self) -> GenerationResult:
        state, strategy = self.state, self.config.strategy
        if strategy in ("best_of_n", "importance_sampling"):
            scores = self._scores(state, self.steps)
        elif state is not None and self.config.profile.selection in ("mean", "token_logprob"):
            name = "C" if self.config.profile.selection == "mean" else "token_logprob"
            scores = self.history.buffers[name].index_select(0, self.ids).nanmean(1)  # A16: a mean over the steps
        elif state is not None:
            scores = state.c
        else:
            scores = torch.zeros(self.ids.shape[0], device=self.device)
        best = best_finite(scores)
        if best is None:
            raise NonFiniteError(f"none of the {len(scores)} finished candidates has a finite score "
                                 f"({strategy}): check the reward function, it returned NaN or infinity")
        selected = int(self.ids[best])
        all_scores = [float("nan")] * self.s.num_trajectories
        for i, sc in zip(self.ids.tolist(), scores.tolist()):
            all_scores[i] = sc
        alive = [self.steps if i not in self.removed else self.removed[i][0] + 1 for i in range(self.s.num_trajectories)]
        trace = Trace.from_history(
            self.history.to_host(), self.history.threshold.cpu().tolist(), alive, self.removed, selected,
            config=self._config_record(), grid=tuple(self.model.grid), vocab_size=self.model.vocab_size,
            num_trajectories=self.s.num_trajectories, seed=self.config.sampling.seed, steps=self.steps,
            strategy=strategy, tokens_generated=self.tokens)
        trace.events = self.events
        return GenerationResult(image=None, images=None, selected=selected, codes=self.codes.cpu(), trace=trace,
                                tokens_generated=self.tokens, scores=all_scores)

    def _config_record(self) -> dict:
        record = self.config.to_dict()
        record["resolved"] = {
            "model": getattr(self.model, "name", type(self.model).__name__),
            "num_trajectories": self.s.num_trajectories, "temperature": self.s.temperature, "top_k": self.s.top_k,
            "top_p": self.s.top_p, "cfg_scale": self.s.cfg_scale, "steps": self.steps,
            "warmup_steps": self.gate.warmup if self.gate else None,
            "protection_steps": self.gate.protect if self.gate else None,
            "profile": self.observe, "gate": self.use_gate, "scheduler": self.use_scheduler,
            "is_steps": sorted(self.is_steps),
        }
        return record


def _then(first: torch.Tensor | None, second: torch.Tensor | None) -> torch.Tensor | None:
    """Two successive row selections of one step as one (``second`` indexes the rows ``first`` kept)."""
    if first is None or second is None:
        return second if first is None else first
    return first.index_select(0, second)


def finite_rows(c: torch.Tensor | None, guided: torch.Tensor) -> torch.Tensor:
    """``[n]`` bool: the row's numbers are usable. C is NaN whenever a logit of the row (conditional or
    unconditional) is NaN or infinite; without a profile, the logsumexp of the guided logits is not finite
    when one of them is NaN or +inf or none is finite."""
    return torch.isfinite(c) if c is not None else torch.isfinite(torch.logsumexp(guided, -1))


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


@torch.inference_mode()
def generate(model: ARModel, condition: Any, config: RunConfig | None = None, callback=None, reward=None,
             observe: bool = True, decode_all: bool = True) -> GenerationResult:
    """Generate one image with ``config.strategy`` and return it with every candidate and the trace.

    ``reward`` (images → scores) replaces the intrinsic score of Best-of-N and importance sampling.
    ``observe=False`` skips the confidence profile where the strategy does not need it (plain sampling
    at full speed). ``decode_all=False`` decodes only the selected image."""
    config = config or RunConfig()
    return _decoded(model, _Run(model, condition, config, reward, observe).run(callback), decode_all)


@torch.inference_mode()
def generate_batch(model: ARModel, conditions: list, configs: list[RunConfig], rewards: list | None = None,
                   decode_all: bool = True) -> list[GenerationResult]:
    """Several independent generations decoded in one batch: one model forward per step for all of them
    (a small model on a CPU is bound by per-operation overhead, not by rows). Each run keeps its own profile,
    gate, scheduler, random streams and trace.

    Rows with the same condition object and the same token history have the same logits in both halves, so
    the session decodes each distinct history once and every run reads its rows from there. Methods that
    share a seed draw the same uniforms: Best-of-N, plain, importance sampling and the pruning methods'
    survivors stay on one history until a scheduler's guidance scale makes a different token win, which
    roughly halves the rows of the bench's ten methods. A model that decodes with a compiled step keeps
    one row per trajectory instead (a steady batch size, so no recompilation).

    Needs the model's optional ``start_batch(conditions, counts)`` and runs that all keep the unconditional
    rows; otherwise (and for a single run) the runs go one at a time through :func:`generate`. The tokens
    equal a one-at-a-time run's up to floating-point rounding in the batched matmuls."""
    rewards = rewards or [None] * len(configs)
    runs = [_Run(model, c, cfg, r, True) for c, cfg, r in zip(conditions, configs, rewards)]
    start_batch = getattr(model, "start_batch", None)
    if start_batch is None or len(runs) < 2 or not all(r.guided for r in runs):
        return [generate(model, c, cfg, reward=r, decode_all=decode_all)
                for c, cfg, r in zip(conditions, configs, rewards)]
    device = torch.device(model.device)
    counts = [r.s.num_trajectories for r in runs]
    # A compiled step costs one compilation per batch size, and shared histories change the size at almost
    # every step: share them only when decoding eagerly.
    share = not getattr(model, "compile_decode", False)
    if share:
        first: dict[int, int] = {}  # id(condition) -> its row: the same object is the same condition
        for c in conditions:
            first.setdefault(id(c), len(first))
        session = start_batch(list({id(c): c for c in conditions}.values()), [1] * len(first))
        # phys[j]: the session row that holds logical row j (the runs' live trajectories, in run order)
        phys = torch.tensor([first[id(c)] for c, k in zip(conditions, counts) for _ in range(k)], device=device)
    else:
        session = start_batch(conditions, counts)
        phys = torch.arange(sum(counts), device=device)
    logits = session.prefill()
    steps = runs[0].steps
    for t in range(steps):
        half, vocab = logits.shape[0] // 2, logits.shape[1]
        offset, rows, tokens, compacted = 0, [], [], False
        for run in runs:
            mine = phys[offset: offset + run.ids.shape[0]]
            offset += mine.shape[0]
            next_tokens, kept = run.advance(t, torch.cat([logits.index_select(0, mine),
                                                           logits.index_select(0, mine + half)]))
            rows.append(mine if kept is None else mine.index_select(0, kept))
            tokens.append(next_tokens)
            compacted |= kept is not None
        if t == steps - 1:
            break
        source, fed = torch.cat(rows), torch.cat(tokens)
        if share:  # the next distinct histories: (row it continues, token it appends); exact, no hashing
            keys, phys = torch.unique(source * vocab + fed, return_inverse=True)  # reads back the count
            source, fed = keys // vocab, keys % vocab
            compacted = source.shape[0] != half or not bool((source == torch.arange(half, device=device)).all())
        elif compacted:
            phys = torch.arange(source.shape[0], device=device)
        if compacted:
            session.keep(source)  # drops dead rows, copies the histories that split
        logits = session.step(fed)
    return [_decoded(model, run.finish(), decode_all) for run in runs]


def _decoded(model: ARModel, result: GenerationResult, decode_all: bool) -> GenerationResult:
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
