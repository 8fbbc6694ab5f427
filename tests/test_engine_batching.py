"""Same results whatever the batching: a group's tokens, pruning decisions and selected image are the same
whether it runs alone, in lock-step with others, or is admitted mid-flight (continuous batching)."""
import pytest
import torch

from scalingar_core.engine.config import RunConfig
from scalingar_core.engine.loop import generate, generate_batch, run
from scalingar_core.engine.step import Group
from scalingar_core.models.llamagen.adapter import LlamaGenCondition, LlamaGenModel
from scalingar_core.testing.llamagen import random_gpt, random_vq, tiny_gpt_config
from scalingar_core.testing.reference_model import ReferenceModel

STRATEGIES = [("scalingar", 1), ("best_of_n", 2), ("random_prune", 3), ("importance_sampling", 4), ("plain", 5),
              ("scalingar", 6)]
# a gate that prunes within a short grid
SHORT_GATE = {"warmup_fraction": 0.25, "protection_fraction": 0.25, "recovery_window": 2, "quantile": 0.5}


def _config(strategy, seed, n, gate=None):
    return RunConfig.from_dict({"strategy": strategy, "sampling": {"seed": seed, "num_trajectories": n},
                                **({"gate": gate} if gate else {})})


def _outcome(result):
    removed = {r.index: r.removed_at for r in result.trace.trajectories if r.removed_at is not None}
    return result.codes, removed, result.selected, result.tokens_generated


def _run(model, jobs, max_rows):
    groups = [Group(model, c, k, key=i) for i, (c, k) in enumerate(jobs)]
    order = []
    results = {}
    for group, result in run(model, groups, max_rows=max_rows):
        order.append(group.key)
        results[group.key] = result
    return [results[i] for i in range(len(jobs))], order


def _check_same(model, jobs, max_rows_list):
    alone = [_outcome(generate(model, c, k, decode_all=False)) for c, k in jobs]
    for max_rows in max_rows_list:
        results, _ = _run(model, jobs, max_rows)
        for i, r in enumerate(results):
            codes, removed, selected, tokens = _outcome(r)
            assert torch.equal(codes, alone[i][0]), (max_rows, jobs[i][1].strategy)
            assert removed == alone[i][1] and selected == alone[i][2] and tokens == alone[i][3]
    return alone


def test_reference_model_every_strategy_alone_lockstep_and_admitted_mid_flight():
    model = ReferenceModel(vocab_size=32, grid=(6, 6))
    jobs = [(model.encode(f"prompt {i % 3}"), _config(s, seed, 6, SHORT_GATE)) for i, (s, seed) in enumerate(STRATEGIES)]
    alone = _check_same(model, jobs, [None, 6, 9, 14])
    assert any(removed for _, removed, _, _ in alone), "the gate must prune for the test to mean something"


def test_groups_with_one_plan_share_one_engine_step_and_decide_as_alone():
    """Groups that join together with the same settings (seeds and prompts may differ) form one cohort: one
    [G, N] state and one engine step for all, each group with its own θ, pools, guard and streams."""
    model = ReferenceModel(vocab_size=32, grid=(6, 6))
    jobs = [(model.encode(f"prompt {i}"), _config(s, seed, 5, SHORT_GATE))
            for i, (s, seed) in enumerate([("scalingar", 1), ("scalingar", 2), ("scalingar", 3), ("best_of_n", 4),
                                           ("best_of_n", 5)])]
    groups = [Group(model, c, k, key=i) for i, (c, k) in enumerate(jobs)]
    list(run(model, groups))
    assert [len(g.cohort.groups) for g in groups] == [3, 3, 3, 2, 2]
    alone = _check_same(model, jobs, [None])
    assert len({removed_at for _, removed, _, _ in alone[:3] for removed_at in removed.values()}) > 1, \
        "the groups must prune at different steps for the test to mean something"


def test_admission_happens_mid_flight_and_in_order():
    model = ReferenceModel(vocab_size=32, grid=(6, 6))
    jobs = [(model.encode("a"), _config("scalingar", seed, 4, SHORT_GATE)) for seed in range(5)]
    groups = [Group(model, c, k, key=i) for i, (c, k) in enumerate(jobs)]
    admitted_at = {}
    real_admit = run.__globals__["RowBatch"].admit

    def spy(self, joining):
        for g in joining:
            admitted_at[g.key] = max((h.t for h in groups if h.t > 0), default=0)
        return real_admit(self, joining)

    run.__globals__["RowBatch"].admit = spy
    try:
        list(run(model, groups, max_rows=6))
    finally:
        run.__globals__["RowBatch"].admit = real_admit
    assert sorted(admitted_at) == list(range(5))
    assert any(0 < step < 36 for step in admitted_at.values()), f"nobody joined mid-flight: {admitted_at}"


