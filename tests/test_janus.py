"""Janus-Pro through transformers, checked against transformers' own image generation on a tiny random
``JanusConfig``: tokens and guided logits, KV cache against recomputation, row compaction and copies, the
full ScalingAR path, both checkpoint layouts, the published presets and the missing-file errors."""
import json

import pytest
import torch

pytest.importorskip("transformers", minversion="5.24")  # the range Janus-Pro is verified on

from transformers import ClassifierFreeGuidanceLogitsProcessor  # noqa: E402

from scalingar_core.engine.config import GateConfig, RunConfig, SamplingConfig  # noqa: E402
from scalingar_core.engine.loop import generate  # noqa: E402
from scalingar_core.engine.sampling import guided_logits  # noqa: E402
from scalingar_core.models import registry  # noqa: E402
from scalingar_core.models.download import ModelFileError, repo_folder  # noqa: E402
from scalingar_core.models.janus import configs  # noqa: E402
from scalingar_core.models.janus.model import load_folder, preset_memory  # noqa: E402
from scalingar_core.models.janus.presets import PRESETS, load_checkpoint, load_preset  # noqa: E402
from scalingar_core.models.janus.weights import from_original  # noqa: E402
from scalingar_core.models.vq16 import VQConfig, VQModel  # noqa: E402
from scalingar_core.testing import janus as synthetic
from scalingar_core.testing.sessions import step_rows

SHORT = "a red cube"
LONG = "a photo of two small green sphere on the left of a big blue cube on the left of a cat"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(transformers' model, our model loaded from its save_pretrained folder)."""
    reference = synthetic.random_model(synthetic.tiny_config())
    folder = synthetic.write_transformers_folder(tmp_path_factory.mktemp("janus-tf"), reference)
    return reference, load_folder(folder, "tiny-janus", device="cpu", dtype="fp32")


def transformers_generate(reference, ours, prompt, scale):
    """transformers' greedy image generation with CFG: its tokens and the raw [cond; uncond] head outputs
    of every step (hooked on the generation head, the scores its CFG processor receives)."""
    from transformers import JanusProcessor

    processor = JanusProcessor.from_pretrained(ours.prompts.tokenizer.name_or_path)
    messages = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=text, generation_mode="image", return_tensors="pt")
    raw = []
    hook = reference.model.generation_head.register_forward_hook(lambda m, i, out: raw.append(out.detach().clone()))
    try:
        tokens = reference.generate(**inputs, generation_mode="image", do_sample=False, guidance_scale=scale)
    finally:
        hook.remove()
    return inputs["input_ids"][0], tokens[0], raw


@pytest.mark.parametrize("prompt,scale", [(SHORT, 5.0), (LONG, 2.5)])
def test_greedy_cfg_matches_transformers_image_generation(tiny, prompt, scale):
    reference, ours = tiny
    ids, expected, raw = transformers_generate(reference, ours, prompt, scale)
    condition = ours.encode(prompt)
    assert torch.equal(condition.ids, ids)
    # through the engine: plain strategy, top-k 1 = greedy on the guided logits
    config = RunConfig(strategy="plain", sampling=SamplingConfig(top_k=1, cfg_scale=scale))
    result = generate(ours, condition, config)
    assert torch.equal(result.codes[0], expected)
    # the logits: our session fed transformers' tokens gives its raw rows and its guided scores
    session = ours.start(condition, 1)
    logits = session.prefill()
    for t, token in enumerate(expected.tolist()):
        assert torch.allclose(logits, raw[t].float(), atol=1e-5, rtol=1e-5), f"raw logits differ at step {t}"
        theirs = ClassifierFreeGuidanceLogitsProcessor(scale)(ids[None], raw[t])
        mine = guided_logits(logits[:1], logits[1:], torch.tensor([scale]))
        assert torch.allclose(mine, theirs, atol=1e-5, rtol=1e-5), f"guided logits differ at step {t}"
        if t + 1 < len(expected):
            logits = session.step(torch.tensor([token]))


