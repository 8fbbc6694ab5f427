"""Each equation of the profile level (v3 (v1) numbers, docs/method.md) against values computed by hand."""
import math

import pytest
import torch

from scalingar_core.engine import confidence as eq


def test_entropy_margin_uniform_and_peaked():
    v = 8
    h, m, _ = eq.entropy_and_margin(torch.zeros(1, v))
    assert h.item() == pytest.approx(1.0, abs=1e-6)  # uniform: H = log V, normalised to 1
    assert m.item() == pytest.approx(0.0, abs=1e-7)
    probs = torch.tensor([[0.7, 0.2, 0.1]])
    h, m, _ = eq.entropy_and_margin(probs.log())
    expected = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1)) / math.log(3)
    assert h.item() == pytest.approx(expected, rel=1e-5)
    assert m.item() == pytest.approx(0.5, abs=1e-6)


def test_entropy_ignores_masked_tokens():
    logits = torch.tensor([[0.0, 0.0, float("-inf"), float("-inf")]])
    h, m, _ = eq.entropy_and_margin(logits)
    assert h.item() == pytest.approx(math.log(2) / math.log(4), rel=1e-6)


def test_token_confidence_eq5():
    c = eq.token_confidence(torch.tensor([0.4]), torch.tensor([0.1]), 0.5, 0.5)
    assert c.item() == pytest.approx(1 - (0.5 * 0.4 + 0.5 * 0.9))
    c = eq.token_confidence(torch.tensor([0.4]), torch.tensor([0.1]), 0.7, 0.3)
    assert c.item() == pytest.approx(1 - (0.7 * 0.4 + 0.3 * 0.9))


def test_ema_weights_the_new_value():
    assert eq.ema(torch.tensor(1.0), torch.tensor(0.0), 0.2).item() == pytest.approx(0.8)


def test_block_layout_and_worst_block_eq7():
    index, capacity = eq.block_layout((4, 8), 4)
    assert capacity.tolist() == [16, 16]
    assert index[:8].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    index, capacity = eq.block_layout((6, 6), 4)  # edge blocks are smaller
    assert capacity.tolist() == [16, 8, 8, 4]
    block_sum = torch.tensor([[8.0, 2.0, 1.0], [1.0, 6.0, 3.0]])
    count = torch.tensor([16.0, 16.0, 4.0])
    # block 2 is only 25 % filled: ineligible at ρ_min = 0.5; q = 0.1 of 2 eligible → 1 worst block
    worst = eq.worst_block_entropy(block_sum, count, torch.tensor([True, True, False]), 1)
    assert worst.tolist() == pytest.approx([0.5, 6.0 / 16])
    worst = eq.worst_block_entropy(block_sum, count, torch.tensor([True, True, True]), 2)  # 3 eligible, worst 2
    assert worst.tolist() == pytest.approx([(0.5 + 0.25) / 2, (0.75 + 6 / 16) / 2])
    assert eq.worst_block_entropy(block_sum, count, torch.tensor([False, False, False]), 0).isnan().all()
    for eligible, k in (([True, True, False], 1), ([True, True, True], 2), ([False, False, False], 0)):
        # the compiled step's fixed-width form (k a tensor) gives the same values
        eligible = torch.tensor(eligible)
        assert torch.allclose(eq.worst_block_entropy(block_sum, count, eligible, torch.tensor(k)),
                              eq.worst_block_entropy(block_sum, count, eligible, k), equal_nan=True)


def test_block_schedule_counts_fill_eligibility_and_worst_count():
    """Eq. 6 (7)'s per-step table, against counting the raster positions by hand on a 6×6 grid (b = 4)."""
    grid, b = (6, 6), 4
    sched = eq.block_schedule(grid, b, 0.5, 0.3, "cpu")
    index, capacity = eq.block_layout(grid, b)  # capacities 16, 8, 8, 4
    for t in range(36):
        filled = [sum(1 for p in range(t + 1) if int(index[p]) == k) for k in range(4)]
        assert sched.count[t].tolist() == filled
        eligible = [f / c >= 0.5 for f, c in zip(filled, capacity.tolist())]
        assert sched.eligible[t].tolist() == eligible
        assert sched.worst[t] == (max(1, math.ceil(0.3 * sum(eligible))) if any(eligible) else 0)
    assert sched.worst[0] == 0 and sched.worst[-1] == 2  # nothing eligible at first; ⌈0.3·4⌉ = 2 at the end


def test_block_stability_rolling_minmax():
    b = eq.block_stability(torch.tensor([0.3]), torch.tensor(0.2), torch.tensor(0.6), 1e-6)
    assert b.item() == pytest.approx(1 - 0.1 / (0.4 + 1e-6))


def test_intrinsic_raw_eq8():
    assert eq.intrinsic_raw(torch.tensor(0.4), torch.tensor(0.8), 0.65, 0.35).item() == pytest.approx(0.54)


def test_kl_eq9():
    pc = torch.tensor([[0.5, 0.5]])
    pu = torch.tensor([[0.9, 0.1]])
    k = eq.conditional_kl(pc.log(), pu.log())
    assert k.item() == pytest.approx(0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1), rel=1e-5)
    assert eq.conditional_kl(pu.log(), pu.log()).item() == pytest.approx(0, abs=1e-7)


def test_zscore_and_sigmoid_eq9_10():
    z = eq.rolling_zscore(torch.tensor(3.0), torch.tensor(1.0), torch.tensor(2.0), 0.0)
    assert z.item() == pytest.approx(1.0)
    assert eq.drift_score(torch.tensor(0.0)).item() == pytest.approx(0.5)
    assert eq.drift_score(torch.tensor(1.0)).item() == pytest.approx(1 / (1 + math.e ** -1))


def test_unified_confidence_eq11_and_calibration():
    c = eq.unified_confidence(torch.tensor(0.4), torch.tensor(0.8), 0.75, 0.25)
    assert c.item() == pytest.approx(0.5)
    cal = eq.unified_confidence(torch.tensor(0.4), torch.tensor(0.8), 0.75, 0.25, (6.0, -3.0))
    assert cal.item() == pytest.approx(0.5)  # σ(6·0.5 − 3) = σ(0)
    cal = eq.unified_confidence(torch.tensor(0.6), torch.tensor(0.6), 0.75, 0.25, (6.0, -3.0))
    assert cal.item() == pytest.approx(1 / (1 + math.exp(-(6 * 0.6 - 3))))


def test_rebound_eq12():
    assert eq.rebound(torch.tensor(0.42), torch.tensor(0.40), 0.0).item() == pytest.approx(0.05)
    assert eq.rebound(torch.tensor(0.40), torch.tensor(0.40), 1e-6).item() == 0.0


def test_self_certainty_is_zero_for_uniform():
    flat = torch.zeros(1, 16)
    assert eq.self_certainty(flat, torch.logsumexp(flat, -1)).item() == pytest.approx(0.0, abs=1e-6)
    peaked = torch.tensor([[5.0] + [0.0] * 15])
    logp = torch.log_softmax(peaked, -1)
    expected = -(1 / 16) * (logp + math.log(16)).sum().item()
    assert eq.self_certainty(peaked, torch.logsumexp(peaked, -1)).item() == pytest.approx(expected, rel=1e-5)
