"""The toy-shapes model: caption encoder, protocol adapter, weights I/O and the bundled weights."""
import numpy as np
import pytest
import torch

from scalingar_core.models import registry
from scalingar_core.models.protocol import ARModel, DecodeSession
from scalingar_core.models.toy import checker
from scalingar_core.models.toy import model as toy_model
from scalingar_core.models.toy.text import CAPTION_LEN, tokenize

BUNDLED = toy_model.WEIGHTS_FILE.is_file()


def _tiny_config():
    cfg = toy_model.default_config()
    cfg["gpt"].update(dim=32, n_layer=1, n_head=2)
    cfg["caption"].update(width=16, heads=2)
    cfg["gpt"]["caption_dim"] = 16
    return cfg


def test_tokenize_left_pads_and_rejects_unknown_words():
    ids = tokenize(["a red circle", "a red circle left of a blue square"])
    assert ids.shape == (2, CAPTION_LEN)
    assert (ids[0, :5] == 0).all() and (ids[0, 5:] > 0).all() and (ids[1] > 0).all()
    with pytest.raises(ValueError, match="vocabulary.*'purple'"):
        tokenize("a purple circle")
    with pytest.raises(ValueError, match="1..8"):
        tokenize("a red circle and a blue square and a green")


def test_condition_dropout_uses_learned_null_and_sync_copies_it():
    torch.manual_seed(0)
    net = toy_model.ToyNet(_tiny_config())
    torch.nn.init.normal_(net.gpt.output.weight, std=0.5)  # upstream init zeroes it: nothing would differ
    ids, tokens = tokenize(["a red circle", "two blue squares"]), torch.randint(0, 133, (1, 64)).expand(2, -1)
    keep = net(ids, tokens, torch.tensor([False, False]))
    dropped = net(ids, tokens, torch.tensor([True, True]))
    assert not torch.allclose(keep, dropped)
    assert torch.allclose(dropped[0], dropped[1], atol=1e-5)  # the null caption ignores the words
    dropped.sum().backward()
    assert net.text.null.grad is not None and net.text.null.grad.abs().sum() > 0  # it is learned
    net.sync_null()
    assert torch.equal(net.gpt.cls_embedding.uncond_embedding, net.text.null.detach())


def test_adapter_follows_protocol_and_session_matches_teacher_forcing(tmp_path):
    torch.manual_seed(0)
    net = toy_model.ToyNet(_tiny_config())
    torch.nn.init.normal_(net.gpt.output.weight, std=0.5)
    net.sync_null()
    m = toy_model.ToyShapesModel(net)
    assert isinstance(m, ARModel) and m.grid == (8, 8) and m.vocab_size == 133
    cond = m.encode("two red circles")
    assert cond.spec["count"] == 2
    assert m.encode("red red red").spec is None  # known words, not a checkable caption
    s = m.start(cond, 3)
    assert isinstance(s, DecodeSession)
    tokens = torch.randint(0, 133, (3, 5))
    logits = [s.prefill()]
    for t in range(4):
        logits.append(s.step(tokens[:, t]))
    got = torch.stack(logits, 1)  # [6, 5, V]
    with torch.no_grad():
        ids = cond.ids.expand(3, -1)
        ref_c = net(ids, tokens, torch.zeros(3, dtype=torch.bool))
        ref_u = net(ids, tokens, torch.ones(3, dtype=torch.bool))
    assert torch.allclose(got[:3], ref_c, atol=1e-4) and torch.allclose(got[3:], ref_u, atol=1e-4)
    img = m.decode(tokens.new_zeros(2, 64))
    assert img.shape == (2, 3, 32, 32) and img.min() >= 0 and img.max() <= 1


