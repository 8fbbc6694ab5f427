"""Loading LlamaGen files in every upstream layout, the presets, and each bad-input error (AR-GRPO's folders:
tests/test_ar_grpo.py)."""
import os
from pathlib import Path

import pytest
import torch

from scalingar_core.models import registry
from scalingar_core.models.checkpoints import (
    CheckpointError,
    convert_checkpoint,
    read_state_dicts,
    split_state_dict,
    unwrap,
)
from scalingar_core.models.download import ModelFileError, ensure_file, repo_folder
from scalingar_core.models.llamagen.adapter import (
    LlamaGenModel,
    load_preset,
    preset_memory,
)
from scalingar_core.models.llamagen.presets import PRESETS, load_checkpoint, match_file
from scalingar_core.testing.llamagen import (
    random_gpt,
    random_vq,
    tiny_gpt_config,
    tiny_preset,
    write_preset_files,
    write_tiny_t5,
)



@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    return write_tiny_t5(tmp_path_factory.mktemp("t5"))


def _setup(tmp_path, t5_dir, layout="llamagen", **kw):
    p = tiny_preset(**kw)
    paths = write_preset_files(p, tmp_path, layout, with_t5=False)
    if p.text_encoder_repo:
        os.symlink(t5_dir, repo_folder(tmp_path, p.text_encoder_repo))
    return p, paths


def _run(model, condition, n=2, steps=4):
    s = model.start(condition, n)
    logits = s.prefill()
    for _ in range(steps):
        logits = s.step(logits[:n].argmax(-1))
    return logits


@pytest.mark.parametrize("layout,kw", [("llamagen", {}), ("bare", {}), ("llamagen", {"padding_side": "right"})])
def test_layouts_load_and_decode(tmp_path, t5_dir, layout, kw):
    p, paths = _setup(tmp_path, t5_dir, layout, **kw)
    model = load_preset(p, models_dir=tmp_path, device="cpu")
    assert isinstance(model, LlamaGenModel) and model.grid == (4, 4) and model.vocab_size == 64
    ref = random_gpt(p.gpt).state_dict()["layers.1.attention.wqkv.weight"]
    got = model.gpt.state_dict()["layers.1.attention.wqkv.weight"]
    assert got.dtype == torch.float32 and torch.equal(got, ref)
    assert model.vq.quant_conv.weight.dtype == torch.float32
    cond = model.encode("a photo of a red cat")
    assert cond.mask.dtype == torch.bool
    if p.padding_side == "left":
        assert cond.mask[0, -1] and not cond.mask[0, 0]
    else:
        assert cond.mask[0, 0] and not cond.mask[0, -1]
    logits = _run(model, cond)
    assert logits.shape == (4, 64) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    vq_ref = random_vq(p.vq).state_dict()["decoder.conv_out.weight"]
    assert torch.equal(model.vq.state_dict()["decoder.conv_out.weight"], vq_ref)
    if layout == "llamagen":  # decoding is the VQ's own test; once here through the model
        img = model.decode(torch.randint(0, 64, (1, 16)))
        assert img.shape == (1, 3, 64, 64) and 0 <= img.min() and img.max() <= 1
    assert set(model.torch_modules()) == {"gpt", "vq", "text_encoder"}
    assert model.memory_estimate(4) > model.memory_estimate(1) > 0


def test_bf16_compute_gives_fp32_logits(tmp_path, t5_dir):
    p, _ = _setup(tmp_path, t5_dir)
    model = load_preset(p, models_dir=tmp_path, device="cpu", dtype="bf16")
    assert model.gpt.tok_embeddings.weight.dtype == torch.bfloat16
    assert model.vq.post_quant_conv.weight.dtype == torch.float32
    assert _run(model, model.encode("a cat")).dtype == torch.float32


def test_generates_through_the_engine(tmp_path, t5_dir):
    from scalingar_core.engine.config import RunConfig, SamplingConfig
    from scalingar_core.engine.loop import generate

    p, _ = _setup(tmp_path, t5_dir, padding_side="right")
    model = registry_like_load(p, tmp_path)
    cond = model.encode("a blue bird over the river")
    cfg = RunConfig(strategy="scalingar", sampling=SamplingConfig(num_trajectories=3, seed=5))
    a, b = generate(model, cond, cfg, decode_all=False), generate(model, cond, cfg, decode_all=False)
    assert a.image.shape == (3, 64, 64) and a.codes.shape == (3, 16)
    assert torch.equal(a.codes, b.codes) and a.selected == b.selected
    assert a.codes[a.selected].min() >= 0


def registry_like_load(p, models_dir):
    return load_preset(p, models_dir=models_dir, device="cpu", dtype=None, download=False, progress=None)


