"""AR-GRPO folders (config.json + gpt_model./vq_model. weights): built from the config, loaded strictly, equal to
the same weights in LlamaGen's layout; the five presets; what the model lists offer."""
import json
import os

import pytest
import torch

from scalingar_core.engine.config import RunConfig, SamplingConfig
from scalingar_core.engine.loop import generate
from scalingar_core.models import registry
from scalingar_core.models.checkpoints import CheckpointError
from scalingar_core.models.download import ModelFileError, repo_folder, selected_files
from scalingar_core.models.llamagen import ar_grpo
from scalingar_core.models.llamagen.adapter import load_preset
from scalingar_core.models.llamagen.presets import T5_REPO, load_checkpoint, match_file
from scalingar_core.testing.ar_grpo import TINY_ARCHS, tiny_config, tiny_state_dict, write_folder
from scalingar_core.testing.llamagen import tiny_preset, write_preset_files, write_tiny_t5

PROMPTS = {"t2i": "a red bird flying over the river", "c2i": "7"}


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    return write_tiny_t5(tmp_path_factory.mktemp("t5"))


def _models_dir(tmp_path, t5_dir):
    """A models folder where both loaders find the tiny T5 (as FLAN-T5-XL and as the tiny preset's)."""
    for repo in (T5_REPO, "test/tiny-t5"):
        os.symlink(t5_dir, repo_folder(tmp_path, repo))
    return tmp_path


def _same_weights_in_llamagen_layout(tmp_path, model_type):
    p = tiny_preset(name=f"tiny-{model_type}", model_type=model_type, padding_side="right")
    write_preset_files(p, tmp_path, "llamagen", with_t5=False)
    return load_preset(p, models_dir=tmp_path, device="cpu")


def _run(model, prompt):
    cfg = RunConfig(strategy="scalingar", sampling=SamplingConfig(num_trajectories=3, seed=11, cfg_scale=3.0,
                                                                  top_k=0, top_p=1.0, temperature=1.0))
    return generate(model, model.encode(prompt), cfg)


@pytest.mark.parametrize("model_type,shards,safetensors", [("t2i", 1, True), ("c2i", 1, True), ("t2i", 3, True),
                                                           ("c2i", 2, False)])
def test_folder_gives_the_tokens_and_image_of_llamagen_layout(tmp_path, t5_dir, model_type, shards, safetensors):
    models = _models_dir(tmp_path, t5_dir)
    folder = write_folder(models / "AR-GRPO_tiny", model_type, shards=shards, safetensors=safetensors)
    assert (len(ar_grpo.weight_files(folder)) > 1) == (shards > 1)
    ours = ar_grpo.load_folder(folder, device="cpu", **TINY_ARCHS)
    theirs = _same_weights_in_llamagen_layout(models, model_type)
    assert ours.model_type == model_type and ours.padding_side == "right" and ours.name == "AR-GRPO_tiny"
    a, b = _run(ours, PROMPTS[model_type]), _run(theirs, PROMPTS[model_type])
    assert torch.equal(a.codes, b.codes) and a.selected == b.selected
    assert torch.equal(a.image, b.image)
    assert ours.vq.post_quant_conv.weight.dtype == torch.float32  # the VQ stays fp32


def test_the_config_decides_the_grid_and_prefix(tmp_path, t5_dir):
    folder = write_folder(_models_dir(tmp_path, t5_dir) / "m", "c2i", image_size=128,
                          state_dict={})  # weights are not read before the config is checked
    cfg = ar_grpo.read_config(folder, **TINY_ARCHS)
    assert (cfg.gpt.grid, cfg.gpt.cls_token_num, cfg.image_size, cfg.gpt.model_type) == (8, 1, 128, "c2i")
    real = ar_grpo.read_config(write_folder(tmp_path / "xl", "t2i", state_dict={}, gpt_model="GPT-XL",
                                            vq_model="VQ-16", codebook_size=16384, image_size=384,
                                            cls_token_num=120, text_feature_max_len=120))
    assert (real.gpt.dim, real.gpt.n_layer, real.gpt.grid, real.gpt.cls_token_num) == (1280, 36, 24, 120)
    assert real.vq.codebook_size == 16384 and real.text_encoder == T5_REPO


