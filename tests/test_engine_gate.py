"""Every rule of the adaptive termination gate, driven with synthetic confidence sequences."""
import math

import pytest
import torch

from scalingar_core.engine.config import GateConfig
from scalingar_core.engine.gate import (
    BASIN,
    HARD_FAIL,
    KEEP,
    TerminationGate,
    guard_survivors,
    tokens_spent,
)
from scalingar_core.engine.history import History
from scalingar_core.engine.replay import replay


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
    base = dict(warmup_fraction=0.125, protection_fraction=0.125, recovery_window=6, hard_fail=0.05,
                probation="continuous")
    removed, _, _ = drive(GateConfig(recovery_reference="running_min", **base), [HIGH, HIGH, HIGH, hover], 40)
    assert 3 not in removed
    removed, _, _ = drive(GateConfig(recovery_reference="flag", **base), [HIGH, HIGH, HIGH, hover], 40)
    assert removed[3] == (8 + 6, BASIN)


def test_defaults_are_the_budget_reading():
    cfg = GateConfig()
    assert (cfg.probation, cfg.recovery_reference) == ("end_of_window", "flag")


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


# ------------------------------------------------------------------ readings of probation and rebound (A12)

def _traces(test_trace, steps=40):
    """Three steady trajectories at 0.6 and one under test: θ settles between 0.44 and 0.5."""
    return torch.tensor([[0.6] * steps] * 3 + [[test_trace(t) for t in range(steps)]])


def _removed_at(cfg, trace, steps=40):
    removed = replay(cfg, _traces(trace, steps))
    assert set(removed) <= {3}
    return removed.get(3, (None, None))


READING = dict(warmup_fraction=0.2, protection_fraction=0.2, recovery_window=8, hard_fail=0.05)  # W0 = 8 at T = 40


def test_probation_continuous_restarts_after_a_step_above_theta_window_does_not():
    # below θ from t = 8, one step above θ at t = 12 (no rebound counts: δ's disabled), then below again
    trace = lambda t: 0.5 if t < 8 else (0.55 if t == 12 else 0.2)  # noqa: E731
    no_rebound = dict(READING, delta_gap=10.0, delta_rec=10.0)
    assert _removed_at(GateConfig(probation="continuous", **no_rebound), trace) == (13 + 8, BASIN)
    assert _removed_at(GateConfig(probation="window", **no_rebound), trace) == (8 + 8, BASIN)
    assert _removed_at(GateConfig(probation="end_of_window", **no_rebound), trace) == (8 + 8, BASIN)


def test_a_passing_rebound_clears_window_but_end_of_window_judges_the_last_step():
    # flagged at 8 with C = 0.2; rebounds to 0.25 at t = 11 (≥ δ_gap above the flag), back to 0.2
    trace = lambda t: 0.5 if t < 8 else (0.25 if t == 11 else 0.2)  # noqa: E731
    cfg = dict(READING, recovery_reference="flag")
    assert _removed_at(GateConfig(probation="window", **cfg), trace) == (12 + 8, BASIN)  # new window from 12
    assert _removed_at(GateConfig(probation="continuous", **cfg), trace) == (11 + 8, BASIN)  # count from 11
    assert _removed_at(GateConfig(probation="end_of_window", **cfg), trace) == (8 + 8, BASIN)  # not held at 16


def test_end_of_window_clears_a_trajectory_that_holds_its_rebound_or_is_back_above_theta():
    held = lambda t: 0.5 if t < 8 else (0.2 if t < 12 else 0.26)  # noqa: E731  still below θ, but rebounded
    above = lambda t: 0.5 if t < 8 else (0.2 if t < 14 else 0.65)  # noqa: E731  back above θ at t = 16
    cfg = GateConfig(probation="end_of_window", recovery_reference="flag", **READING)
    # held its rebound at 16: cleared; flagged again at 17 with 0.26 as reference, no rebound from that at 25
    assert _removed_at(cfg, held) == (17 + 8, BASIN)
    assert _removed_at(cfg, above, 40) == (None, None)


def test_rebound_reference_running_min_flag_and_min_since_flag():
    # an early low in warm-up (0.15 at t = 2), then a slow decline below θ: 5 % above the all-time low forever
    decline = lambda t: (0.15 if t == 2 else 0.5) if t < 8 else 0.3 - 0.001 * (t - 8)  # noqa: E731
    # flagged at 0.3, falls to 0.2, then holds 0.23: a rebound from its new low, not from the flag point
    dip = lambda t: 0.5 if t < 8 else (0.3 if t == 8 else (0.2 if t < 12 else 0.23))  # noqa: E731
    for probation in ("window", "continuous"):
        run = lambda trace, ref: _removed_at(GateConfig(probation=probation, recovery_reference=ref, **READING),  # noqa: E731
                                             trace)
        assert run(decline, "running_min") == (None, None)  # the all-time minimum says "recovering" forever
        assert run(decline, "flag") == (16, BASIN) and run(decline, "min_since_flag") == (16, BASIN)
        assert run(dip, "flag") == (16, BASIN)
        assert run(dip, "running_min") == (None, None)  # 0.03 above C_min = 0.2 at every step from 12
    window = lambda ref: _removed_at(GateConfig(probation="window", recovery_reference=ref, **READING), dip)  # noqa: E731
    assert window("min_since_flag") == (13 + 8, BASIN)  # rebound at 12 clears; new window 13..21 at 0.23


def test_replay_counts_tokens_like_the_sampler():
    steps = 40
    trace = lambda t: 0.5 if t < 8 else 0.2  # noqa: E731
    cfg = GateConfig(probation="window", recovery_reference="flag", **READING)
    removed = replay(cfg, _traces(trace, steps))
    assert removed == {3: (16, BASIN)} and tokens_spent(removed, 4, steps) == 3 * steps + 17
    # the guard keeps the last min_survivors even when all of them are in the basin
    lows = torch.full((3, steps), 0.2)
    lows[:, :8] = 0.5
    lows[2, 8:] = 0.25
    removed = replay(GateConfig(probation="window", recovery_reference="flag", min_survivors=1, **READING), lows)
    assert len(removed) == 2 and 2 not in removed  # the most confident of the doomed survives
