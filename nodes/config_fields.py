"""Node inputs generated from the engine's config dataclasses, so defaults live in one place
(scalingar_core/engine/config.py). This table only adds what a widget needs: range, step, choices, tooltip.
Equation numbers: v3 (v1), as in docs/method.md."""
from __future__ import annotations

from dataclasses import MISSING, fields

from comfy_api.latest import io

from scalingar_core.engine.config import (
    CHOICES,
    GateConfig,
    ProfileConfig,
    SchedulerConfig,
)

UNIT = {"min": 0.0, "max": 1.0, "step": 0.01}

# field -> widget extras + tooltip. Every dataclass field must have an entry (a test checks it).
PROFILE_FIELDS = {
    "alpha_h": dict(UNIT, tip="Eq. 5 (5): weight of (1 - normalised entropy) in the token confidence."),
    "alpha_m": dict(UNIT, tip="Eq. 5 (5): weight of the top-1/top-2 probability margin in the token confidence."),
    "lambda_tok": dict(UNIT, tip="Eq. 5 (6): EMA rate of the token confidence (weight on the newest token)."),
    "block_size": dict(min=1, max=64, tip="Eq. 6 (7): side b of the b x b token blocks for spatial entropy."),
    "min_fill": dict(UNIT, tip="Eq. 6 (7): fraction of a block that must be generated before it is scored."),
    "worst_fraction": dict(UNIT, tip="Eq. 6 (7): q, the worst fraction of blocks averaged into the block score."),
    "neutral_block_score": dict(UNIT, tip="Block score used before any block is eligible (reconstructed)."),
    "w_tok": dict(UNIT, tip="v3 §4.1.1 (8): weight of the token confidence in the intrinsic channel I."),
    "w_blk": dict(UNIT, tip="v3 §4.1.1 (8): weight of the worst-block stability in the intrinsic channel I."),
    "lambda_i": dict(UNIT, tip="v3 §4.1.1 (8): EMA rate of the intrinsic channel I."),
    "lambda_d": dict(UNIT, tip="v3 §4.1.2 (10): EMA rate of the conditional channel D."),
    "w_i": dict(UNIT, tip="v3 §4.1.3 (11): weight of the intrinsic channel in the confidence C."),
    "w_d": dict(UNIT, tip="v3 §4.1.3 (11): weight of the conditional channel in the confidence C."),
    "calibrate": dict(tip="(v1 11): apply the optional affine-sigmoid C <- sigmoid(a*C + b)."),
    "calib_a": dict(min=-100.0, max=100.0, step=0.1, tip="(v1 11) calibration slope a (only if calibrate)."),
    "calib_b": dict(min=-100.0, max=100.0, step=0.1, tip="(v1 11) calibration offset b (only if calibrate)."),
    "roll_window": dict(min=1, max=4096, tip="Steps in the rolling min-max (eq. 6 (7)) and z-score (eq. 7 (9))."),
    "entropy_source": dict(options=CHOICES["entropy_source"],
                           tip="Entropy/margin of the CFG-guided distribution (what is sampled) or of the "
                               "conditional one."),
    "normalisation": dict(options=CHOICES["normalisation"],
                          tip="Population of the rolling normalisations: all active trajectories over the "
                              "window, each trajectory's own past, or this step only."),
    "eps": dict(min=1e-9, max=0.0099, step=1e-6, round=1e-9, tip="Epsilon in the normalisations."),
    "selection": dict(options=CHOICES["selection"],
                      tip="Output: the survivor with the highest final C, with the highest mean C, or (not "
                          "in the paper) with the highest mean log-probability of its own sampled tokens."),
}