def test_c2i_prompt_is_a_class_id(tmp_path, t5_dir):
    p, _ = _setup(tmp_path, t5_dir, name="tiny-c2i", model_type="c2i")
    model = load_preset(p, models_dir=tmp_path, device="cpu")
    assert model.text_encoder is None
    cond = model.encode(" 7 ")
    assert cond.label == 7
    assert _run(model, cond).shape == (4, 64)
    for bad in ("cat", "10", "-1", "3.5"):
        with pytest.raises(ValueError, match="class id 0..9"):
            model.encode(bad)


def test_unwrap_and_prefixes(tmp_path):
    sd = {"a.weight": torch.ones(2)}
    for wrapped in ({"model": sd}, {"module": sd}, {"state_dict": sd}, {"ema": sd}, sd,
                    {"state_dict": {"model": sd}, "steps": 3}):
        assert list(unwrap(wrapped)) == ["a.weight"]
    with pytest.raises(CheckpointError, match="no state dict"):
        unwrap({"optimizer": 1})
    parts = split_state_dict({"module._orig_mod.tok_embeddings.weight": torch.ones(1),
                              "gpt_model.module.norm.weight": torch.ones(1),
                              "vq_model.decoder.conv_in.weight": torch.ones(1),
                              "freqs_cis": torch.ones(1), "layers.0.attention.kv_cache.k_cache": torch.ones(1)})
    assert set(parts["gpt"]) == {"tok_embeddings.weight", "norm.weight"}
    assert set(parts["vq"]) == {"decoder.conv_in.weight"}


def test_old_checkpoint_with_freqs_cis_and_compile_prefix_loads(tmp_path, t5_dir):
    p, paths = _setup(tmp_path, t5_dir)
    sd = random_gpt(p.gpt).state_dict()
    sd = {f"_orig_mod.{k}": v for k, v in sd.items()}
    sd["freqs_cis"] = torch.zeros(24, 8, 2)
    torch.save({"model": sd, "optimizer": {}, "steps": 10}, paths["gpt"])
    assert _run(load_preset(p, models_dir=tmp_path, device="cpu"), "a cat").shape == (4, 64)


def test_wrong_shapes_give_one_clear_error(tmp_path, t5_dir):
    p, paths = _setup(tmp_path, t5_dir)
    other = random_gpt(tiny_gpt_config(dim=96, n_head=6, n_layer=3)).state_dict()
    del other["norm.weight"]
    torch.save({"model": other}, paths["gpt"])
    with pytest.raises(CheckpointError) as err:
        load_preset(p, models_dir=tmp_path, device="cpu")
    msg = str(err.value)
    assert "preset tiny-t2i" in msg and str(paths["gpt"]) in msg
    assert "1 missing: norm.weight" in msg
    assert "unexpected: layers.2." in msg
    assert "wrongly shaped: " in msg and "... and" in msg  # first few listed, then a count
    assert "dim 96, 3 layers" in msg


def test_truncated_files_are_reported(tmp_path, t5_dir):
    p, paths = _setup(tmp_path, t5_dir)
    data = paths["gpt"].read_bytes()
    paths["gpt"].write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="incomplete or corrupt.*hf download test/tiny-gpt gpt.pt"):
        load_preset(p, models_dir=tmp_path, device="cpu")
    p2, paths2 = _setup(tmp_path / "g", t5_dir)
    converted = convert_checkpoint(paths2["gpt"], paths2["gpt"].parent)  # found before the .pt
    converted.write_bytes(converted.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="incomplete or corrupt"):
        load_preset(p2, models_dir=tmp_path / "g", device="cpu")


class _Payload:
    def __reduce__(self):
        return (open, (os.environ["SCALINGAR_TEST_MARKER"], "w"))


def test_pickled_callable_is_refused(tmp_path, t5_dir, monkeypatch):
    p, paths = _setup(tmp_path, t5_dir)
    marker = tmp_path / "executed"
    monkeypatch.setenv("SCALINGAR_TEST_MARKER", str(marker))
    sd = random_gpt(p.gpt).state_dict()
    torch.save({"model": sd, "extra": _Payload()}, paths["gpt"])
    with pytest.raises(CheckpointError, match="refusing to load.*open") as err:
        load_preset(p, models_dir=tmp_path, device="cpu")
    assert "weights_only=True" in str(err.value)
    assert not marker.exists()  # nothing from the file ran


def test_missing_files_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelFileError) as err:
        registry.load("llamagen-t2i-xl-512", models_dir=tmp_path, device="cpu", download=True)
    msg = str(err.value)
    folder = tmp_path / "peizesun--llamagen_t2i"
    assert "HF_HUB_OFFLINE" in msg and "peizesun/llamagen_t2i" in msg and str(folder) in msg
    assert f"hf download peizesun/llamagen_t2i t2i_XL_stage2_512.pt --local-dir {folder}" in msg
    assert "vq_ds16_t2i.pt" in msg and "google/flan-t5-xl" in msg  # every missing file in one error
    with pytest.raises(ModelFileError, match="downloads are off"):
        ensure_file("peizesun/llamagen_t2i", "vq_ds16_t2i.pt", tmp_path, download=False)