def test_weights_round_trip_and_clear_errors(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = toy_model.ToyNet(_tiny_config())
    path = toy_model.save_weights(net, tmp_path / "w.safetensors", extra_meta={"note": {"x": 1}})
    back = toy_model.load_net(path)
    for (k, a), (_, b) in zip(net.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k
    assert toy_model.weights_metadata(path)["note"] == {"x": 1}
    with pytest.raises(FileNotFoundError, match="scripts/train_toy.py"):
        toy_model.load_net(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a toy-shapes weights file"):
        toy_model.load_net(tmp_path / "other.safetensors")
    monkeypatch.setattr(toy_model, "WEIGHTS_DIR", tmp_path / "nowhere")
    for name in ("toy-shapes", "toy-shapes-256"):
        with pytest.raises(FileNotFoundError, match=f"train_toy.py --world {name}"):
            registry.load(name)


def test_registered_as_default_model():
    assert registry.names()[0] == "toy-shapes-256"
    info = registry.entry("toy-shapes-256").info
    assert info.grid == (16, 16) and info.vocab_size == 53 and info.defaults.cfg_scale == 1.0
    info = registry.entry("toy-shapes").info
    assert info.grid == (8, 8) and info.vocab_size == 133 and info.defaults.cfg_scale <= 1.5


@pytest.mark.skipif(not BUNDLED, reason="bundled weights not trained yet (scripts/train_toy.py)")
def test_bundled_weights_draw_a_red_circle_through_the_protocol():
    torch.manual_seed(0)
    m = registry.load("toy-shapes")
    cond = m.encode("a red circle")
    n = 8
    session = m.start(cond, n)
    gen = torch.Generator().manual_seed(0)
    logits = session.prefill()
    codes = torch.empty(n, 64, dtype=torch.long)
    for t in range(64):
        c, u = logits[:n], logits[n:]
        guided = u + m.defaults.cfg_scale * (c - u)
        codes[:, t] = torch.multinomial(guided.softmax(-1), 1, generator=gen)[:, 0]
        if t < 63:
            logits = session.step(codes[:, t])
    images = m.decode(codes)
    results = [checker.check(img, cond.spec) for img in images]
    assert results[0].passed, results[0].reason
    assert sum(r.passed for r in results) >= 6, [r.reason for r in results]


@pytest.mark.skipif(not BUNDLED, reason="bundled weights not trained yet (scripts/train_toy.py)")
def test_bundled_weights_are_small_and_documented():
    size = toy_model.WEIGHTS_FILE.stat().st_size
    card = toy_model.WEIGHTS_DIR / "toy-shapes.md"
    assert size <= 10_000_000 and card.is_file()
    meta = toy_model.weights_metadata()
    assert meta["train"]["seed"] == 0 and "first_sample" in next(iter(meta["eval"].values()))
    assert np.isfinite(meta["train"]["final_val_loss"])


def test_evaluate_scores_true_renders_as_correct_and_auroc_orders():
    from scalingar_core.models.toy import evaluate, prompts, render, tokenizer

    entries = prompts.builtin_eval(per_category=2)
    rng = np.random.default_rng(0)
    codes = np.stack([[tokenizer.encode(render.render(render.sample_scene(e["spec"], rng))) for _ in range(2)]
                      for e in entries])
    codes[:, 1, :] = 0  # second sample: a blank image, always wrong
    res = evaluate.score(entries, torch.from_numpy(codes), conf=torch.tensor([[0.9, 0.1]] * len(entries)))
    assert res["first_sample"] == 1.0 and res["mean_of_n"] == 0.5 and res["oracle_best_of_n"] == 1.0
    assert res["most_confident_pick"] == 1.0 and res["within_prompt_auroc_mean_conf"] == 1.0
    assert evaluate.within_prompt_auroc(np.array([[0.1, 0.9]]), np.array([[True, False]])) == 0.0


def test_evaluate_sample_shapes_with_a_tiny_net():
    from scalingar_core.models.toy import evaluate

    torch.manual_seed(0)
    net = toy_model.ToyNet(_tiny_config())
    net.sync_null()
    codes, conf = evaluate.sample(net, ["a red circle", "two blue squares"], 3, seed=1, batch_rows=4)
    again, _ = evaluate.sample(net, ["a red circle", "two blue squares"], 3, seed=1, batch_rows=4)
    assert codes.shape == (2, 3, 64) and conf.shape == (2, 3) and torch.equal(codes, again)
    assert ((conf >= 0) & (conf <= 1)).all()


def test_batched_session_serves_each_caption_its_own_rows():
    """``start_batch`` stacks several captions' trajectories in one session: each block of rows decodes
    like a session of its own caption (up to float rounding of the larger matmuls)."""
    from scalingar_core.engine.config import RunConfig
    from scalingar_core.engine.loop import generate, generate_batch

    torch.manual_seed(0)
    net = toy_model.ToyNet(_tiny_config())
    torch.nn.init.normal_(net.gpt.output.weight, std=0.5)
    net.sync_null()
    m = toy_model.ToyShapesModel(net)
    conds = [m.encode("two red circles"), m.encode("a blue square")]
    s = m.start_batch(conds, [2, 3])
    logits = s.prefill()
    alone = [m.start(c, k).prefill() for c, k in zip(conds, (2, 3))]
    assert torch.allclose(logits[:2], alone[0][:2], atol=1e-5) and torch.allclose(logits[2:5], alone[1][:3], atol=1e-5)
    assert torch.allclose(logits[5:], torch.cat([alone[0][2:], alone[1][3:]]), atol=1e-5)  # null rows
    configs = [RunConfig(strategy="best_of_n", sampling={"num_trajectories": 4, "seed": 1}),
               RunConfig(sampling={"num_trajectories": 4, "seed": 2}, gate={"recovery_window": 4})]
    batched = generate_batch(m, conds, configs)
    single = [generate(m, c, cfg) for c, cfg in zip(conds, configs)]
    same = sum(int((a.codes == b.codes).sum()) for a, b in zip(batched, single))
    assert same >= 0.95 * sum(a.codes.numel() for a in single)
