"""The static-shape decode step: compiled equals eager, one graph per batch size and no recompilation, the
padding-free cache equals the masked path, a 2-row prefill, and CFG <= 1 without unconditional rows."""
import pytest
import torch
import torch._dynamo.utils as dynamo_utils

from scalingar_core.engine.config import (
    GateConfig,
    RunConfig,
    SamplingConfig,
    SchedulerConfig,
)
from scalingar_core.engine.loop import generate
from scalingar_core.engine.sampling import guided_logits, stream_table, stream_uniform
from scalingar_core.models import gpt as gpt_module
from scalingar_core.models.compile import CompiledDecoder
from scalingar_core.models.gpt_session import GPTSession
from scalingar_core.testing.llamagen import random_gpt, tiny_gpt_config
from scalingar_core.testing.reference_model import ReferenceModel


def _caption(valid=5, side="left", seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.arange(8) >= 8 - valid if side == "left" else torch.arange(8) < valid
    feats = torch.randn(1, 8, 16, generator=g)
    if side == "left":
        feats = feats * mask[None, :, None]  # LlamaGen zeroes the pad slots; AR-GRPO keeps T5's outputs
    return feats, mask[None]


def _decode(session, tokens, keep_at=None, rows=None):
    """Logits of prefill + one step per column of ``tokens`` (optionally compacting to ``rows`` first)."""
    out = [session.prefill()]
    for i in range(tokens.shape[1]):
        if i == keep_at:
            session.keep(rows)
            tokens = tokens[rows]
        out.append(session.step(tokens[:, i]))
    return out


def _graphs() -> int:
    return dynamo_utils.counters["stats"]["unique_graphs"]


@pytest.fixture
def eager_backend_model():
    """A tiny GPT whose compiled decoder traces with dynamo's eager backend (guards and graphs are the same
    as with inductor, minus the code generation), so graph counting costs no C++ compile."""
    model = random_gpt(tiny_gpt_config())
    model.__dict__["_compiled_decoder"] = CompiledDecoder(model, backend="eager")
    return model


@pytest.mark.slow
def test_compiled_step_equals_eager_and_compiles_once():
    """Inductor (one cold compile, ~20-50 s on 2 cores): fp32 logits within rounding, one graph for 15 steps."""
    model = random_gpt(tiny_gpt_config())
    feats, mask = _caption()
    tokens = torch.randint(0, 64, (2, 15), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        eager = _decode(GPTSession(model, feats, 2, cond_mask=mask), tokens)
        dynamo_utils.counters.clear()
        compiled = _decode(GPTSession(model, feats, 2, cond_mask=mask, compiled=True), tokens)
    assert _graphs() == 1  # every step replays the same graph: no recompilation on the position
    assert max(float((a - b).abs().max()) for a, b in zip(eager, compiled)) <= 1e-5
    assert float(eager[-1].abs().max()) > 1  # real logits, not near-zero ones


def test_one_graph_per_batch_size_and_none_across_steps_or_runs(eager_backend_model):
    model = eager_backend_model
    feats, mask = _caption()
    tokens = torch.randint(0, 64, (3, 14), generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        dynamo_utils.counters.clear()
        ref = _decode(GPTSession(model, feats, 3, cond_mask=mask), tokens, 6, torch.tensor([2, 0]))
        got = _decode(GPTSession(model, feats, 3, cond_mask=mask, compiled=True), tokens, 6, torch.tensor([2, 0]))
        assert _graphs() == 2  # 3 trajectories (6 rows), then 2 (4 rows)
        _decode(GPTSession(model, feats, 3, cond_mask=mask, compiled=True), tokens, 6, torch.tensor([2, 0]))
        assert _graphs() == 2  # a second run of the same sizes reuses both graphs
    for a, b in zip(ref, got):
        assert a.shape == b.shape and float((a - b).abs().max()) <= 1e-5


def test_only_the_newest_compiled_session_of_a_model_may_step(eager_backend_model):
    feats, mask = _caption()
    with torch.inference_mode():
        old = GPTSession(eager_backend_model, feats, 2, cond_mask=mask, compiled=True)
        old.prefill()
        new = GPTSession(eager_backend_model, feats, 2, cond_mask=mask, compiled=True)
        new.prefill()
        with pytest.raises(RuntimeError, match="newer compiled session"):
            old.step(torch.zeros(2, dtype=torch.long))


def test_compiled_generation_is_deterministic_and_survivors_keep_their_tokens(eager_backend_model):
    from scalingar_core.models.llamagen.adapter import LlamaGenCondition, LlamaGenModel
    from scalingar_core.testing.llamagen import random_vq

    model = LlamaGenModel("tiny", eager_backend_model, random_vq())
    model.compile_decode = True
    feats, mask = _caption()
    cond = LlamaGenCondition("x", features=feats, mask=mask)
    off = SchedulerConfig(enabled=False)

    def run(gate):
        return generate(model, cond, RunConfig(gate=gate, scheduler=off, sampling=SamplingConfig(seed=5)),
                        decode_all=False)
    with torch.inference_mode():
        pruned = run(GateConfig(recovery_window=2, warmup_fraction=0.25, protection_fraction=0.25, quantile=0.5))
        again = run(GateConfig(recovery_window=2, warmup_fraction=0.25, protection_fraction=0.25, quantile=0.5))
        full = run(GateConfig(enabled=False))
    gone = {r.index: r.removed_at for r in pruned.trace.trajectories if r.removed_at is not None}
    assert 0 < len(gone) < 8
    assert torch.equal(pruned.codes, again.codes) and pruned.trace.to_dict() == again.trace.to_dict()
    for i in range(8):
        upto = 16 if i not in gone else gone[i] + 1
        assert torch.equal(pruned.codes[i, :upto], full.codes[i, :upto])


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_free_cache_equals_the_masked_path(side, monkeypatch):
    """After prefill the cache holds only the valid caption slots; decoding then runs without any mask and
    matches teacher forcing with upstream's masks (left padding: LlamaGen, right: AR-GRPO)."""
    model = random_gpt(tiny_gpt_config())
    feats, mask = _caption(valid=5, side=side)
    tokens = torch.randint(0, 64, (3, 16), generator=torch.Generator().manual_seed(6))
    masks = []
    sdpa = gpt_module.F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kw):
        masks.append((q.shape[2], attn_mask))
        return sdpa(q, k, v, attn_mask=attn_mask, **kw)
    monkeypatch.setattr(gpt_module.F, "scaled_dot_product_attention", spy)
    session = GPTSession(model, feats, 3, cond_mask=mask)
    cached = torch.stack(_decode(session, tokens[:, :-1]), 1)
    assert session._slot == 5 + 15  # 5 caption slots kept, the 3 padded ones dropped
    decode_masks = [m for q_len, m in masks if q_len == 1]
    assert len(decode_masks) == 15 * model.config.n_layer and all(m is None for m in decode_masks)
    monkeypatch.setattr(gpt_module.F, "scaled_dot_product_attention", sdpa)
    full_c = model(feats.expand(3, -1, -1), tokens, mask.expand(3, -1))
    full_u = model(feats.expand(3, -1, -1), tokens, mask.expand(3, -1), drop=torch.ones(3, dtype=torch.bool))
    assert (cached[:3] - full_c).abs().max() <= 1e-5
    assert (cached[3:] - full_u).abs().max() <= 1e-5


def test_prefill_runs_one_row_per_distinct_condition(monkeypatch):
    model = random_gpt(tiny_gpt_config())
    feats, mask = _caption()
    rows = []
    trunk = model.trunk
    monkeypatch.setattr(model, "trunk", lambda x, *a, **k: (rows.append(x.shape[0]), trunk(x, *a, **k))[1])
    session = GPTSession(model, feats, 8, cond_mask=mask)
    logits = session.prefill()
    assert rows == [2] and logits.shape == (16, 64)  # cond + null prefilled once, expanded to 2N rows
    assert torch.equal(logits[0], logits[7]) and torch.equal(logits[8], logits[15])
    assert session.caches[0].k.shape[0] == 16
    rows.clear()
    GPTSession(model, feats.expand(3, -1, -1) + torch.randn(3, 1, 16), 3, cond_mask=mask).prefill()
    assert rows == [4]  # three different captions + one null row


def test_different_masks_per_row_are_refused():
    model = random_gpt(tiny_gpt_config())
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, :3] = False
    with pytest.raises(ValueError, match="share one caption mask"):
        GPTSession(model, torch.randn(2, 8, 16), 2, cond_mask=mask)


def test_cfg_at_most_one_samples_the_conditional_rows_alone():
    """Upstream's CFG <= 1: conditional logits only. Plain sampling without the profile then decodes N rows
    instead of 2N and draws exactly the tokens the full CFG batch gives at scale 1."""
    cond, uncond = torch.randn(3, 10), torch.randn(3, 10)
    for s in (1.0, 0.5, 0.0):
        assert torch.equal(guided_logits(cond, uncond, torch.full((3,), s)), cond)
    assert not torch.equal(guided_logits(cond, uncond, torch.full((3,), 1.5)), cond)
    model = ReferenceModel(grid=(4, 4))
    rows = []
    start = model.start

    def spy_start(c, n, **kw):
        session = start(c, n, **kw)
        step = session.step
        session.step = lambda tokens: (lambda out: (rows.append(out.shape[0]), out)[1])(step(tokens))
        return session
    model.start = spy_start
    config = RunConfig(strategy="plain", sampling=SamplingConfig(cfg_scale=1.0, seed=2))
    half = generate(model, model.encode("a"), config, observe=False)
    assert set(rows) == {1}  # one trajectory, no unconditional row
    rows.clear()
    observed = generate(model, model.encode("a"), config)  # the profile needs the unconditional rows (eq. 7 (9))
    assert set(rows) == {2}
    assert torch.equal(half.codes, observed.codes)
    rows.clear()
    generate(model, model.encode("a"), RunConfig(strategy="plain", sampling=SamplingConfig(cfg_scale=2.0)),
             observe=False)
    assert set(rows) == {2}  # real guidance keeps both halves


def test_stream_table_holds_the_per_step_streams():
    table = stream_table(11, 5, 40, "cpu")
    assert table.shape == (40, 5)
    for t in (0, 7, 39):
        assert torch.equal(table[t], stream_uniform(11, torch.arange(5), t))
    assert torch.equal(table[3, [4, 1]], stream_uniform(11, torch.tensor([4, 1]), 3))
