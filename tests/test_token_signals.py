"""The extra per-token signals (not in the paper): DeepConf's token and lowest group confidence, and the
guidance gap of the sampled token, as pure functions and as recorded in a run's trace."""
import math

import torch

from scalingar_core.engine.config import RunConfig
from scalingar_core.engine.loop import generate
from scalingar_core.engine.token_signals import (
    guidance_gap,
    lowest_group_confidence,
    topk_confidence,
)
from scalingar_core.testing.reference_model import ReferenceModel


def test_topk_confidence_is_minus_the_mean_top_k_log_probability():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.0, 0.0, 0.0, 0.0]])
    logp = torch.log_softmax(logits, -1)
    assert torch.allclose(topk_confidence(logits, 2), -(logp[:, :2].mean(-1)))
    assert torch.allclose(topk_confidence(logits, 2)[1], torch.tensor(math.log(4.0)))  # uniform: log |V|
    peaked = torch.tensor([[20.0, 0.0, 0.0, 0.0]])
    assert topk_confidence(peaked, 2) > topk_confidence(logits[:1], 2)  # more peaked, more confident
    assert torch.allclose(topk_confidence(logits, 99), topk_confidence(logits, 4))  # k past |V|: all tokens


def test_guidance_gap_is_what_the_prompt_added_to_the_sampled_token():
    cond = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    uncond = torch.zeros(2, 3)
    gap = guidance_gap(cond, uncond, torch.tensor([0, 2]))
    expected0 = torch.log_softmax(cond[0], -1)[0] - math.log(1 / 3)
    assert torch.allclose(gap, torch.stack([expected0, torch.tensor(0.0)]))
    assert guidance_gap(cond, uncond, torch.tensor([1, 0]))[0] < 0  # the prompt lowered token 1


def test_lowest_group_confidence_is_the_minimum_sliding_window_mean():
    values = torch.tensor([[1.0, 2.0, 3.0, 0.0, 5.0, 6.0], [4.0, 4.0, 4.0, 4.0, 4.0, 4.0]])
    brute = [min(sum(row[i:i + 3]) / 3 for i in range(4)) for row in values.tolist()]
    assert torch.allclose(lowest_group_confidence(values, 3), torch.tensor(brute))
    assert torch.allclose(lowest_group_confidence(values, 1), values.amin(-1))  # window 1: the minimum
    assert torch.allclose(lowest_group_confidence(values, 50), values.mean(-1))  # longer than a row: the mean


def test_a_run_records_the_extra_signals_for_every_step_when_asked():
    from scalingar_core.engine.loop import generate_batch

    model = ReferenceModel(grid=(8, 8))
    plain = generate(model, model.encode("a"), RunConfig(strategy="best_of_n"))  # not asked: not computed
    assert all(v is None for r in plain.trace.trajectories for v in r.signals["topk_conf_5"])
    (result,) = generate_batch(model, [model.encode("a")], [RunConfig(strategy="best_of_n")], extra_signals=True)
    assert torch.equal(result.codes, plain.codes)
    for r in result.trace.trajectories:
        for name in ("guidance_gap", "topk_conf_5", "topk_conf_20"):
            assert len(r.signals[name]) == 64 and all(v is not None and math.isfinite(v) for v in r.signals[name])
        assert all(v > 0 for v in r.signals["topk_conf_5"])  # −log p of top tokens: positive
    gaps = [v for r in result.trace.trajectories for v in r.signals["guidance_gap"]]
    assert max(gaps) - min(gaps) > 1e-3  # not a constant: the prompt matters token by token
