"""Guidance scheduler, eq. 10 (v1 14–15): each term's direction, the deadband, the clamp, the readings."""
import pytest
import torch

from scalingar_core.engine.config import SchedulerConfig
from scalingar_core.engine.scheduler import (
    cfg_adjustment,
    cfg_target,
    cfg_update,
    volatility,
)


def test_adjustment_eq14_value_and_directions():
    d = cfg_adjustment(torch.tensor(0.4), torch.tensor(0.01), torch.tensor(0.1), 0.3, 0.4, 0.4)
    assert d.item() == pytest.approx(0.3 * 0.6 + 0.4 * 0.01 - 0.4 * 0.1)
    base = dict(vol=torch.tensor(0.0), r=torch.tensor(0.0), alpha=0.3, beta=0.4, gamma=0.4)
    # drift correction: a fading condition (low D̂) raises guidance
    assert cfg_adjustment(torch.tensor(0.2), **base) > cfg_adjustment(torch.tensor(0.8), **base)
    # volatility dampening term raises guidance with volatility
    assert cfg_adjustment(torch.tensor(0.5), torch.tensor(0.5), torch.tensor(0.0), 0.3, 0.4, 0.4) > \
        cfg_adjustment(torch.tensor(0.5), torch.tensor(0.0), torch.tensor(0.0), 0.3, 0.4, 0.4)
    # diversity reward: a rebound lowers guidance
    assert cfg_adjustment(torch.tensor(0.5), torch.tensor(0.0), torch.tensor(0.5), 0.3, 0.4, 0.4) < \
        cfg_adjustment(torch.tensor(0.5), torch.tensor(0.0), torch.tensor(0.0), 0.3, 0.4, 0.4)


def test_volatility_variance_and_std():
    w = torch.tensor([[1.0, 3.0], [2.0, 2.0]])
    assert volatility(w, "var").tolist() == [1.0, 0.0]
    assert volatility(w, "std").tolist() == [1.0, 0.0]
    assert volatility(torch.tensor([[0.5]]), "var").tolist() == [0.0]
    # the compiled step's fixed-width window starts with NaN before step L − 1: only recorded values count
    recorded = torch.tensor([[0.2, 0.9, 0.4], [0.3, 0.3, 0.3]])
    padded = torch.cat([torch.full((2, 5), float("nan")), recorded], 1)
    for measure in ("var", "std"):
        assert torch.allclose(volatility(padded, measure, padded=True), volatility(recorded, measure))


def test_targets_additive_and_multiplicative():
    assert cfg_target(7.5, torch.tensor(0.2), "additive").item() == pytest.approx(7.7)
    assert cfg_target(7.5, torch.tensor(0.2), "multiplicative").item() == pytest.approx(9.0)


def test_update_smooths_toward_target():
    cfg = SchedulerConfig()
    s = cfg_update(torch.tensor([7.5]), torch.tensor([7.8]), cfg, 7.5)
    assert s.item() == pytest.approx(0.8 * 7.5 + 0.2 * 7.8)


def test_deadband_holds_small_moves():
    cfg = SchedulerConfig(deadband=0.05)
    prev = torch.tensor([7.5, 7.5])
    s = cfg_update(prev, torch.tensor([7.54, 7.56]), cfg, 7.5)
    assert s[0].item() == 7.5  # |s* − s| < δ_db: unchanged
    assert s[1].item() == pytest.approx(0.8 * 7.5 + 0.2 * 7.56)


def test_clamp_bounds():
    cfg = SchedulerConfig(clamp_below=2.0, clamp_above=2.0, eta=1.0)
    s = cfg_update(torch.tensor([7.5, 7.5]), torch.tensor([20.0, -5.0]), cfg, 7.5)
    assert s.tolist() == [9.5, 5.5]
    s = cfg_update(torch.tensor([1.5]), torch.tensor([-3.0]), cfg, 1.5)
    assert s.item() == 1.0  # never below min_scale


def test_integrating_reading():
    cfg = SchedulerConfig(update="integrating", eta=0.5, deadband=0.0)
    s = cfg_update(torch.tensor([8.0]), torch.tensor([7.9]), cfg, 7.5)  # Δs = 0.4
    assert s.item() == pytest.approx(8.2)
