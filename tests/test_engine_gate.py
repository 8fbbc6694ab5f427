"""Every rule of the adaptive termination gate, driven with synthetic confidence sequences."""
import math

import pytest
import torch

from scalingar_core.config import GateConfig
from scalingar_core.history import History
from scalingar_core.termination import BASIN, HARD_FAIL, KEEP, TerminationGate, guard_survivors


def drive(cfg: GateConfig, sequences, steps):
    """Feed per-trajectory C sequences (functions of t) to a gate; return {index: (step, reason)}."""
    n = len(sequences)
    hist = History(n, steps, "cpu")
    gate = TerminationGate(cfg, steps, n, "cpu", hist)
    ids = torch.arange(n)
    c_min = torch.full((n,), float("inf"))
    removed, thetas = {}, []
    for t in range(steps):
        c = torch.tensor([sequences[i](t) for i in ids.tolist()])
        c_min = torch.minimum(c_min, c)
        r = (c - c_min) / (c_min.abs() + 1e-6)
        hist.record(t, ids, C=c)
        reason = gate.decide(t, ids, c, c_min, r)
        thetas.append(gate.theta.item())
        keep = reason == KEEP
        for i, why in zip(ids[~keep].tolist(), reason[~keep].tolist()):
            removed[i] = (t, why)
        ids, c_min = ids[keep], c_min[keep]
        gate.state.keep(torch.nonzero(keep).squeeze(1))
    return removed, thetas, gate


HIGH = lambda t: 0.6  # noqa: E731


def test_warmup_no_threshold_and_no_pruning():
    cfg = GateConfig(warmup_fraction=0.25, protection_fraction=0.25, recovery_window=4)
    removed, thetas, gate = drive(cfg, [HIGH, HIGH, lambda t: 0.3], 16)
    assert gate.warmup == 4
    assert all(math.isnan(x) for x in thetas[:4]) and not math.isnan(thetas[4])
    assert all(step >= 4 for step, _ in removed.values())


def test_threshold_initialised_at_quantile_of_warmup_pool():
    cfg = GateConfig(warmup_fraction=0.25, quantile=0.2, recovery_window=100)
    seqs = [lambda t, k=k: 0.1 * k + 0.01 * t + 0.2 for k in range(5)]
    _, thetas, _ = drive(cfg, seqs, 16)
    pool = torch.tensor([[0.1 * k + 0.01 * t + 0.2 for t in range(4)] for k in range(5)])
    assert thetas[4] == pytest.approx(torch.quantile(pool.reshape(-1), 0.2).item(), rel=1e-5)


def test_threshold_init_current_reading():
    cfg = GateConfig(warmup_fraction=0.25, quantile=0.5, theta_init="current", recovery_window=100)
    seqs = [lambda t, k=k: 0.2 + 0.1 * k for k in range(5)]
    _, thetas, _ = drive(cfg, seqs, 8)
    assert thetas[2] == pytest.approx(0.4, rel=1e-5)


def test_k_step_ema_updates_only_every_k_steps():
    cfg = GateConfig(warmup_fraction=0.125, update_interval=4, lambda_theta=0.2, recovery_window=100)
    seqs = [lambda t, k=k: 0.3 + 0.02 * t + 0.05 * k for k in range(4)]
    _, thetas, _ = drive(cfg, seqs, 32)
    w = 4
    changes = [t for t in range(w + 1, 32) if thetas[t] != thetas[t - 1]]
    assert changes == [t for t in range(w + 1, 32) if (t - w) % 4 == 0]
    # the EMA step itself, from the C values of the last K steps of the active trajectories
    t = w + 4
    recent = torch.tensor([[0.3 + 0.02 * s + 0.05 * k for s in range(t - 3, t + 1)] for k in range(4)])
    q = torch.quantile(recent.reshape(-1), 0.2).item()
    assert thetas[t] == pytest.approx(0.8 * thetas[t - 1] + 0.2 * q, rel=1e-5)


def test_basin_kill_after_recovery_window():
    cfg = GateConfig(warmup_fraction=0.125, protection_fraction=0.125, recovery_window=8, hard_fail=0.05)
    low = lambda t: 0.5 if t < 8 else 0.2  # drops at t=8 and stays flat at its own minimum  # noqa: E731
    removed, thetas, _ = drive(cfg, [HIGH, HIGH, HIGH, low], 64)
    assert removed == {3: (8 + 8, BASIN)}  # flagged at t=8, killed once 8 steps passed without rebound