def test_decode_matches_transformers_vq(tiny):
    reference, ours = tiny
    codes = torch.randint(0, ours.vocab_size, (3, 16), generator=torch.Generator().manual_seed(1))
    theirs = reference.decode_image_tokens(codes).permute(0, 3, 1, 2)
    images = ours.decode(codes)
    assert images.shape == (3, 3, 8, 8) and images.min() >= 0 and images.max() <= 1
    assert torch.allclose(images, ((theirs + 1) / 2).clamp(0, 1), atol=1e-6)


def _tokens(step, n, offset=0):
    return torch.tensor([(7 * step + 3 * i + offset) % 40 for i in range(n)])


def test_kv_decode_equals_full_recompute(tiny):
    _, ours = tiny
    gen, condition, n, steps = ours.generator, ours.encode(LONG), 3, 6
    session = ours.start(condition, n)
    per_step = [session.prefill()]
    fed = []
    for t in range(steps):
        fed.append(_tokens(t, n))
        per_step.append(session.step(fed[-1]))
    # no cache: the whole sequence of each row at once
    prefix = torch.stack([condition.ids] * n + [condition.uncond_ids] * n)
    images = torch.stack(fed, 1).repeat(2, 1)  # [2n, steps]
    with torch.no_grad():
        x = torch.cat([gen.language_model.embed_tokens(prefix), gen.image_embeddings(images)], 1)
        h = gen.language_model(inputs_embeds=x, use_cache=False).last_hidden_state
        full = gen.generation_head(h[:, prefix.shape[1] - 1:]).float()
    for t, logits in enumerate(per_step):
        assert torch.allclose(logits, full[:, t], atol=1e-5, rtol=1e-5), f"step {t}"


def test_keep_compacts_and_copies_rows(tiny):
    _, ours = tiny
    condition = ours.encode(SHORT)
    full = ours.start(condition, 4)
    kept = ours.start(condition, 4)
    full.prefill(), kept.prefill()
    for t in range(3):
        full.step(_tokens(t, 4)), kept.step(_tokens(t, 4))
    rows = torch.tensor([3, 1, 1])
    kept.keep(rows)
    assert kept.num_trajectories == 3
    assert all(layer.keys.shape[0] == 6 for layer in kept.cache.layers)  # 2m rows left in every layer
    nxt = torch.tensor([5, 9, 30])  # the two copies of row 1 now take different tokens
    got = kept.step(nxt)
    want = full.step(torch.tensor([0, 9, 0, 5]))  # rows 3 and 1 fed what their survivors were fed
    idx = torch.tensor([3, 1, 7, 5])
    assert torch.allclose(got[[0, 1, 3, 4]], want[idx], atol=1e-5, rtol=1e-5)
    other = ours.start(condition, 4)
    other.prefill()
    for t in range(3):
        other.step(_tokens(t, 4))
    want30 = other.step(torch.tensor([0, 30, 0, 0]))
    assert torch.allclose(got[[2, 5]], want30[[1, 5]], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got[1], got[2])
    with pytest.raises(ValueError, match="rows must be in"):
        kept.keep(torch.tensor([3]))


def test_prefill_is_the_same_for_every_n(tiny):
    _, ours = tiny
    condition = ours.encode(SHORT)
    one = ours.start(condition, 1).prefill()
    five = ours.start(condition, 5).prefill()
    assert torch.equal(five[:5], one[:1].expand(5, -1)) and torch.equal(five[5:], one[1:].expand(5, -1))


def test_without_guidance_only_the_conditional_rows_are_decoded(tiny):
    """CFG <= 1 (upstream: no guidance): the session holds the n conditional rows, whose logits are those of
    the conditional half of a guided session."""
    _, ours = tiny
    condition = ours.encode(SHORT)
    guided, alone = ours.start(condition, 3), ours.start(condition, 3, guidance=False)
    a, b = guided.prefill(), alone.prefill()
    assert b.shape == (3, a.shape[1]) and torch.allclose(b, a[:3], atol=1e-5)
    tokens = torch.tensor([1, 2, 3])
    a, b = guided.step(tokens), alone.step(tokens)
    assert torch.allclose(b, a[:3], atol=1e-5)
    guided.keep(torch.tensor([2, 0]))
    alone.keep(torch.tensor([2, 0]))
    a, b = guided.step(torch.tensor([4, 5])), alone.step(torch.tensor([4, 5]))
    assert b.shape[0] == 2 and torch.allclose(b, a[:2], atol=1e-5)


