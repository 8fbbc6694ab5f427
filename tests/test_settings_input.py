"""Settings from untrusted input: on/off settings are booleans, unknown keys are named, numbers that size
memory have bounds that say why, and random input gives a valid config or one clear ValueError (fuzz)."""
import json
import math
import random

import pytest

from scalingar_core.app import bench
from scalingar_core.engine.config import (
    BaselineConfig,
    GateConfig,
    ProfileConfig,
    RunConfig,
    SamplingConfig,
    SchedulerConfig,
)
from scalingar_core.testing.reference_model import ReferenceModel

SWITCHES = [(GateConfig, "enabled"), (SchedulerConfig, "enabled"), (ProfileConfig, "calibrate")]


@pytest.mark.parametrize("cls, name", SWITCHES)
@pytest.mark.parametrize("value", ["false", "no", 0, 1, None, "True"])
def test_on_off_settings_take_booleans_only(cls, name, value):
    with pytest.raises(ValueError) as err:
        cls(**{name: value})
    assert f"{name}={value!r}" in str(err.value) and "true or false" in str(err.value)


def test_a_string_false_never_leaves_the_part_running():
    with pytest.raises(ValueError, match="enabled='false'"):
        RunConfig.from_dict({"scheduler": {"enabled": "false"}})


@pytest.mark.parametrize("text, expected", [("no", False), ("off", False), ("0", False), ("FALSE", False),
                                            ("yes", True), ("on", True), ("1", True), ("true", True)])
def test_bench_overrides_spell_booleans_in_documented_words(text, expected):
    cfg = bench.method_config(f"scalingar@gate.enabled={text};scheduler.enabled={text};profile.calibrate={text}",
                              4, 0)
    assert cfg.gate.enabled is expected and cfg.scheduler.enabled is expected and cfg.profile.calibrate is expected


def test_bench_override_with_another_word_is_refused():
    with pytest.raises(ValueError, match="gate.enabled='maybe'.*yes.*off"):
        bench.method_config("scalingar@gate.enabled=maybe", 4, 0)


def test_unknown_key_is_named_not_a_type_error():
    with pytest.raises(ValueError, match=r"unknown SamplingConfig setting\(s\) \['n'\]"):
        RunConfig.from_dict({"sampling": {"n": 3}})
    with pytest.raises(ValueError, match="gate: expected GateConfig or dict, got int"):
        RunConfig.from_dict({"gate": 5})
    with pytest.raises(ValueError, match="GateConfig settings must be a mapping"):
        GateConfig.from_dict([("quantile", 0.3)])
    with pytest.raises(ValueError, match="is_fractions"):
        BaselineConfig(is_fractions=5)
    with pytest.raises(ValueError, match="seed=True"):
        SamplingConfig(seed=True)


@pytest.mark.parametrize("cls, name, value, why", [
    (SamplingConfig, "cfg_scale", 51.0, "saturates"),
    (SamplingConfig, "cfg_scale", 1e30, "saturates"),
    (SamplingConfig, "num_trajectories", 100_000, "grow with N"),
    (ProfileConfig, "roll_window", 10**9, "only costs memory"),
    (SchedulerConfig, "vol_window", 5000, "only costs memory"),
    (GateConfig, "recovery_window", 5000, "only costs memory"),
    (SchedulerConfig, "clamp_above", 1e6, "CFG scale"),
    (SchedulerConfig, "min_scale", 60.0, "CFG scale"),
])
def test_unbounded_numbers_have_bounds_that_say_why(cls, name, value, why):
    with pytest.raises(ValueError) as err:
        cls(**{name: value})
    assert f"{name}={value!r}" in str(err.value) and "at most" in str(err.value) and why in str(err.value)


def test_n_beyond_the_device_memory_estimate_is_refused_before_decoding():
    from scalingar_core.engine.loop import generate
    from scalingar_core.models.device import device_memory

    model = ReferenceModel(grid=(4, 4))
    total = device_memory(model.device)
    model.memory_estimate = lambda n: n * total // 10  # 10 trajectories fill the machine
    started = []
    model.start = lambda *a: started.append(a)
    with pytest.raises(ValueError, match=r"num_trajectories=16 needs about .* GiB on cpu.*use at most 10 traj"):
        generate(model, model.encode("a"), RunConfig(sampling=SamplingConfig(num_trajectories=16)))
    assert not started


def test_error_messages_echo_at_most_about_200_characters_of_input():
    with pytest.raises(ValueError) as err:
        GateConfig(theta_init="x" * 100_000)
    assert len(str(err.value)) < 500 and "(100000 characters)" in str(err.value)
    with pytest.raises(ValueError) as err:
        SamplingConfig(seed=10**5000)
    assert len(str(err.value)) < 300


# ---------------------------------------------------------------- fuzz

SECTION_CLASSES = {"sampling": SamplingConfig, "profile": ProfileConfig, "gate": GateConfig,
                   "scheduler": SchedulerConfig, "baseline": BaselineConfig}
