"""LlamaGen GPT: upstream shapes and keys, 2D RoPE, masks, cached decoding and row compaction."""
import re

import pytest
import torch

from scalingar_core.models.gpt import (
    GPT,
    PRESETS,
    GPTConfig,
    apply_rope,
    gpt_config,
    param_count,
    rope_table,
)
from scalingar_core.models.gpt_session import GPTSession
from scalingar_core.testing.llamagen import random_gpt, tiny_gpt_config

# Parameter counts of the upstream presets (docs/models.md, c2i at block 256; t2i XL exact).
UPSTREAM_PARAMS_M = {"B": 110.9, "L": 342.9, "XL": 774.7, "XXL": 1411, "XXXL": 3893, "1B": 1200, "3B": 3097,
                     "7B": 6615}
FFN = {"B": 2048, "L": 2816, "XL": 3584, "XXL": 4096, "XXXL": 6912, "1B": 5632, "3B": 8704, "7B": 11008}


def meta_gpt(cfg):
    with torch.device("meta"):
        return GPT(cfg, init=False)


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_match_upstream_sizes(name):
    cfg = gpt_config(name, "c2i", 256)
    model = meta_gpt(cfg)
    n = sum(p.numel() for p in model.parameters())
    assert n == param_count(cfg)
    assert abs(n / 1e6 - UPSTREAM_PARAMS_M[name]) / UPSTREAM_PARAMS_M[name] < 1e-3
    assert cfg.ffn_hidden == FFN[name]
    sd = model.state_dict()
    assert sd["cls_embedding.embedding_table.weight"].shape == (1001, cfg.dim)
    assert not any("bias" in k or "freqs" in k for k in sd)


def test_xl_t2i_exact_keys_and_shapes():
    cfg = gpt_config("XL", "t2i", 512)
    model = meta_gpt(cfg)
    sd = model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == 777_678_080
    assert sum(v.numel() for v in sd.values()) == 777_923_840  # + the (120, 2048) null caption buffer
    assert len(sd) == 258
    expected = {
        "cls_embedding.uncond_embedding": (120, 2048),
        "cls_embedding.cap_proj.fc1.weight": (1280, 2048),
        "cls_embedding.cap_proj.fc2.weight": (1280, 1280),
        "tok_embeddings.weight": (16384, 1280),
        "norm.weight": (1280,),
        "output.weight": (16384, 1280),
    }
    per_layer = {"attention.wqkv.weight": (3840, 1280), "attention.wo.weight": (1280, 1280),
                 "feed_forward.w1.weight": (3584, 1280), "feed_forward.w3.weight": (3584, 1280),
                 "feed_forward.w2.weight": (1280, 3584), "attention_norm.weight": (1280,),
                 "ffn_norm.weight": (1280,)}
    for i in range(36):
        expected.update({f"layers.{i}.{k}": v for k, v in per_layer.items()})
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected
    assert "cls_embedding.uncond_embedding" in dict(model.named_buffers())
    assert cfg.grid == 32 and cfg.seq_len == 120 + 1024


def test_grid_follows_resolution():
    assert [gpt_config("XL", "t2i", s).grid for s in (256, 384, 512)] == [16, 24, 32]
    with pytest.raises(ValueError, match="square"):
        GPTConfig(dim=64, n_layer=1, n_head=4, block_size=20)
    with pytest.raises(ValueError, match="c2i"):
        GPTConfig(dim=64, n_layer=1, n_head=4, model_type="c2i", cls_token_num=120)
    with pytest.raises(ValueError, match="unknown GPT preset"):
        gpt_config("XL-3B")


def test_rope_layout():
    cfg = tiny_gpt_config(dim=64, n_head=4)  # head_dim 16: 4 frequencies per axis
    table = rope_table(cfg)
    T, g = cfg.cls_token_num, cfg.grid
    assert table.shape == (T + g * g, 8, 2)
    assert torch.all(table[:T] == 0)  # zero cos AND sin: not an identity rotation
    freqs = 1.0 / 10000 ** (torch.arange(4) * 2 / 8)
    for row, col in [(0, 0), (1, 2), (3, 1)]:
        k = T + row * g + col
        assert torch.allclose(table[k, :4, 0], torch.cos(row * freqs))  # first half turns with the row
        assert torch.allclose(table[k, 4:, 1], torch.sin(col * freqs))  # second half with the column
    # interleaved pairs (2j, 2j+1), complex style: (a + ib) * e^{i theta}
    x = torch.randn(1, 1, 1, 16)
    theta = torch.tensor(0.7)
    rope = torch.stack([torch.cos(theta).expand(8), torch.sin(theta).expand(8)], -1)[None, None]
    y = apply_rope(x, rope)
    z = torch.view_as_complex(x.reshape(1, 1, 1, 8, 2)) * torch.exp(1j * theta)
    assert torch.allclose(y, torch.view_as_real(z).reshape(1, 1, 1, 16), atol=1e-6)