def test_scalingar_path_prunes_and_selects(tiny):
    _, ours = tiny
    config = RunConfig(strategy="scalingar", sampling=SamplingConfig(num_trajectories=4, seed=3),
                       gate=GateConfig(hard_fail=0.99, min_survivors=2))
    with step_rows(ours) as rows_seen:
        result = generate(ours, ours.encode(SHORT), config)
        again = generate(ours, ours.encode(SHORT), config)
    removed = [r for r in result.trace.trajectories if r.removed_at is not None]
    assert len(removed) == 2 and result.selected not in {r.index for r in removed}
    assert rows_seen[0] == 4 and rows_seen[-1] == 2  # the session really shrank
    assert result.tokens_generated < 4 * 16
    assert result.images.shape == (4, 3, 8, 8) and result.image.shape == (3, 8, 8)
    assert torch.equal(result.codes, again.codes)  # same seed, same images and decisions
    assert tuple(result.trace.grid) == (4, 4)


# ----------------------------------------------------------------------------------------- layouts


@pytest.fixture(scope="module")
def both_layouts(tmp_path_factory):
    """One random model (released VQ-16 decoder) saved in the transformers and the original layout."""
    reference = synthetic.random_model(synthetic.tiny_config(vq="vq16"), seed=5)
    hf = synthetic.write_transformers_folder(tmp_path_factory.mktemp("tf"), reference)
    original = synthetic.write_original_folder(tmp_path_factory.mktemp("Janus-Pro-1B"), reference, shards=2)
    return reference, hf, original


def test_original_layout_reproduces_transformers_layout(both_layouts):
    _, hf, original = both_layouts
    a = load_folder(hf, "a", device="cpu", dtype="fp32")
    b = load_checkpoint(original, device="cpu", dtype="fp32")
    assert b.name == original.name and b.grid == a.grid == (4, 4)
    ca, cb = a.encode(LONG), b.encode(LONG)
    assert torch.equal(ca.ids, cb.ids)  # chat template and published format give the same prompt
    sa, sb = a.start(ca, 2), b.start(cb, 2)
    la, lb = sa.prefill(), sb.prefill()
    for t in range(4):
        assert torch.equal(la, lb), f"step {t}"
        la, lb = sa.step(_tokens(t, 2)), sb.step(_tokens(t, 2))
    codes = torch.randint(0, 40, (2, 16), generator=torch.Generator().manual_seed(2))
    assert torch.equal(a.decode(codes), b.decode(codes))


def test_original_vq_names_are_llamagen_vq16_names(both_layouts):
    """The VQ of the original layout is LlamaGen's VQ-16: our LlamaGen VQ (built from upstream names) has
    exactly the keys the original file carries, and the loader maps each of them."""
    _, _, original = both_layouts
    index = json.loads((original / "pytorch_model.bin.index.json").read_text())["weight_map"]
    vq_keys = {k.removeprefix("gen_vision_model.") for k in index if k.startswith("gen_vision_model.")}
    with torch.device("meta"):
        llamagen = VQModel(VQConfig(codebook_size=40, usage_buffer=4))
    assert vq_keys == set(llamagen.state_dict())
    assert from_original("gen_vision_model.decoder.conv_blocks.1.res.2.conv1.weight") == "vqmodel.decoder.up.1.block.2.conv1.weight"


def test_understanding_tower_is_never_built(both_layouts):
    _, _, original = both_layouts
    model = load_checkpoint(original, device="cpu", dtype="bf16")
    names = [n for n, _ in model.generator.named_parameters()]
    assert not any(n.startswith(("vision_model", "aligner", "lm_head", "vqmodel.encoder")) for n in names)
    assert all(p.device.type == "cpu" and p.dtype == torch.bfloat16 for p in model.generator.parameters())
    assert model.generator.language_model.rotary_emb.inv_freq.dtype == torch.float32
    assert model.start(model.encode(SHORT), 2).prefill().dtype == torch.float32  # fp32 logits for the profile