GATE_FIELDS = {
    "enabled": dict(tip="Off: no trajectory is ever removed (the gate still records its threshold)."),
    "warmup_fraction": dict(UNIT, max=0.99, tip="W0 as a fraction of the image's tokens: no pruning before it."),
    "quantile": dict(min=0.01, max=0.99, step=0.01, tip="p: the threshold tracks this quantile of active C."),
    "lambda_theta": dict(UNIT, tip="Eq. 9 (13): EMA rate of the threshold theta."),
    "update_interval": dict(min=1, max=1024, tip="K: update theta every K steps (1 = every step)."),
    "theta_init": dict(options=CHOICES["theta_init"],
                       tip="Initial theta: quantile of every warm-up C, or of the current C only."),
    "recovery_window": dict(min=1, max=4096, tip="Steps a trajectory below theta gets to recover."),
    "delta_rec": dict(min=0.0, max=10.0, step=0.01, tip="Relative rebound R that counts as recovery."),
    "delta_gap": dict(min=0.0, max=1.0, step=0.005, tip="Absolute rebound C - C_min that counts as recovery."),
    "protection_fraction": dict(UNIT, max=0.99, tip="Protection horizon as a fraction of the tokens."),
    "hard_fail": dict(UNIT, tip="c_hard: below this C a trajectory is removed at once."),
    "hard_fail_mode": dict(options=CHOICES["hard_fail_mode"],
                           tip="c_hard on C itself, or as a fraction of theta."),
    "min_survivors": dict(min=1, max=1024, tip="Never remove the last this-many trajectories."),
    "recovery_reference": dict(options=CHOICES["recovery_reference"],
                               tip="Measure a rebound from the running minimum C_min, from C when probation "
                                   "began, or from the lowest C since then."),
    "probation": dict(options=CHOICES["probation"],
                      tip="continuous: probation ends when C is back above theta; window: it ends only with "
                          "a rebound; end_of_window: after the recovery window, removed if C is below theta "
                          "and has not rebounded."),
}

SCHEDULER_FIELDS = {
    "enabled": dict(tip="Off: every trajectory keeps the base CFG scale."),
    "alpha": dict(min=0.0, max=10.0, step=0.01, tip="Eq. 10 (14): condition-utilisation (drift correction) gain."),
    "beta": dict(min=0.0, max=10.0, step=0.01, tip="Eq. 10 (14): intrinsic-volatility gain."),
    "gamma": dict(min=0.0, max=10.0, step=0.01, tip="Eq. 10 (14): rebound (diversity) gain."),
    "vol_window": dict(min=1, max=4096, tip="Steps of I in the volatility term."),
    "vol_measure": dict(options=CHOICES["vol_measure"], tip="Volatility as variance or standard deviation of I."),
    "form": dict(options=CHOICES["form"],
                 tip="Target scale s_base + delta, or s_base * (1 + delta)."),
    "update": dict(options=CHOICES["update"],
                   tip="Move s toward the target by EMA, or integrate delta each step."),
    "eta": dict(UNIT, tip="(v1 15): CFG smoothing rate."),
    "deadband": dict(min=0.0, max=10.0, step=0.01, tip="Ignore CFG changes smaller than this (CFG units)."),
    "clamp_below": dict(min=0.0, max=50.0, step=0.1, tip="CFG may go at most this far below the base scale."),
    "clamp_above": dict(min=0.0, max=50.0, step=0.1, tip="CFG may go at most this far above the base scale."),
    "min_scale": dict(min=0.0, max=50.0, step=0.1, tip="Absolute lower bound on the CFG scale."),
}

TABLES = {ProfileConfig: PROFILE_FIELDS, GateConfig: GATE_FIELDS, SchedulerConfig: SCHEDULER_FIELDS}


def _default(f):
    if f.default is not MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def inputs_for(config_cls) -> list:
    """One widget per dataclass field, default taken from the dataclass."""
    table = TABLES[config_cls]
    out = []
    for f in fields(config_cls):
        # A field the table does not know yet still gets a plain widget (tests flag the missing entry).
        spec = dict(table.get(f.name, {"min": None, "max": None}))
        tip = spec.pop("tip", f"{f.name}: see {config_cls.__name__} in scalingar_core/engine/config.py.")
        default = _default(f)
        if isinstance(default, str) and "options" not in spec:
            out.append(io.String.Input(f.name, default=default, tooltip=tip))
        elif "options" in spec:
            out.append(io.Combo.Input(f.name, options=list(spec["options"]), default=default, tooltip=tip))
        elif isinstance(default, bool):
            out.append(io.Boolean.Input(f.name, default=default, tooltip=tip))
        elif isinstance(default, int):
            out.append(io.Int.Input(f.name, default=default, min=spec["min"], max=spec["max"], tooltip=tip))
        elif isinstance(default, float):
            out.append(io.Float.Input(f.name, default=default, min=spec["min"], max=spec["max"],
                                      step=spec.get("step", 0.01), round=spec.get("round"), tooltip=tip))
        else:
            raise TypeError(f"{config_cls.__name__}.{f.name}: no widget for {type(default).__name__}")
    return out


def build(config_cls, values: dict):
    """The dataclass from widget values; its own validation names any bad value."""
    names = {f.name for f in fields(config_cls)}
    return config_cls(**{k: v for k, v in values.items() if k in names})