def test_prefix_queries_and_keys_are_zero():
    torch.manual_seed(0)
    model = random_gpt(tiny_gpt_config())
    seen = []
    hook = model.layers[1].attention.register_forward_hook(lambda m, inp, out: seen.append(inp))
    feats = torch.randn(2, 8, 16)
    model(feats, torch.randint(0, 64, (2, 16)))
    hook.remove()
    x, rope = seen[0][0], seen[0][1]
    hd = model.config.head_dim
    q, k, _ = model.layers[1].attention.wqkv(x).split(model.config.dim, dim=-1)
    q = apply_rope(q.view(2, x.shape[1], 4, hd), rope)
    k = apply_rope(k.view(2, x.shape[1], 4, hd), rope)
    T = model.config.cls_token_num
    assert torch.all(q[:, :T] == 0) and torch.all(k[:, :T] == 0)
    assert q[:, T:].abs().sum() > 0


def test_attention_mask_hides_padding_and_forces_diagonal():
    model = random_gpt(tiny_gpt_config(cls_token_num=4, null_caption_len=4))
    pm = torch.tensor([[0, 0, 1, 1]], dtype=torch.bool)
    key_ok = model.key_mask(pm, 1, 7, "cpu")
    mask = GPT.attention_mask(key_ok, 0, 7)[0, 0]
    assert mask[0].tolist() == [True] + [False] * 6  # a pad slot sees only itself
    assert mask[1].tolist() == [False, True] + [False] * 5
    assert mask[3].tolist() == [False, False, True, True, False, False, False]
    assert mask[6].tolist() == [False, False, True, True, True, True, True]


def _features(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, 8, 16, generator=g)
    mask = torch.ones(n, 8, dtype=torch.bool)
    mask[:, :3] = False  # one prompt length for the session (left padding: valid at the end)
    feats = feats * mask[..., None]
    return feats, mask


def _decode_all(session, tokens):
    out = [session.prefill()]
    for i in range(tokens.shape[1] - 1):
        out.append(session.step(tokens[:, i]))
    return torch.stack(out, 1)


@pytest.mark.parametrize("model_type", ["t2i", "c2i"])
def test_kv_cache_equals_full_recompute(model_type):
    model = random_gpt(tiny_gpt_config(model_type))
    n = 3
    tokens = torch.randint(0, 64, (n, 16), generator=torch.Generator().manual_seed(1))
    if model_type == "t2i":
        cond, mask = _features(n)
        session = GPTSession(model, cond, n, cond_mask=mask)
        full_c = model(cond, tokens, mask)
        full_u = model(cond, tokens, mask, drop=torch.ones(n, dtype=torch.bool))
    else:
        cond, mask = torch.tensor([3, 7, 0]), None
        session = GPTSession(model, cond, n)
        full_c = model(cond, tokens)
        full_u = model(torch.full((n,), 10), tokens)
    cached = _decode_all(session, tokens)
    assert cached.dtype == torch.float32 and cached.shape == (2 * n, 16, 64)
    assert full_c.abs().max() > 1  # a real comparison, not of near-zero logits
    assert (cached[:n] - full_c).abs().max() <= 1e-5
    assert (cached[n:] - full_u).abs().max() <= 1e-5
    assert (full_c - full_u).abs().max() > 1e-2  # the condition matters


def test_left_and_right_padding_agree_after_first_token():
    model = random_gpt(tiny_gpt_config())
    n, L = 2, 8
    valid = torch.randn(n, 5, 16)
    left = torch.cat([torch.zeros(n, 3, 16), valid], 1)
    right = torch.cat([valid, torch.randn(n, 3, 16)], 1)  # AR-GRPO: pad slots not zeroed
    lmask = torch.arange(L)[None].expand(n, L) >= 3
    rmask = torch.arange(L)[None].expand(n, L) < 5
    tokens = torch.randint(0, 64, (n, 16))
    a = _decode_all(GPTSession(model, left, n, cond_mask=lmask), tokens)[:n]
    b = _decode_all(GPTSession(model, right, n, cond_mask=rmask), tokens)[:n]
    assert (a[:, 1:] - b[:, 1:]).abs().max() <= 1e-5
    assert (a[:, 0] - b[:, 0]).abs().max() > 1e-3  # right padding: first token predicted from a pad slot