def test_a_missing_key_is_refused_by_name(tmp_path, t5_dir):
    sd = tiny_state_dict("t2i")
    del sd["gpt_model.layers.1.attention.wo.weight"]
    sd["lm_head.weight"] = torch.zeros(1)  # a key under neither prefix
    folder = write_folder(_models_dir(tmp_path, t5_dir) / "m", "t2i", state_dict=sd)
    with pytest.raises(CheckpointError) as err:
        ar_grpo.load_folder(folder, device="cpu", **TINY_ARCHS)
    msg = str(err.value)
    assert "1 missing: gpt_model.layers.1.attention.wo.weight" in msg
    assert "1 unexpected: lm_head.weight" in msg
    assert "GPT-tiny t2i" in msg and "config.json and the weights" in msg


def test_the_frozen_reference_copy_is_checked_then_left_out(tmp_path, t5_dir):
    sd = tiny_state_dict("c2i")
    reference = tiny_state_dict("c2i", seed=1)  # GRPO's starting point: other weights, same keys
    sd.update({f"ref_model.{k}": v for k, v in reference.items()})
    folder = write_folder(_models_dir(tmp_path, t5_dir) / "m", "c2i", state_dict=sd)
    model = ar_grpo.load_folder(folder, device="cpu", **TINY_ARCHS)
    assert torch.equal(model.gpt.output.weight, sd["gpt_model.output.weight"])  # the trained policy, not the copy
    del sd["ref_model.gpt_model.norm.weight"]
    write_folder(folder, "c2i", state_dict=sd)
    with pytest.raises(CheckpointError, match="1 missing: ref_model.gpt_model.norm.weight"):
        ar_grpo.load_folder(folder, device="cpu", **TINY_ARCHS)


def test_the_vq_usage_counter_may_be_absent(tmp_path, t5_dir):
    sd = tiny_state_dict("c2i")
    del sd[ar_grpo.USAGE_BUFFER]  # a training statistic, never read when decoding
    folder = write_folder(_models_dir(tmp_path, t5_dir) / "m", "c2i", state_dict=sd)
    assert ar_grpo.load_folder(folder, device="cpu", **TINY_ARCHS).vocab_size == 64


def test_an_unknown_architecture_lists_the_known_ones(tmp_path):
    folder = write_folder(tmp_path / "m", "c2i", state_dict={}, gpt_model="GPT-Huge")
    with pytest.raises(ValueError) as err:
        ar_grpo.load_folder(folder, device="cpu")
    msg = str(err.value)
    assert "'GPT-Huge'" in msg and all(f"GPT-{k}" in msg for k in ("B", "L", "XL", "XXL", "XXXL", "1B", "3B", "7B"))
    with pytest.raises(ValueError, match="vq_model 'VQ-32'.*known: VQ-16"):
        ar_grpo.read_config(write_folder(tmp_path / "v", "c2i", state_dict={}, gpt_model="GPT-B",
                                         vq_model="VQ-32"))


@pytest.mark.parametrize("change,message", [
    ({"model_type": "llama"}, "not an AR-GRPO config: model_type is 'llama'"),
    ({"gpt_type": "t2v"}, "gpt_type must be 't2i' or 'c2i'"),
    ({"image_size": 100}, "image_size 100 is not a multiple of downsample_size 16"),
    ({"downsample_size": 8}, "downsample_size 8 does not match VQ-tiny"),
    ({"cls_token_num": "120"}, "cls_token_num must be a positive whole number"),
    ({"text_feature_max_len": 120}, "text_feature_max_len 120 differs from cls_token_num 8"),
    ({"text_encoder": "../../elsewhere"}, "names text_encoder '../../elsewhere'"),
    ({"codebook_size": 128}, "codebook_size 128 differs from the GPT's vocabulary of 64"),
])
def test_bad_configs_get_one_clear_line(tmp_path, change, message):
    folder = write_folder(tmp_path / "m", "t2i", state_dict={}, **change)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ar_grpo.read_config(folder, **TINY_ARCHS)


def test_missing_build_keys_are_listed(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    config = tiny_config("t2i")
    for key in ("gpt_model", "text_feature_max_len"):
        del config[key]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="lacks gpt_model, text_feature_max_len"):
        ar_grpo.read_config(folder, **TINY_ARCHS)


def test_folder_without_weights_and_bad_shard_index(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(tiny_config("c2i")))
    with pytest.raises(ModelFileError, match="config.json but no weights"):
        ar_grpo.load_folder(folder, device="cpu", **TINY_ARCHS)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "../../etc/x"}}))
    with pytest.raises(CheckpointError, match="outside its folder"):
        ar_grpo.weight_files(folder)