def test_transient_dip_that_recovers_survives():
    cfg = GateConfig(warmup_fraction=0.125, protection_fraction=0.125, recovery_window=8, hard_fail=0.05)
    # dips below θ, then climbs by ≥ δ_gap above its minimum and keeps rebounding
    dip = lambda t: 0.6 if t < 10 else (0.25 if t < 12 else 0.25 + 0.03 * (t - 11))  # noqa: E731
    removed, thetas, _ = drive(cfg, [HIGH, HIGH, HIGH, dip], 40)
    assert 3 not in removed
    # without the recovery safeguard the same dip is a basin kill
    strict = GateConfig(warmup_fraction=0.125, protection_fraction=0.125, recovery_window=8, hard_fail=0.05,
                        delta_gap=10.0, delta_rec=10.0)
    removed, _, _ = drive(strict, [HIGH, HIGH, HIGH, dip], 40)
    assert removed.get(3, (None, None))[1] == BASIN


def test_hard_fail_is_immediate_after_protection_horizon():
    cfg = GateConfig(warmup_fraction=0.125, protection_fraction=0.25, hard_fail=0.1)
    crash = lambda t: 0.5 if t < 3 else 0.05  # noqa: E731
    removed, _, _ = drive(cfg, [HIGH, HIGH, crash], 32)
    assert removed == {2: (8, HARD_FAIL)}  # protected until H_prot = 8, then removed at once


def test_relative_hard_fail_reading():
    cfg = GateConfig(warmup_fraction=0.125, protection_fraction=0.125, hard_fail=0.5, hard_fail_mode="relative")
    crash = lambda t: 0.5 if t < 6 else 0.2  # below 0.5·θ ≈ 0.25 once θ exists  # noqa: E731
    removed, _, _ = drive(cfg, [HIGH, HIGH, HIGH, crash], 32)
    assert removed[3] == (6, HARD_FAIL)


def test_min_survivor_guard_keeps_most_confident():
    cfg = GateConfig(warmup_fraction=0.125, protection_fraction=0.125, hard_fail=0.5)
    seqs = [lambda t: 0.3, lambda t: 0.35, lambda t: 0.2]  # everyone is under the hard-fail floor
    removed, _, _ = drive(cfg, seqs, 16)
    assert set(removed) == {0, 2}
    cfg2 = GateConfig(warmup_fraction=0.125, protection_fraction=0.125, hard_fail=0.5, min_survivors=2)
    removed, _, _ = drive(cfg2, seqs, 16)
    assert set(removed) == {2}


def test_guard_survivors_unit():
    kill = torch.tensor([True, False, True, True])
    c = torch.tensor([0.9, 0.1, 0.5, 0.2])
    assert guard_survivors(kill, c, 1).tolist() == [True, False, True, True]
    assert guard_survivors(kill, c, 2).tolist() == [False, False, True, True]
    assert guard_survivors(torch.ones(3, dtype=torch.bool), torch.tensor([0.1, 0.3, 0.2]), 1).tolist() == [True, False, True]


def test_recovery_reference_flag_reading():
    # set a deep minimum early, then hover below θ but 0.03 above that minimum: with the running-minimum
    # reference the hovering counts as a rebound forever; measured from the flagging point it is a basin
    hover = lambda t: 0.1 if t == 5 else (0.6 if t < 8 else 0.13)  # noqa: E731
    base = dict(warmup_fraction=0.125, protection_fraction=0.125, recovery_window=6, hard_fail=0.05)
    removed, _, _ = drive(GateConfig(**base), [HIGH, HIGH, HIGH, hover], 40)
    assert 3 not in removed
    removed, _, _ = drive(GateConfig(recovery_reference="flag", **base), [HIGH, HIGH, HIGH, hover], 40)
    assert removed[3] == (8 + 6, BASIN)


def test_reset_starts_a_fresh_probation():
    # the random-prune control spares rows the gate condemned: they must not stay condemned
    cfg = GateConfig(warmup_fraction=0.125, protection_fraction=0.125, recovery_window=4, hard_fail=0.0)
    n, steps = 4, 32
    hist = History(n, steps, "cpu")
    gate = TerminationGate(cfg, steps, n, "cpu", hist)
    ids = torch.arange(n)
    kills = []
    for t in range(steps):
        c = torch.tensor([0.6, 0.6, 0.6, 0.5 if t < 8 else 0.2])
        c_min = torch.tensor([0.6, 0.6, 0.6, 0.5 if t < 8 else 0.2])
        hist.record(t, ids, C=c)
        reason = gate.decide(t, ids, c, c_min, torch.zeros(n))
        if reason[3] == BASIN:
            kills.append(t)
            gate.reset([3])
    # θ first exceeds 0.5 at t = 5 (flagged), basin kill 4 steps later; after each reset the row is flagged
    # again on the next step and needs a whole window before it can be condemned again
    assert kills[:3] == [9, 14, 19]
