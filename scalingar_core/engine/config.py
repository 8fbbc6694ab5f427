"""Every setting of ScalingAR (``docs/method.md``, "Every default") with its default, validated on construction.

Settings marked RECONSTRUCTED are our reading where no source gives the value or the rule; each says what
the alternative reading is, so it can be switched without touching the engine.

Every bad value is one ``ValueError`` naming the setting, the value (at most ~200 characters of it) and what is
allowed; nothing else escapes the constructors or ``from_dict``.

* On/off settings (``enabled``, ``calibrate``) take real booleans only: the string ``"false"`` or the number
  ``0`` is an error, never silently "on". Text front ends that cannot write a boolean (the bench's
  ``section.field=value`` overrides) spell it true/false, yes/no, on/off or 1/0 (any case), converted by
  :func:`setting_from_text`; JSON (``--config``) uses JSON's ``true``/``false``.
* Numbers that size memory or drive the logits have upper bounds that protect the machine: N
  (``MAX_TRAJECTORIES``, and the model's own memory estimate at run time), CFG scales (``MAX_CFG_SCALE``) and
  the windows (``MAX_WINDOW``).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import echo

STRATEGIES = ("scalingar", "plain", "best_of_n", "importance_sampling", "random_prune")
# Allowed values of every text setting (the first is the default). New fields go at the END of their
# dataclass: ComfyUI saves widget values by position.
CHOICES = {
    "entropy_source": ("guided", "conditional"),
    "normalisation": ("pooled", "per_trajectory", "cross_sectional"),
    "theta_init": ("warmup_pool", "current"),
    "hard_fail_mode": ("absolute", "relative"),
    "recovery_reference": ("flag", "running_min", "min_since_flag"),
    "probation": ("end_of_window", "continuous", "window"),
    "vol_measure": ("var", "std"),
    "form": ("additive", "multiplicative"),
    "update": ("target_ema", "integrating"),
    "score": ("token_confidence", "self_certainty", "confidence"),
    "selection": ("final", "mean", "token_logprob"),
    "is_scores": ("standardised", "raw"),
}


MAX_TRAJECTORIES = 1024
"""N beyond this is refused outright (per-step cost, the trace and IS's N×N resampling grow with N); the run
also refuses an N whose memory estimate exceeds the device (``machine.check_trajectories``)."""
MAX_CFG_SCALE = 50.0
"""Guidance beyond this only saturates the distribution, and ℓ_u + s·(ℓ_c − ℓ_u) overflows half-precision
logits into NaN long before; also the bound of the scheduler's clamps."""
MAX_WINDOW = 4096
"""Rolling windows and the recovery window, in tokens: 4× the longest image (LlamaGen 512 px, 1024 tokens);
a longer window changes nothing but the N × window floats each rolling pool holds."""
MAX_TOP_K = 1_000_000  # above any image tokenizer's vocabulary (checked against the model's at run time)
MAX_BLOCK = 64  # eq. 6 (7) blocks: a side beyond any token grid (LlamaGen 512 px is 32 x 32) is one block
TRUE_WORDS, FALSE_WORDS = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _check(name: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise ValueError(f"invalid setting {name}={echo(value)}: allowed {allowed}")


def _is_number(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        float(value)  # an int too large for a float (10**400) is not a usable setting
    except OverflowError:
        return False
    return True


def _number(name: str, value) -> None:
    _check(name, value, _is_number(value), "a number")


def _bool(name: str, value) -> None:
    _check(name, value, isinstance(value, bool),
           "true or false (a boolean; in JSON write false, not \"false\")")


def _at_most(name: str, value, bound, why: str) -> None:
    _check(name, value, value <= bound, f"at most {bound}: {why}")


def _unit(name: str, value: float, *, open_low=False, open_high=False) -> None:
    _number(name, value)
    lo_ok = value > 0 if open_low else value >= 0
    hi_ok = value < 1 if open_high else value <= 1
    _check(name, value, isinstance(value, (int, float)) and lo_ok and hi_ok and math.isfinite(value),
           f"{'(' if open_low else '['}0, 1{')' if open_high else ']'}")


def _positive_int(name: str, value: int, minimum: int = 1) -> None:
    _check(name, value, isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
           f"an integer >= {minimum}")


def _window(name: str, value: int) -> None:
    _positive_int(name, value)
    _at_most(name, value, MAX_WINDOW, "longer than any image's token count, it only costs memory")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    _check(name, value, value in choices, "one of " + ", ".join(repr(c) for c in choices))


class _Config:
    """Shared helpers: dict round trip that rejects unknown keys with a clear message."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None):
        if data is not None and not isinstance(data, dict):
            raise ValueError(f"{cls.__name__} settings must be a mapping of setting names to values "
                             f"(a JSON object), got {echo(data)}")
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known, key=str)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} setting(s) {unknown}: known settings are {sorted(known)}")
        return cls(**data)


@dataclass
class SamplingConfig(_Config):
    """How tokens are drawn. ``None`` means "the base model's own default" (resolved by the sampler)."""

    num_trajectories: int = 8
    seed: int = 0
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    cfg_scale: float | None = None

    def __post_init__(self):
        _positive_int("num_trajectories", self.num_trajectories)
        _at_most("num_trajectories", self.num_trajectories, MAX_TRAJECTORIES,
                 "the per-step cost, the trace and importance sampling's N x N resampling grow with N")
        _check("seed", self.seed, isinstance(self.seed, int) and not isinstance(self.seed, bool)
               and 0 <= self.seed < 2**63, "an integer in [0, 2^63)")
        if self.temperature is not None:
            _number("temperature", self.temperature)
            _check("temperature", self.temperature, self.temperature > 0 and math.isfinite(self.temperature), "> 0")
        if self.top_k is not None:
            _check("top_k", self.top_k, isinstance(self.top_k, int) and not isinstance(self.top_k, bool)
                   and 0 <= self.top_k <= MAX_TOP_K, "an integer >= 0 (0 = off) and <= the vocabulary size")
        if self.top_p is not None:
            _number("top_p", self.top_p)
            _check("top_p", self.top_p, 0 < self.top_p <= 1, "(0, 1]")
        if self.cfg_scale is not None:
            _number("cfg_scale", self.cfg_scale)
            _check("cfg_scale", self.cfg_scale, self.cfg_scale >= 0 and math.isfinite(self.cfg_scale), ">= 0")
            _at_most("cfg_scale", self.cfg_scale, MAX_CFG_SCALE, "stronger guidance only saturates the "
                     "distribution and overflows half-precision logits")

    def check_vocab(self, vocab_size: int) -> None:
        if self.top_k is not None:
            _check("top_k", self.top_k, self.top_k <= vocab_size, f"[0, {vocab_size}] for this model's vocabulary")


@dataclass
class ProfileConfig(_Config):
    """Profile level, eqs. 5–8 (v1 5–12; docs/method.md): how one calibrated confidence C per trajectory
    is formed."""

    alpha_h: float = 0.5  # eq. 5 (5) entropy weight (v3 table; v3 §D.2 finds 0.7/0.3 slightly better, A17)
    alpha_m: float = 0.5  # eq. 5 (5) margin weight
    lambda_tok: float = 0.2  # eq. 5 (6), weight on the new observation (A3)
    block_size: int = 4  # eq. 6 (7), b
    min_fill: float = 0.5
    """Eq. 6 (7) fill ratio ρ_min. RECONSTRUCTED: half a block (2 of 4 rows under raster order)."""
    worst_fraction: float = 0.1  # eq. 6 (7), q
    neutral_block_score: float = 0.5
    """B before any block is eligible. RECONSTRUCTED (A6): neutral 0.5; the alternative drops the term."""
    w_tok: float = 0.65  # v3 §4.1.1 (8)
    w_blk: float = 0.35  # v3 §4.1.1 (8)
    lambda_i: float = 0.2  # v3 §4.1.1 (8) EMA
    lambda_d: float = 0.2
    """v3 §4.1.2 (10) EMA of D. RECONSTRUCTED: same as the other EMAs (v1 never defines D̂)."""
    w_i: float = 0.75  # v3 §4.1.3 (11)
    w_d: float = 0.25  # v3 §4.1.3 (11)
    calibrate: bool = False
    """(v1 11) optional affine-sigmoid C ← σ(a·C + b). RECONSTRUCTED: off (v1 'optional', v3 dropped it)."""
    calib_a: float = 6.0
    calib_b: float = -3.0
    roll_window: int = 64
    """L_roll, steps in the rolling min–max of eq. 6 (7) and the z-score of eq. 7 (9). RECONSTRUCTED (A5)."""
    entropy_source: str = "guided"
    """A1, RECONSTRUCTED: entropy and margin of the guided distribution at the previous step's CFG
    ('guided', what is sampled) or of the conditional distribution ('conditional')."""
    normalisation: str = "pooled"
    """A4, RECONSTRUCTED: population of the rolling min–max (B) and z-score (D): 'pooled' over all active
    trajectories of the prompt in the trailing window (comparable across candidates), 'per_trajectory'
    (each against its own past), or 'cross_sectional' (this step's active trajectories only)."""
    eps: float = 1e-6
    selection: str = "final"
    """A16, how the output is chosen among the survivors: the highest final C_T ('final', v3 Algorithm 1
    line 20), the highest mean of C over the trajectory's steps ('mean', RECONSTRUCTED alternative), or
    the highest mean log-probability of the trajectory's own sampled tokens ('token_logprob', NOT IN THE
    PAPER: on toy-shapes-256's held-out prompts it picks no better than final C among the same survivors,
    +0.5 ± 0.6 points paired; docs/evidence.md). Pruning does not depend on it."""

    def __post_init__(self):
        _choice("selection", self.selection, CHOICES["selection"])
        for name in ("alpha_h", "alpha_m", "w_tok", "w_blk", "w_i", "w_d", "neutral_block_score"):
            _unit(name, getattr(self, name))
        for name in ("lambda_tok", "lambda_i", "lambda_d"):
            _unit(name, getattr(self, name), open_low=True)
        _unit("min_fill", self.min_fill, open_low=True)
        _unit("worst_fraction", self.worst_fraction, open_low=True)
        _positive_int("block_size", self.block_size)
        _at_most("block_size", self.block_size, MAX_BLOCK, "larger than any token grid")
        _window("roll_window", self.roll_window)
        _bool("calibrate", self.calibrate)
        _choice("entropy_source", self.entropy_source, CHOICES["entropy_source"])
        _choice("normalisation", self.normalisation, CHOICES["normalisation"])
        _number("eps", self.eps)
        _check("eps", self.eps, 0 < self.eps < 1e-2, "(0, 0.01)")
        _number("calib_a", self.calib_a)
        _check("calib_a", self.calib_a, math.isfinite(self.calib_a), "a finite number")
        _number("calib_b", self.calib_b)
        _check("calib_b", self.calib_b, math.isfinite(self.calib_b), "a finite number")
        _check("w_tok + w_blk", self.w_tok + self.w_blk, self.w_tok + self.w_blk > 0, "> 0")
        _check("w_i + w_d", self.w_i + self.w_d, self.w_i + self.w_d > 0, "> 0")


@dataclass
class GateConfig(_Config):
    """Policy level, adaptive termination gate: eq. 9 (13) plus recovery, protection horizon and hard fail."""

    enabled: bool = True
    warmup_fraction: float = 0.125  # W_0 as a fraction of T
    quantile: float = 0.2  # p
    lambda_theta: float = 0.2  # eq. 9 (13) EMA rate
    update_interval: int = 1
    """K. RECONSTRUCTED (A8): every step as in v3 Algorithm 1; v1 says 'every K steps' (alternative 8),
    pooling the C values of the last K steps of the active trajectories."""
    theta_init: str = "warmup_pool"
    """A8, RECONSTRUCTED: θ at the end of warm-up is the p-quantile of every C of the warm-up steps
    ('warmup_pool') or of the active trajectories' current C ('current', v3 Algorithm 1)."""
    recovery_window: int = 32  # Δ_rec
    delta_rec: float = 0.05  # relative rebound R that counts as recovery
    delta_gap: float = 0.02
    """Absolute rebound C − reference that counts as recovery, beside the relative δ_rec. RECONSTRUCTED (A12):
    matches the 5 % relative test at C ≈ 0.4; measured from ``recovery_reference``."""
    protection_fraction: float = 0.125
    """H_prot as a fraction of T. RECONSTRUCTED (A13): equal to W_0; 0.25 is the conservative reading."""
    hard_fail: float = 0.10
    """c_hard. RECONSTRUCTED (A14): absolute floor on C; with hard_fail_mode='relative' it is a fraction of θ
    (the scale-free reading, e.g. 0.5·θ)."""
    hard_fail_mode: str = "absolute"
    min_survivors: int = 1
    """Never remove the last ``min_survivors`` trajectories. RECONSTRUCTED (A15): the paper lets all die."""
    recovery_reference: str = "flag"
    """A12, RECONSTRUCTED (resolved by the paper's budget, with ``probation``): a rebound (C − ref ≥ δ_gap
    or R ≥ δ_rec) is measured from C when probation began ('flag', default), from the trajectory's all-time
    running minimum C_min ('running_min': eq. 8 (12)'s R as printed) or from its lowest C since the flag
    ('min_since_flag')."""
    probation: str = "end_of_window"
    """A12, RECONSTRUCTED: how a flagged trajectory (C < θ) is judged.
    'end_of_window' (default): after Δ_rec steps of probation, v3 Algorithm 1 line 17 decides once —
    removed if C < θ and it has not rebounded, otherwise the flag clears ("granted a probation window …
    only terminated if it fails to demonstrate a significant rebound", v3 §4.2.1);
    'window': removed when C < θ after Δ_rec steps of probation, and any rebound during the window clears the
    flag (v1: "no recovery within the last Δ_rec steps");
    'continuous': probation ends the moment C ≥ θ, a rebound restarts its count, removal after Δ_rec
    consecutive steps below θ (this project's first reading).

    Why the default: the paper's one cost figure is 2350 visual tokens per image at N = 8, T = 1024
    (Best-of-N 8192, v3 Table 5). Warm-up alone costs 1024 and a survivor 896 more, so the gate must remove
    nearly every other trajectory within a window or two of W_0. ``benchmarks/gate_budget.py`` drives this
    gate with noisy C traces (noise measured on the toy model's real traces): 'continuous' and every
    'running_min' reading stop pruning once C is noisy (a 5 % wobble above an all-time low, or a step
    above θ, resets them), 'window' and 'min_since_flag' lose most removals at the measured noise, and only
    'end_of_window' with 'flag' stays near the paper's budget across noise levels (docs/benchmarks.md, "The gate
    and the paper's token budget")."""

    def __post_init__(self):
        _unit("warmup_fraction", self.warmup_fraction, open_high=True)
        _unit("protection_fraction", self.protection_fraction, open_high=True)
        _unit("quantile", self.quantile, open_low=True, open_high=True)
        _unit("lambda_theta", self.lambda_theta, open_low=True)
        _bool("enabled", self.enabled)
        _positive_int("update_interval", self.update_interval)
        _at_most("update_interval", self.update_interval, MAX_WINDOW, "longer than any image")
        _window("recovery_window", self.recovery_window)
        _positive_int("min_survivors", self.min_survivors)
        _at_most("min_survivors", self.min_survivors, MAX_TRAJECTORIES, "more than N can ever be")
        _choice("theta_init", self.theta_init, CHOICES["theta_init"])
        _choice("hard_fail_mode", self.hard_fail_mode, CHOICES["hard_fail_mode"])
        _choice("recovery_reference", self.recovery_reference, CHOICES["recovery_reference"])
        _choice("probation", self.probation, CHOICES["probation"])
        for name in ("delta_rec", "delta_gap"):
            value = getattr(self, name)
            _number(name, value)
            _check(name, value, value >= 0 and math.isfinite(value), ">= 0")
        _number("hard_fail", self.hard_fail)
        _check("hard_fail", self.hard_fail, 0 <= self.hard_fail <= 1, "[0, 1]")


@dataclass
class SchedulerConfig(_Config):
    """Policy level, guidance scheduler: eq. 10 (v1 14–15), per-trajectory CFG."""

    enabled: bool = True
    alpha: float = 0.3  # condition-utilisation (drift correction) gain
    beta: float = 0.4  # intrinsic-volatility gain
    gamma: float = 0.4  # rebound (diversity) gain
    vol_window: int = 16
    """L_vol, steps of I in the volatility term. RECONSTRUCTED (A5)."""
    vol_measure: str = "var"
    """A9, RECONSTRUCTED: Vol(I) as the variance (v3 'Var(I)', literal) or the standard deviation."""
    form: str = "additive"
    """A9, RECONSTRUCTED: target s* = s_base + Δs ('additive', v3 Algorithm 1) or s_base·(1 + Δs)
    ('multiplicative', a reading that gives the scheduler a larger effect)."""
    update: str = "target_ema"
    """A10, RECONSTRUCTED: s_t = (1−η)s_{t−1} + η·s* ('target_ema') or s_t = s_{t−1} + η·Δs ('integrating')."""
    eta: float = 0.2  # RECONSTRUCTED smoothing
    deadband: float = 0.05  # RECONSTRUCTED, CFG units
    clamp_below: float = 2.0
    """RECONSTRUCTED clamp: s ∈ [max(min_scale, s_base − clamp_below), s_base + clamp_above]."""
    clamp_above: float = 2.0
    min_scale: float = 1.0

    def __post_init__(self):
        _bool("enabled", self.enabled)
        for name in ("alpha", "beta", "gamma", "deadband", "clamp_below", "clamp_above", "min_scale"):
            v = getattr(self, name)
            _number(name, v)
            _check(name, v, v >= 0 and math.isfinite(v), ">= 0")
        for name in ("clamp_below", "clamp_above", "min_scale"):
            _at_most(name, getattr(self, name), MAX_CFG_SCALE, "a CFG scale (see sampling.cfg_scale)")
        _unit("eta", self.eta, open_low=True)
        _window("vol_window", self.vol_window)
        _choice("vol_measure", self.vol_measure, CHOICES["vol_measure"])
        _choice("form", self.form, CHOICES["form"])
        _choice("update", self.update, CHOICES["update"])


@dataclass
class BaselineConfig(_Config):
    """Settings of the baselines run on the same sampler."""

    score: str = "token_confidence"
    """Best-of-N / IS intrinsic score when no reward callable is given: mean token confidence c_t
    ('token_confidence'), self-certainty ('self_certainty'), or the final ScalingAR C ('confidence')."""
    is_fractions: tuple[float, ...] = (0.46, 0.69)
    """IS resampling points as fractions of T, snapped to row boundaries. RECONSTRUCTED (A19): TTS-VAR's
    scale indices 6 and 9 of 13 mapped to sequence fractions."""
    is_lambda: float = 10.0  # w_i = exp(λ·r_i), TTS-VAR
    is_scores: str = "standardised"
    """What λ multiplies (RECONSTRUCTED). TTS-VAR's λ = 10 was set for ImageReward scores, which differ by
    about one unit between a prompt's candidates; model-internal scores differ by ~0.01, so exp(10·r) would
    resample uniformly. 'standardised' z-scores the candidates' scores (mean 0, standard deviation 1 across
    them) before the exponent; 'raw' uses them as they are (TTS-VAR's literal rule)."""

    def __post_init__(self):
        _choice("score", self.score, CHOICES["score"])
        _choice("is_scores", self.is_scores, CHOICES["is_scores"])
        _check("is_fractions", self.is_fractions, isinstance(self.is_fractions, (list, tuple))
               and all(_is_number(f) for f in self.is_fractions), "a list of fractions in (0, 1)")
        self.is_fractions = tuple(float(f) for f in self.is_fractions)
        for f in self.is_fractions:
            _number("is_fractions", f)
            _check("is_fractions", self.is_fractions, 0 < f < 1, "fractions in (0, 1)")
        _number("is_lambda", self.is_lambda)
        _check("is_lambda", self.is_lambda, self.is_lambda >= 0 and math.isfinite(self.is_lambda), ">= 0")


@dataclass
class RunConfig(_Config):
    """Everything one generation needs besides the model and the condition."""

    strategy: str = "scalingar"
    sampling: SamplingConfig = None  # type: ignore[assignment]
    profile: ProfileConfig = None  # type: ignore[assignment]
    gate: GateConfig = None  # type: ignore[assignment]
    scheduler: SchedulerConfig = None  # type: ignore[assignment]
    baseline: BaselineConfig = None  # type: ignore[assignment]

    def __post_init__(self):
        _choice("strategy", self.strategy, STRATEGIES)
        for name, cls in (("sampling", SamplingConfig), ("profile", ProfileConfig), ("gate", GateConfig),
                          ("scheduler", SchedulerConfig), ("baseline", BaselineConfig)):
            value = getattr(self, name)
            if value is None:
                setattr(self, name, cls())
            elif isinstance(value, dict):
                setattr(self, name, cls.from_dict(value))
            elif not isinstance(value, cls):
                raise ValueError(f"invalid setting {name}: expected {cls.__name__} or dict, got {type(value).__name__}")


SECTIONS = {"sampling": SamplingConfig, "profile": ProfileConfig, "gate": GateConfig, "scheduler": SchedulerConfig,
            "baseline": BaselineConfig}


def parse_bool(name: str, text: str) -> bool:
    """An on/off setting written as text: true/false, yes/no, on/off or 1/0 (any case)."""
    word = text.strip().lower()
    if word in TRUE_WORDS or word in FALSE_WORDS:
        return word in TRUE_WORDS
    raise ValueError(f"invalid setting {name}={echo(text)}: allowed " + "/".join(TRUE_WORDS) + " or "
                     + "/".join(FALSE_WORDS))


def setting_from_text(section: str, name: str, text: str):
    """A setting's value from ``section.name=text`` (the bench's overrides): booleans by
    :func:`parse_bool`, everything else as JSON when it parses (numbers, lists) or as the text itself."""
    cls = SECTIONS.get(section)
    field = next((f for f in fields(cls) if f.name == name), None) if cls else None
    if field is not None and isinstance(field.default, bool):
        return parse_bool(f"{section}.{name}", text)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        return False


def read_overrides(text: str | None, option: str = "--config") -> dict:
    """Setting overrides given on a command line: inline JSON (``{"gate": {"quantile": 0.3}}``) or the path
    of a JSON file holding the same object. Sections are checked here, their settings by the configs."""
    if text is None or not str(text).strip():
        return {}
    text, example = str(text), '\'{"gate": {"quantile": 0.3}}\''
    if not text.lstrip().startswith("{") and _is_file(text):
        source = f"file {text}"
        try:
            text = Path(text).read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{option}: the {source} is not UTF-8 text (byte {exc.start}); give a JSON file such "
                             f"as one holding {example}") from None
    elif not text.lstrip().startswith("{"):
        raise ValueError(f"{option} takes inline JSON such as {example} or the path of a JSON file; "
                         f"{echo(text)} is neither")
    else:
        source = "inline JSON"
    try:
        data = json.loads(text)
    except RecursionError:
        raise ValueError(f"{option}: the {source} is nested too deeply; settings are at most two levels deep, "
                         f"e.g. {example}") from None
    except ValueError as exc:  # JSONDecodeError, or a number beyond Python's digit limit
        where = f", line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise ValueError(f"{option}: the {source} is not valid JSON ({getattr(exc, 'msg', exc)}{where}); "
                         f"write e.g. {example}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{option} takes a JSON object of sections such as {example}, got {echo(data)}")
    unknown = sorted(set(data) - set(SECTIONS), key=str)
    if unknown:
        raise ValueError(f"{option} has unknown section(s) {echo(unknown)}: use {', '.join(SECTIONS)}")
    return data