def test_five_presets_with_their_repositories_and_defaults():
    names = {"ar-grpo-t2i-xl-256": "CSshihao/AR-GRPO_T2I_XL_256", "ar-grpo-c2i-b-256": "CSshihao/AR-GRPO_C2I_B_256",
             "ar-grpo-c2i-b-384": "CSshihao/AR-GRPO_C2I_B_384", "ar-grpo-c2i-l-384": "CSshihao/AR-GRPO_C2I_L_384",
             "ar-grpo-c2i-xl-384": "CSshihao/AR-GRPO_C2I_XL_384"}
    assert set(ar_grpo.PRESETS) == set(names) and set(names) <= set(registry.names())
    for name, repo in names.items():
        entry = registry.entry(name)
        (own,) = [f for f in entry.files if f["repo_id"] == repo]
        assert selected_files(["config.json", "model.safetensors", "model-00001-of-00002.safetensors",
                               "model.safetensors.index.json", "pytorch_model.bin", "README.md"],
                              own["patterns"]) == ["config.json", "model-00001-of-00002.safetensors",
                                                   "model.safetensors", "model.safetensors.index.json"]
        assert entry.info.extra["padding_side"] == "right" and entry.info.extra["repo_id"] == repo
        t2i = name.startswith("ar-grpo-t2i")
        assert any(f["repo_id"] == T5_REPO for f in entry.files) is t2i
        d = entry.info.defaults
        assert (d.cfg_scale, d.top_k, d.top_p, d.temperature) == ((4.0 if t2i else 2.0), 0, 1.0, 1.0)
        notes = " ".join(entry.info.extra["notes"])
        assert ("test_t2i.py" in notes and "cfg 7.5" in notes and "cfg 2.0" in notes) if t2i else "test.py" in notes
    assert registry.entry("ar-grpo-c2i-xl-384").info.grid == (24, 24)
    assert registry.entry("ar-grpo-c2i-b-256").info.grid == (16, 16)


def test_missing_preset_files_are_named_together(tmp_path):
    p = ar_grpo.PRESETS["ar-grpo-t2i-xl-256"]
    with pytest.raises(ModelFileError, match="downloads are off") as err:
        ar_grpo.load_preset(p, models_dir=tmp_path)
    msg, folder = str(err.value), repo_folder(tmp_path, p.repo_id)
    assert (f"hf download CSshihao/AR-GRPO_T2I_XL_256 --include 'config.json' --include 'model.safetensors' "
            f"--include 'model.safetensors.index.json' --include 'model-*.safetensors' --local-dir {folder}") in msg
    assert "google/flan-t5-xl" in msg  # every missing file in one error


def test_local_bin_weights_count_as_present(tmp_path, t5_dir):
    models = _models_dir(tmp_path, t5_dir)
    write_folder(models / "CSshihao--AR-GRPO_C2I_B_256", "c2i", safetensors=False, gpt_model="GPT-B",
                 vq_model="VQ-16", codebook_size=16384)
    with pytest.raises(CheckpointError, match="(?s)GPT-B c2i.*wrongly shaped"):  # past the file check: tiny weights
        registry.load("ar-grpo-c2i-b-256", models_dir=models, device="cpu")


def test_the_model_lists_offer_one_entry_per_folder(tmp_path, t5_dir):
    models = _models_dir(tmp_path, t5_dir)
    single = write_folder(models / "AR-GRPO_C2I_tiny", "c2i")
    sharded = write_folder(models / "sharded", "c2i", shards=3)
    first, *rest = ar_grpo.weight_files(sharded)
    assert registry.recognises(single / "model.safetensors") and registry.recognises(first)
    assert not any(registry.recognises(f) for f in rest)
    plain = models / "plain"
    plain.mkdir()
    (plain / "model.safetensors").write_bytes((single / "model.safetensors").read_bytes())
    (plain / "config.json").write_text(json.dumps({"model_type": "t5"}))
    assert not registry.recognises(plain / "model.safetensors")  # another model's folder
    assert match_file(single / "model.safetensors") == single
    # the loader's way in: a listed file (or the folder), found through the family's load_checkpoint
    model = load_checkpoint(first, device="cpu", **TINY_ARCHS)
    assert model.name == "sharded" and model.defaults == ar_grpo.C2I_DEFAULTS
    preset_folder = write_folder(models / "CSshihao--AR-GRPO_C2I_B_256", "c2i")
    assert load_checkpoint(preset_folder, device="cpu", **TINY_ARCHS).name == "ar-grpo-c2i-b-256"