def test_keep_compacts_and_copies_rows_exactly():
    model = random_gpt(tiny_gpt_config())
    cond, mask = _features(3)
    tokens = torch.randint(0, 64, (3, 16), generator=torch.Generator().manual_seed(2))
    s = GPTSession(model, cond, 3, cond_mask=mask)
    before = _decode_all_partial(s, tokens, 6)
    rows = torch.tensor([2, 0, 0, 1])  # reorder, drop nothing, duplicate row 0 (more rows than allocated)
    s.keep(rows)
    assert s.num_trajectories == 4
    after = [s.step(tokens[rows, 5 + i]) for i in range(4)]
    ref = GPTSession(model, cond[rows], 4, cond_mask=mask[rows])
    _decode_all_partial(ref, tokens[rows], 6)
    expect = [ref.step(tokens[rows, 5 + i]) for i in range(4)]
    for x, y in zip(after, expect):
        assert (x - y).abs().max() <= 1e-5
        assert torch.equal(x[1], x[2]) and torch.equal(x[5], x[6])  # copies are exact, cond and uncond
    # compaction to a subset: surviving rows' logits are unchanged
    s2 = GPTSession(model, cond, 3, cond_mask=mask)
    logits = _decode_all_partial(s2, tokens, 6)
    s2.keep(torch.tensor([1]))
    nxt = s2.step(tokens[1:2, 5])
    full = GPTSession(model, cond, 3, cond_mask=mask)
    _decode_all_partial(full, tokens, 6)
    nfull = full.step(tokens[:, 5])
    assert torch.equal(logits, before)  # deterministic
    # same rows, smaller batch: equal up to batch-size-dependent fp32 summation order
    assert (nxt[0] - nfull[1]).abs().max() <= 1e-5 and (nxt[1] - nfull[4]).abs().max() <= 1e-5


def _decode_all_partial(session, tokens, steps):
    out = session.prefill()
    for i in range(steps - 1):
        out = session.step(tokens[:, i])
    return out


def test_bf16_decoding_has_fp32_logits_close_to_fp32():
    model = random_gpt(tiny_gpt_config())
    cond, mask = _features(2)
    tokens = torch.randint(0, 64, (2, 16))
    ref = _decode_all(GPTSession(model, cond, 2, cond_mask=mask), tokens)
    model.to(torch.bfloat16)
    out = _decode_all(GPTSession(model, cond, 2, cond_mask=mask), tokens)
    assert out.dtype == torch.float32
    assert model.new_caches(1)[0].k.dtype == torch.bfloat16
    assert (out - ref).abs().max() / ref.abs().max() < 0.1


def test_gqa_config_runs():
    model = random_gpt(tiny_gpt_config(n_kv_head=2))
    assert model.layers[0].attention.wqkv.weight.shape[0] == (4 + 2 * 2) * 16
    cond, mask = _features(2)
    tokens = torch.randint(0, 64, (2, 16))
    cached = _decode_all(GPTSession(model, cond, 2, cond_mask=mask), tokens)
    assert (cached[:2] - model(cond, tokens, mask)).abs().max() <= 1e-5


def test_session_misuse_errors():
    model = random_gpt(tiny_gpt_config())
    cond, mask = _features(2)
    s = GPTSession(model, cond, 2, cond_mask=mask)
    with pytest.raises(RuntimeError, match="prefill"):
        s.step(torch.zeros(2, dtype=torch.long))
    s.prefill()
    with pytest.raises(RuntimeError, match="already"):
        s.prefill()
    with pytest.raises(ValueError, match="one token per trajectory"):
        s.step(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=re.escape("[0, 2)")):
        s.keep(torch.tensor([2]))
    for _ in range(16):
        s.step(torch.zeros(2, dtype=torch.long))
    with pytest.raises(RuntimeError, match="already decoded"):
        s.step(torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="caption features"):
        GPTSession(model, torch.randn(2, 8, 5), 2).prefill()
    c2i = random_gpt(tiny_gpt_config("c2i"))
    with pytest.raises(ValueError, match="class labels"):
        GPTSession(c2i, torch.tensor([11]), 1).prefill()
