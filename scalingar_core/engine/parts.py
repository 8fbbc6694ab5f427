"""Strategies composed from parts, built once from a :class:`~.config.RunConfig`.

As ComfyUI composes a SAMPLER and a GUIDER into one sampling node, a strategy here is four parts that the
step and the loop call without knowing which strategy they serve:

* what **scores** a trajectory (final C, a mean over the trace, the baselines' intrinsic score, a reward);
* what **prunes** (the termination gate, random pruning at the gate's count, or nothing);
* what **resamples** (importance sampling at fixed points, or nothing);
* what **selects** the image at the end (the highest finite score of a scorer).

:func:`compose` is the only place that reads the strategy's name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from . import baselines
from .config import RunConfig
from .images import decode_partial

# ---------------------------------------------------------------- what scores


class FinalConfidence:
    """C of v3 §4.1.3 (v1 11) at the last step (v3 Algorithm 1's selection); zeros when nothing was observed."""

    def __call__(self, group, steps_done: int) -> torch.Tensor:
        if group.state.profile is None:
            return torch.zeros(group.ids.shape[0], device=group.ids.device)
        return group.live(group.state.profile.c)


@dataclass(frozen=True)
class TraceMean:
    """The mean of one recorded signal over the steps each trajectory lived (A16: ``mean`` of C, or
    ``token_logprob``, the mean log-probability of its own sampled tokens)."""

    name: str

    def __call__(self, group, steps_done: int) -> torch.Tensor:
        return group.history.buffers[self.name].index_select(0, group.ids).nanmean(1)


@dataclass(frozen=True)
class IntrinsicScore:
    """The baselines' model-internal score (mean token confidence, mean self-certainty, or C)."""

    kind: str

    def __call__(self, group, steps_done: int) -> torch.Tensor:
        return group.live(baselines.intrinsic_score(group.state.profile, self.kind, steps_done))


@dataclass(frozen=True)
class RewardScore:
    """A reward on the decoded (partial) images: ungenerated cells are grey."""

    reward: Callable

    def __call__(self, group, steps_done: int) -> torch.Tensor:
        images = decode_partial(group.model, group.codes.index_select(0, group.ids))
        return baselines.reward_scores(self.reward, images, group.ids.device)


# ---------------------------------------------------------------- what prunes


class GatePrune:
    """The rows the termination gate condemned leave, each with the gate's reason."""

    def choose(self, group, t: int, victims: list[int], reasons: list[int]) -> tuple[list[int], list[int]]:
        return victims, reasons


class RandomPrune:
    """The random-prune control: as many rows as the gate condemned, at the same step, chosen at random."""

    def choose(self, group, t: int, victims: list[int], reasons: list[int]) -> tuple[list[int], list[int]]:
        mask = baselines.random_victims(group.config.sampling.seed, group.ids, t, len(victims)).tolist()
        chosen = [i for i, v in enumerate(mask) if v]
        # the rows the gate condemned but chance spared start a fresh probation; otherwise they stay
        # condemned and the control removes one more row every step
        spared = [v for v in victims if v not in chosen]
        if spared:
            group.state.gate.reset(group.ids[spared])
        return chosen, reasons  # reasons follow the count, not the rows


# ---------------------------------------------------------------- what resamples


@dataclass(frozen=True)
class ImportanceResample:
    """Importance sampling (TTS-VAR's rule): after the given steps, every trajectory is replaced by a parent
    drawn with weight exp(λ·score)."""

    steps: frozenset[int]
    score: Callable


# ---------------------------------------------------------------- the composition


@dataclass(frozen=True)
class Strategy:
    """What one generation does besides decoding."""

    name: str  # recorded in the trace, never compared by the step or the loop
    single: bool  # one trajectory, whatever num_trajectories says (plain sampling)
    observe: bool  # the confidence profile runs
    prune: GatePrune | RandomPrune | None
    schedule: bool  # the guidance scheduler moves each trajectory's CFG scale
    resample: ImportanceResample | None
    select: Callable  # the score the image is chosen by

    @property
    def gated(self) -> bool:
        return self.prune is not None


def selection_score(config: RunConfig) -> Callable:
    """The survivors' score of the pruning strategies and plain sampling (``profile.selection``)."""
    kind = config.profile.selection
    if kind == "mean":
        return TraceMean("C")
    if kind == "token_logprob":
        return TraceMean("token_logprob")
    return FinalConfidence()


def compose(config: RunConfig, reward: Callable | None, observe: bool, grid: tuple[int, int]) -> Strategy:
    """The parts of ``config.strategy``. ``reward`` replaces the intrinsic score of Best-of-N and importance
    sampling; ``observe=False`` skips the profile where the strategy does not need it."""
    name = config.strategy
    baseline = (RewardScore(reward) if reward is not None else IntrinsicScore(config.baseline.score))
    if name in ("scalingar", "random_prune"):
        prune = (GatePrune() if name == "scalingar" else RandomPrune()) if config.gate.enabled else None
        return Strategy(name, False, True, prune, config.scheduler.enabled, None, selection_score(config))
    if name == "best_of_n":
        return Strategy(name, False, observe or reward is None, None, False, None, baseline)
    if name == "importance_sampling":
        steps = frozenset(baselines.resample_steps(config.baseline.is_fractions, grid))
        return Strategy(name, False, observe or reward is None, None, False, ImportanceResample(steps, baseline),
                        baseline)
    # unobserved plain sampling has no trace to average: its one trajectory is chosen by a zero score
    return Strategy(name, True, observe, None, False, None, selection_score(config) if observe else FinalConfidence())