def test_convert_checkpoint_round_trip(tmp_path, t5_dir):
    p, paths = _setup(tmp_path, t5_dir)
    out = convert_checkpoint(paths["gpt"], paths["gpt"].parent)
    assert out == paths["gpt"].with_suffix(".safetensors")
    a = read_state_dicts(paths["gpt"])["gpt"]
    b = read_state_dicts(out)["gpt"]
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    paths["gpt"].unlink()  # the converted copy is found in its place
    assert _run(load_preset(p, models_dir=tmp_path, device="cpu"), "a cat").shape == (4, 64)
    # a combined GPT+VQ file (AR-GRPO's key layout) keeps its routing prefixes
    combined = {f"gpt_model.{k}": v for k, v in random_gpt(p.gpt).state_dict().items()}
    combined.update({f"vq_model.{k}": v for k, v in random_vq(p.vq).state_dict().items()})
    torch.save(combined, tmp_path / "combined.pt")
    out2 = convert_checkpoint(tmp_path / "combined.pt", tmp_path / "combined.safetensors")
    parts = read_state_dicts(out2)
    assert parts["gpt"] and parts["vq"]
    with pytest.raises(ValueError, match=".safetensors"):
        convert_checkpoint(out2, tmp_path / "x.pt")
    # ...but a LlamaGen preset does not take one: that is an AR-GRPO folder's weights file
    out2.replace(out)
    with pytest.raises(CheckpointError, match=r"also holds a VQ \(vq_model\.\* keys\).*config.json"):
        load_preset(p, models_dir=tmp_path, device="cpu")


def test_registry_entries():
    names = registry.names()
    expected = {"llamagen-t2i-xl-256", "llamagen-t2i-xl-512", "ar-grpo-t2i-xl-256", "llamagen-c2i-b-256",
                "llamagen-c2i-b-384", "llamagen-c2i-l-256", "llamagen-c2i-l-384", "llamagen-c2i-xl-384",
                "llamagen-c2i-xxl-384", "llamagen-c2i-3b-384"}
    assert expected <= set(names)
    t2i = registry.entry("llamagen-t2i-xl-512")
    assert t2i.info.grid == (32, 32) and t2i.info.vocab_size == 16384
    d = t2i.info.defaults
    assert (d.cfg_scale, d.top_k, d.top_p, d.temperature) == (7.5, 1000, 1.0, 1.0)
    assert {f["filename"] for f in t2i.files} >= {"t2i_XL_stage2_512.pt", "vq_ds16_t2i.pt"}
    assert PRESETS["llamagen-t2i-xl-256"].padding_side == "left"  # AR-GRPO's right: tests/test_ar_grpo.py
    c2i = PRESETS["llamagen-c2i-3b-384"]
    assert c2i.gpt.dim == 3200 and c2i.gpt.grid == 24 and c2i.vq_filename == "vq_ds16_c2i.pt"
    assert PRESETS["llamagen-c2i-b-256"].defaults.cfg_scale == 4.0


def test_local_checkpoint_lookup(tmp_path, t5_dir):
    assert match_file("/x/t2i_XL_stage1_256.pt").name == "llamagen-t2i-xl-256"
    assert match_file("/x/c2i_L_384.safetensors").name == "llamagen-c2i-l-384"
    assert match_file("/x/model.safetensors") is None
    assert load_checkpoint(tmp_path / "something_else.pt") is None


def test_analytic_memory_for_paper_setting():
    parts = preset_memory(PRESETS["llamagen-t2i-xl-512"], 8, dtype_bytes=2)
    assert parts["kv_cache"] == 36 * 2 * 16 * 20 * 1144 * 64 * 2  # 16 rows of 211 MB
    assert parts["total"] <= 8e9


def test_download_reports_progress_and_failures(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls = []

    def fake_download(repo_id, filename, local_dir=None, tqdm_class=None, **kw):
        bar = tqdm_class(total=10, disable=True)
        bar.update(4)
        bar.update(6)
        bar.close()
        path = Path(local_dir) / filename
        path.write_bytes(b"x")
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    got = ensure_file("org/repo", "w.pt", tmp_path, download=True,
                      progress=lambda label, done, total: calls.append((label, done, total)))
    assert got == tmp_path / "org--repo" / "w.pt" and got.is_file()
    assert calls == [("w.pt", 4, 10), ("w.pt", 10, 10)]

    def no_network(*a, **kw):
        raise ConnectionError("network unreachable")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    with pytest.raises(ModelFileError) as err:
        ensure_file("org/repo", "other.pt", tmp_path, download=True)
    msg = str(err.value)
    assert "network unreachable" in msg and "org/repo" in msg and "other.pt" in msg
    assert f"hf download org/repo other.pt --local-dir {tmp_path / 'org--repo'}" in msg
