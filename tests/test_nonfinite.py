"""Non-finite logits (fp16 overflow, a bad weight): the broken trajectory leaves at once as a hard fail in every
strategy, is never selected or resampled, the run fails clearly when nothing finite is left, and the trace
stays strict JSON. A wrapper around the reference model injects NaN/inf into one trajectory's logits.

Names this fix added are imported inside the tests, so each test fails on its own on the code before it."""
import json
import math
from pathlib import Path

import jsonschema
import pytest
import torch
from poisoned import PoisonedModel

from scalingar_core.engine.config import GateConfig, RunConfig, SamplingConfig
from scalingar_core.engine.history import ring_mean_std, ring_min_max, ring_push
from scalingar_core.engine.loop import generate
from scalingar_core.testing.reference_model import ReferenceModel

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "scalingar_core" / "engine" / "trace_schema.json").read_text())
OBSERVING = ("scalingar", "random_prune", "best_of_n", "importance_sampling")


def strict_json(trace, tmp_path):
    """The saved trace parses with NaN/Infinity refused and validates against the schema."""
    path = trace.save_json(tmp_path / "trace.json")

    def refuse(name):
        raise ValueError(f"bare {name} in the trace")
    data = json.loads(path.read_text(), parse_constant=refuse)
    jsonschema.validate(data, SCHEMA)
    return data


@pytest.mark.parametrize("strategy", OBSERVING)
@pytest.mark.parametrize("value, half", [(float("nan"), "cond"), (float("inf"), "uncond"),
                                         (float("-inf"), "both")])
def test_a_nonfinite_trajectory_leaves_at_once_and_is_never_selected(strategy, value, half, tmp_path):
    # victim 2 at step 3: inside warm-up and protection (8 steps), where the gate itself never removes
    model = PoisonedModel(victims=[2], at=3, value=value, half=half)
    result = generate(model, model.encode("a"), RunConfig(strategy=strategy, sampling=SamplingConfig(
        num_trajectories=6, seed=1), gate=GateConfig(recovery_window=4)))
    victim = result.trace.trajectories[2]
    assert (victim.removed_at, victim.removed_reason) == (3, "hard_fail")
    assert result.selected != 2 and not victim.selected
    assert math.isnan(result.scores[2])
    assert {"step": 3, "type": "non_finite", "trajectories": [2]} in result.trace.events
    data = strict_json(result.trace, tmp_path)
    assert data["trajectories"][2]["state"]["C"][3] is None and len(data["trajectories"][2]["state"]["C"]) == 4
    for event in result.trace.events:
        if event["type"] == "resample":
            assert event["step"] < 3 or 2 not in event["parents"]
    others = [r for r in result.trace.trajectories if r.index != 2]
    assert all(c is not None for r in others for c in r.state["C"])  # the broken row poisoned nobody


def test_every_trajectory_nonfinite_is_a_clear_error():
    from scalingar_core.errors import NonFiniteError
    model = PoisonedModel(victims=range(4), at=5)
    with pytest.raises(NonFiniteError) as err:
        generate(model, model.encode("a"), RunConfig(sampling=SamplingConfig(num_trajectories=4)))
    msg = str(err.value)
    assert "step 5 of 64" in msg and "float32" in msg and "bf16 or fp32" in msg and "lower CFG" in msg


def test_plain_sampling_without_the_profile_checks_its_logits_too():
    from scalingar_core.errors import NonFiniteError
    model = PoisonedModel(victims=[0], at=7, value=float("inf"))
    config = RunConfig(strategy="plain")
    with pytest.raises(NonFiniteError, match="step 7"):
        generate(model, model.encode("a"), config, observe=False)
    healthy = PoisonedModel(victims=[], at=0)
    assert generate(healthy, healthy.encode("a"), config, observe=False).trace.trajectories[0].removed_at is None


def test_nan_reward_is_never_resampled_nor_selected(tmp_path):
    from scalingar_core.errors import NonFiniteError
    model = ReferenceModel(grid=(8, 8))

    def reward(images):  # candidate 0 scores NaN, the others by mean brightness
        scores = images.mean(dim=(1, 2, 3))
        scores[0] = float("nan")
        return scores
    result = generate(model, model.encode("a"), RunConfig(strategy="importance_sampling"), reward=reward)
    resamples = [e for e in result.trace.events if e["type"] == "resample"]
    assert resamples and all(0 not in e["parents"] for e in resamples)
    assert len({p for e in resamples for p in e["parents"]}) > 1  # not every slot onto one trajectory
    strict_json(result.trace, tmp_path)
    best = generate(model, model.encode("a"), RunConfig(strategy="best_of_n"), reward=reward)
    assert best.selected != 0
    with pytest.raises(NonFiniteError, match="reward"):
        generate(model, model.encode("a"), RunConfig(strategy="best_of_n"),
                 reward=lambda images: [float("nan")] * images.shape[0])


def test_finite_weights_ignore_nonfinite_scores():
    from scalingar_core.engine.baselines import finite_weights
    w = finite_weights(torch.tensor([0.5, float("nan"), 0.2, float("inf")]), 10.0)
    assert w[1] == 0 and w[3] == 0 and torch.isclose(w.sum(), torch.tensor(1.0)) and w[0] > w[2]
    assert torch.equal(finite_weights(torch.tensor([float("nan")] * 4), 10.0), torch.full((4,), 0.25))


def test_an_infinite_value_does_not_poison_the_rolling_pool():
    slot, live = torch.tensor(0), torch.ones(3, dtype=torch.bool)
    ring = ring_push(torch.full((4, 3), float("nan")), slot, torch.tensor([1.0, float("inf"), 3.0]), live)
    mean, std = ring_mean_std(ring, slot, "pooled")
    low, high = ring_min_max(ring, slot, "pooled")
    assert torch.allclose(mean, torch.tensor(2.0)) and torch.allclose(std, torch.tensor(1.0))
    assert (float(low), float(high)) == (1.0, 3.0)
