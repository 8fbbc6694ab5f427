"""Invalid settings raise a ValueError naming the field, the value and the allowed range."""
import pytest

from scalingar_core.engine.config import (
    BaselineConfig,
    GateConfig,
    ProfileConfig,
    RunConfig,
    SamplingConfig,
    SchedulerConfig,
)


@pytest.mark.parametrize("cls, field, value, allowed", [
    (SamplingConfig, "num_trajectories", 0, ">= 1"),
    (SamplingConfig, "temperature", 0.0, "> 0"),
    (SamplingConfig, "top_k", -1, ">= 0"),
    (SamplingConfig, "top_p", 0.0, "(0, 1]"),
    (SamplingConfig, "cfg_scale", -1.0, ">= 0"),
    (GateConfig, "quantile", 1.0, "(0, 1)"),
    (GateConfig, "quantile", 0.0, "(0, 1)"),
    (GateConfig, "recovery_window", 0, ">= 1"),
    (GateConfig, "update_interval", 0, ">= 1"),
    (GateConfig, "min_survivors", 0, ">= 1"),
    (GateConfig, "warmup_fraction", 1.0, "[0, 1)"),
    (GateConfig, "theta_init", "median", "'warmup_pool'"),
    (ProfileConfig, "roll_window", 0, ">= 1"),
    (ProfileConfig, "block_size", 0, ">= 1"),
    (ProfileConfig, "lambda_tok", 0.0, "(0, 1]"),
    (ProfileConfig, "w_tok", 1.5, "[0, 1]"),
    (ProfileConfig, "entropy_source", "filtered", "'guided'"),
    (ProfileConfig, "normalisation", "global", "'pooled'"),
    (SchedulerConfig, "vol_window", 0, ">= 1"),
    (SchedulerConfig, "eta", 0.0, "(0, 1]"),
    (SchedulerConfig, "deadband", -0.1, ">= 0"),
    (SchedulerConfig, "form", "exp", "'additive'"),
    (SchedulerConfig, "update", "pid", "'target_ema'"),
    (BaselineConfig, "is_fractions", (1.2,), "(0, 1)"),
    (BaselineConfig, "score", "clip", "'token_confidence'"),
])
def test_invalid_values_name_field_value_and_range(cls, field, value, allowed):
    with pytest.raises(ValueError) as err:
        cls(**{field: value})
    msg = str(err.value)
    assert field in msg and repr(value) in msg and allowed in msg


def test_defaults_are_method_md_values():
    p, g, s = ProfileConfig(), GateConfig(), SchedulerConfig()
    assert (p.alpha_h, p.alpha_m, p.lambda_tok, p.w_tok, p.w_blk, p.lambda_i, p.w_i, p.w_d) == \
        (0.5, 0.5, 0.2, 0.65, 0.35, 0.2, 0.75, 0.25)
    assert (p.block_size, p.min_fill, p.worst_fraction, p.roll_window, p.calibrate) == (4, 0.5, 0.1, 64, False)
    assert (g.warmup_fraction, g.quantile, g.lambda_theta, g.recovery_window, g.delta_rec, g.delta_gap,
            g.protection_fraction, g.hard_fail, g.update_interval, g.min_survivors) == \
        (0.125, 0.2, 0.2, 32, 0.05, 0.02, 0.125, 0.10, 1, 1)
    assert (s.alpha, s.beta, s.gamma, s.vol_window, s.eta, s.deadband, s.clamp_below, s.clamp_above) == \
        (0.3, 0.4, 0.4, 16, 0.2, 0.05, 2.0, 2.0)
    assert SamplingConfig().num_trajectories == 8


def test_round_trip_and_unknown_keys():
    cfg = RunConfig(strategy="best_of_n", gate={"quantile": 0.3})
    again = RunConfig.from_dict({k: v for k, v in cfg.to_dict().items()})
    assert again == cfg and again.gate.quantile == 0.3
    with pytest.raises(ValueError, match="unknown GateConfig setting"):
        GateConfig.from_dict({"quantlie": 0.3})
    with pytest.raises(ValueError, match="strategy"):
        RunConfig(strategy="beam")


def test_reconstructed_settings_are_documented():
    import scalingar_core.engine.config as c
    src = open(c.__file__).read()
    for name in ("entropy_source", "normalisation", "form", "update", "update_interval", "min_survivors",
                 "theta_init", "hard_fail", "min_fill", "roll_window", "vol_window", "is_fractions"):
        idx = src.index(f"    {name}:")
        assert "RECONSTRUCTED" in src[idx: idx + 600], name


@pytest.mark.parametrize("cls, field", [(SamplingConfig, "temperature"), (SamplingConfig, "top_p"),
                                        (GateConfig, "quantile"), (GateConfig, "hard_fail"),
                                        (ProfileConfig, "eps"), (BaselineConfig, "is_lambda")])
def test_non_numbers_are_a_clear_value_error(cls, field):
    with pytest.raises(ValueError, match=f"{field}='abc'.*a number"):
        cls(**{field: "abc"})