@pytest.mark.parametrize("model_type", ["c2i", "t2i"])
def test_llamagen_gpt_admits_mid_flight_with_per_row_positions(model_type):
    """Rows at different steps in one forward, each masked to its own prefix; t2i captions of different
    lengths (per-row padding). Float64 on CPU: the comparison can be exact."""
    gpt = random_gpt(tiny_gpt_config(model_type)).double()
    model = LlamaGenModel("tiny", gpt, random_vq())
    g = torch.Generator().manual_seed(0)
    conds = []
    for i in range(3):
        if model_type == "c2i":
            conds.append(LlamaGenCondition(f"class {i}", label=i))
        else:
            valid = 3 + 2 * i  # left padding, like LlamaGen: different caption lengths per prompt
            mask = (torch.arange(8) >= 8 - valid)[None]
            feats = torch.randn(1, 8, 16, generator=g, dtype=torch.float64) * mask[..., None]
            conds.append(LlamaGenCondition(f"caption {i}", features=feats, mask=mask))
    jobs = [(conds[i % 3], _config(s, seed, 4, SHORT_GATE)) for i, (s, seed) in enumerate(STRATEGIES)]
    with torch.inference_mode():
        alone = _check_same(model, jobs, [None, 4, 7])
    assert any(removed for _, removed, _, _ in alone)


def test_max_rows_below_one_image_is_refused():
    model = ReferenceModel()
    group = Group(model, model.encode("a"), _config("scalingar", 0, 8))
    with pytest.raises(ValueError, match="max_rows=4 .* 8 trajectories"):
        list(run(model, [group], max_rows=4))


def test_generate_batch_shares_histories_and_matches_one_at_a_time():
    model = ReferenceModel(vocab_size=32, grid=(6, 6))
    cond = model.encode("shared")
    configs = [_config(s, 7, 6, SHORT_GATE) for s in ("scalingar", "best_of_n", "plain", "random_prune")]
    batched = generate_batch(model, [cond] * 4, configs, decode_all=False)
    for config, result in zip(configs, batched):
        codes, removed, selected, tokens = _outcome(generate(model, cond, config, decode_all=False))
        assert torch.equal(result.codes, codes)
        assert _outcome(result)[1:] == (removed, selected, tokens)


def test_compiled_engine_step_is_one_graph_through_pruning_and_decides_as_eager():
    """--compile also compiles the engine's step whole: a group keeps its shape while rows leave (they are
    masked) and the step index is a tensor, so every step of a run, pruning included, reuses one graph
    (traced here with dynamo's cheap eager backend)."""
    import torch._dynamo.utils as dynamo_utils

    model = ReferenceModel(vocab_size=32, grid=(6, 6))
    cond = model.encode("compiled")
    config = _config("scalingar", 3, 4, SHORT_GATE)
    eager = generate(model, cond, config, decode_all=False)
    removals = lambda r: [(x.removed_at, x.removed_reason) for x in r.trace.trajectories]  # noqa: E731
    assert any(at is not None for at, _ in removals(eager)), "the gate must remove rows for this test to mean something"
    torch._dynamo.reset()
    dynamo_utils.counters.clear()
    model.compile_decode, model.compile_backend = True, "eager"
    compiled = generate(model, cond, config, decode_all=False)
    again = generate(model, cond, config, decode_all=False)
    assert dynamo_utils.counters["stats"]["unique_graphs"] == 1  # 36 steps, twice
    assert torch.equal(compiled.codes, eager.codes) and compiled.selected == eager.selected
    assert removals(compiled) == removals(eager)
    assert torch.equal(again.codes, compiled.codes)
    # three groups of one plan: one more graph, for their [3, N] cohort
    conds = [model.encode(f"compiled {i}") for i in range(3)]
    configs = [_config("scalingar", seed, 4, SHORT_GATE) for seed in range(3)]
    together = generate_batch(model, conds, configs, decode_all=False)
    assert dynamo_utils.counters["stats"]["unique_graphs"] == 2
    model.compile_decode = False
    for cond, config, result in zip(conds, configs, together):
        alone = generate(model, cond, config, decode_all=False)
        assert torch.equal(result.codes, alone.codes) and removals(result) == removals(alone)


def test_the_engine_step_compiled_by_inductor_decides_as_eager():
    """The real compiler (inductor; on a CPU with its C++ wrapper, the initial θ under torch.cond): the same
    tokens, removals and choice as the eager step."""
    model = ReferenceModel(vocab_size=32, grid=(6, 6))
    cond = model.encode("inductor")
    config = _config("scalingar", 5, 4, SHORT_GATE)
    eager = generate(model, cond, config, decode_all=False)
    model.compile_decode, model.compile_backend = True, "inductor"
    compiled = generate(model, cond, config, decode_all=False)
    removals = lambda r: [(x.removed_at, x.removed_reason) for x in r.trace.trajectories]  # noqa: E731
    assert any(at is not None for at, _ in removals(eager))
    assert torch.equal(compiled.codes, eager.codes) and compiled.selected == eager.selected
    assert removals(compiled) == removals(eager)
    for a, b in zip(eager.trace.trajectories, compiled.trace.trajectories):
        assert torch.allclose(torch.tensor(b.state["C"]), torch.tensor(a.state["C"]), atol=1e-5)


def test_a_model_whose_sessions_cannot_admit_runs_one_image_per_session():
    """Janus-Pro's sessions neither batch several conditions nor admit mid-flight: the queue falls back to one
    group per session, with the same results."""
    class Plain(ReferenceModel):
        start_batch = None

        def start(self, condition, n, guidance=True):
            session = super().start(condition, n, guidance)
            session.admits = False
            return session

    model = Plain(vocab_size=32, grid=(6, 6))
    jobs = [(model.encode(f"p{i}"), _config(s, seed, 4, SHORT_GATE)) for i, (s, seed) in enumerate(STRATEGIES[:4])]
    _check_same(model, jobs, [None, 8])