HUGE = 10**5000
ODD_VALUES = [None, True, False, 0, 1, -1, 2, 3, 8, 64, 1024, 1025, 2**63, HUGE, 10**400, 0.0, 0.05, 0.5,
              0.99, 1.0, 1.5, -0.5, 7.5, 50.0, 1e308, float("nan"), float("inf"), float("-inf"), "", "x", "0.5",
              "true", "false", "guided", "pooled", "flag", "var", "additive", "target_ema", "confidence",
              "scalingar", "x" * 5000, [], [0.5], [None], [0.2, 0.8], [2.0], {}, {"a": 1}, (0.46, 0.69), [[1]]]
BASE = json.dumps(RunConfig().to_dict())
SECTION_DEFAULTS = {name: cls().to_dict() for name, cls in SECTION_CLASSES.items()}
UNKNOWN_KEYS = ["n", "seeds", "", "enabled ", "ENABLED", 1, None, "gate", "x" * 300]


def _mutate(rng: random.Random) -> dict:
    """The defaults with a few settings (and sometimes a whole section or the strategy) replaced."""
    data = json.loads(BASE)
    for _ in range(rng.randint(1, 4)):
        roll = rng.random()
        section = rng.choice(list(SECTION_CLASSES))
        if not isinstance(data.get(section), dict) or not data[section]:
            continue  # already replaced by an odd value
        if roll < 0.35:  # a plausible value of the right type
            defaults = SECTION_DEFAULTS[section]
            name = rng.choice(list(defaults))
            default = defaults[name]
            data[section][name] = (rng.choice([True, False]) if isinstance(default, bool) else
                                   rng.randint(1, 80) if isinstance(default, int) else
                                   round(rng.uniform(0, 1.2), 3) if isinstance(default, float) else default)
        elif roll < 0.7:
            data[section][rng.choice(list(data[section]))] = rng.choice(ODD_VALUES)
        elif roll < 0.8:
            data[section][rng.choice(UNKNOWN_KEYS)] = rng.choice(ODD_VALUES)
        elif roll < 0.88:
            data[section] = rng.choice(ODD_VALUES)
        elif roll < 0.95:
            data["strategy"] = rng.choice(ODD_VALUES + ["plain", "best_of_n"])
        else:
            data[rng.choice(UNKNOWN_KEYS)] = rng.choice(ODD_VALUES)
    return data


def _describe(data) -> str:
    return repr(data)[:400]


def test_fuzz_settings_give_a_valid_config_or_one_clear_value_error():
    rng = random.Random(20240609)
    valid = invalid = 0
    for _ in range(3000):
        data = _mutate(rng)
        try:
            cfg = RunConfig.from_dict(data)
        except ValueError as exc:
            msg = str(exc)
            assert msg and len(msg) < 1500, _describe(data)
            assert "setting" in msg or "strategy" in msg, (msg, _describe(data))
            invalid += 1
            continue
        except Exception as exc:  # anything else is a bug in the validation
            pytest.fail(f"{type(exc).__name__}: {exc} for {_describe(data)}")
        again = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert again == cfg, _describe(data)  # what was accepted is a valid, reproducible config
        for name in SECTION_CLASSES:
            for key, value in vars(getattr(cfg, name)).items():
                if isinstance(value, float):
                    assert math.isfinite(value), (name, key, _describe(data))
        valid += 1
    assert valid > 300 and invalid > 1000  # both outcomes were exercised


def test_fuzz_text_overrides_and_command_line_json():
    from scalingar_core.engine.config import read_overrides

    rng = random.Random(7)
    fields = [f"{s}.{k}" for s, c in SECTION_CLASSES.items() for k in c().to_dict()] + ["gate", "x.y", "gate.nope"]
    words = ["", "no", "yes", "1", "0", "0.3", "-1", "1e999", "NaN", "[0.5]", "{}", "null", "\"s\"", "pooled",
             "x" * 300, "=", ";", "[", "10" * 400]
    for _ in range(1500):
        items = [f"{rng.choice(fields)}={rng.choice(words)}" for _ in range(rng.randint(1, 3))]
        try:
            bench.method_config("scalingar@" + ";".join(items), rng.choice([1, 4, 0, 2000]), 0)
        except ValueError:
            pass
        except Exception as exc:
            pytest.fail(f"{type(exc).__name__}: {exc} for {items}")
        odd = rng.choice([v for v in ODD_VALUES if v is not HUGE])  # without 10**5000, which JSON cannot write
        text = rng.choice(["{", "[]", "5", "null", json.dumps({rng.choice(["gate", "x"]): odd}),
                           '{"sampling": {"seed": 1' + "0" * 5000 + "}}", '{"gate": {"quantile": NaN}}',
                           "{\"gate\": {\"quantile\": 0.3}}", "no-such-file.json", "\x00"])
        try:
            overrides = read_overrides(text)
            RunConfig.from_dict(overrides)
        except ValueError:
            pass
        except Exception as exc:
            pytest.fail(f"{type(exc).__name__}: {exc} for {text!r}")