def test_original_layout_rejects_wrong_files(both_layouts, tmp_path):
    _, _, original = both_layouts
    import shutil

    broken = shutil.copytree(original, tmp_path / "Janus-Pro-1B")
    (broken / "pytorch_model-00002-of-00002.bin").unlink()
    with pytest.raises(ModelFileError) as err:
        load_checkpoint(broken)
    message = str(err.value)
    assert "pytorch_model-00002-of-00002.bin" in message and str(broken) in message
    assert "deepseek-ai/Janus-Pro-1B" in message
    config = json.loads((broken / "config.json").read_text())
    config["language_config"]["num_hidden_layers"] = 3
    (broken / "config.json").write_text(json.dumps(config))
    shutil.copy(original / "pytorch_model-00002-of-00002.bin", broken)
    with pytest.raises(ValueError, match=r"missing: language_model\.layers\.2\."):
        load_checkpoint(broken)
    assert load_checkpoint(tmp_path) is None  # not a Janus folder: another family may claim it


# ----------------------------------------------------------------------------------------- presets


def test_presets_are_registered_with_the_model_card_defaults():
    for name, repo in (("janus-pro-1b", "deepseek-community/Janus-Pro-1B"),
                       ("janus-pro-7b", "deepseek-community/Janus-Pro-7B")):
        entry = registry.entry(name)
        assert entry.info.grid == (24, 24) and entry.info.vocab_size == 16384
        d = entry.info.defaults
        assert (d.cfg_scale, d.temperature, d.top_k, d.top_p) == (5.0, 1.0, 0, 1.0)
        assert entry.files[0]["repo_id"] == repo


@pytest.mark.parametrize("size,layers,width,ffn", [("1B", 24, 2048, 5632), ("7B", 30, 4096, 11008)])
def test_published_configs_build_on_meta(size, layers, width, ffn):
    counts = configs.part_params(size)
    vocab = 102400
    per_layer = 4 * width * width + 3 * width * ffn + 2 * width
    assert counts["language_model"] == vocab * width + layers * per_layer + width
    config = configs.janus_config(size)
    assert configs.grid_side(config) == 24 and configs.image_size(config) == 384


def test_memory_table_grows_with_n_and_skips_the_tower():
    m1, m8 = preset_memory("1B", 1), preset_memory("1B", 8)
    assert m8["weights"] == m1["weights"] and m8["kv_cache"] == 8 * m1["kv_cache"]
    used = sum(v for k, v in configs.part_params("1B").items() if k != "not_loaded")
    assert m1["weights"] == 2 * used
    assert preset_memory("7B", 1)["weights"] > 4 * m1["weights"]


def test_missing_preset_names_repo_files_and_folder(tmp_path):
    p = PRESETS["janus-pro-1b"]
    with pytest.raises(ModelFileError) as err:
        load_preset(p, models_dir=tmp_path)
    message = str(err.value)
    folder = repo_folder(tmp_path, p.repo_id)
    for part in ("deepseek-community/Janus-Pro-1B", "config.json", "model.safetensors", str(folder),
                 "hf download deepseek-community/Janus-Pro-1B"):
        assert part in message
    # a partial folder: the index names a shard that is not there
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "janus"}))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_text("{}")
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "model-00002-of-00002.safetensors"}}))
    with pytest.raises(ModelFileError, match="model-00002-of-00002.safetensors of Hugging Face repo"):
        load_preset(p, models_dir=tmp_path, download=True)  # HF_HUB_OFFLINE is set by the test conftest


def test_an_older_transformers_is_a_clear_error(monkeypatch, tmp_path):
    import transformers

    from scalingar_core.models.janus.model import check_transformers

    check_transformers()  # the installed one is in range
    monkeypatch.setattr(transformers, "__version__", "4.57.6")
    with pytest.raises(RuntimeError, match=r"transformers >= 5.24 .*4\.57\.6.*pip install -U"):
        load_folder(tmp_path, "x")


def test_loaded_model_memory_estimate_counts_its_own_weights_and_kv_rows(tiny):
    _, ours = tiny
    weights = sum(p.numel() * p.element_size() for p in ours.generator.parameters())
    one, eight = ours.memory_estimate(1), ours.memory_estimate(8)
    assert one > weights and eight > one
    from scalingar_core.models.janus.model import kv_cache_bytes

    positions = 64 + 16
    assert eight - one >= kv_cache_bytes(ours.generator.config, 14, positions, 4)  # 14 more fp32 rows
