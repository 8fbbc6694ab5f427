"""SimpleAR through transformers' Qwen2ForCausalLM on a tiny random checkpoint in the published layout: greedy
tokens and guided logits against transformers' own unbatched CFG generation (SimpleAR's log-softmax formula),
the full ScalingAR path, the image against our Cosmos decoder, presets and bad input."""
import shutil

import pytest
import torch

pytest.importorskip("diffusers.models.autoencoders.autoencoder_kl_cosmos")

from transformers import LogitsProcessor, LogitsProcessorList  # noqa: E402

from scalingar_core.engine.config import GateConfig, RunConfig, SamplingConfig  # noqa: E402
from scalingar_core.engine.gate import steps_from_fraction  # noqa: E402
from scalingar_core.engine.loop import generate  # noqa: E402
from scalingar_core.engine.sampling import guided_logits  # noqa: E402
from scalingar_core.models import registry  # noqa: E402
from scalingar_core.models.cosmos.decoder import load_decoder  # noqa: E402
from scalingar_core.models.simplear import model as simplear  # noqa: E402
from scalingar_core.models.simplear.presets import PRESETS  # noqa: E402
from scalingar_core.testing import simplear as synthetic  # noqa: E402
from scalingar_core.testing.cosmos import TINY  # noqa: E402
from scalingar_core.testing.sessions import step_rows  # noqa: E402

torch.set_num_threads(1)
SHORT = "a red cube"
LONG = "a photo of two small green spheres on the left of a big blue cube, in the style of an old painting"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return synthetic.write_folder(tmp_path_factory.mktemp("simplear"))


@pytest.fixture(scope="module")
def tiny(files):
    folder, decoder = files
    return simplear.load_folder(folder, decoder, "tiny-simplear", image_size=64, device="cpu", dtype="fp32",
                                decoder_config=TINY)


class KeepImageCodes(LogitsProcessor):
    """transformers' side of our deliberate difference: only image codes can be drawn."""

    def __init__(self, offset: int, size: int):
        self.offset, self.size = offset, size

    def __call__(self, input_ids, scores):
        keep = torch.zeros_like(scores, dtype=torch.bool)
        keep[:, self.offset: self.offset + self.size] = True
        return scores.masked_fill(~keep, float("-inf"))


def transformers_generate(ours, prompt, scale):
    """transformers' greedy generation with its unbatched CFG (negative prompt run apart, guided on
    log-softmax outputs as SimpleAR does): codes and the processed scores of every step."""
    cond = ours.encode(prompt)
    steps = ours.grid[0] * ours.grid[1]
    out = ours.lm.generate(cond.ids[None], attention_mask=torch.ones_like(cond.ids)[None],
                           negative_prompt_ids=cond.uncond_ids[None], guidance_scale=scale, do_sample=False,
                           max_new_tokens=steps, min_new_tokens=steps, output_scores=True,
                           return_dict_in_generate=True,
                           logits_processor=LogitsProcessorList([KeepImageCodes(ours.prompts.offset, ours.vocab_size)]))
    return out.sequences[0, cond.ids.numel():] - ours.prompts.offset, out.scores


@pytest.mark.parametrize("prompt", [SHORT, LONG])
@pytest.mark.parametrize("scale", [6.0, 2.0])
def test_greedy_cfg_matches_transformers_guided_generation(tiny, prompt, scale):
    expected, scores = transformers_generate(tiny, prompt, scale)
    cond = tiny.encode(prompt)
    assert cond.ids.numel() != cond.uncond_ids.numel()  # the rows really differ in length (padding is used)
    config = RunConfig(strategy="plain", sampling=SamplingConfig(top_k=1, cfg_scale=scale))
    result = generate(tiny, cond, config)
    assert len(set(expected.tolist())) > 2 and torch.equal(result.codes[0], expected)
    # guided logits at every step: our session fed transformers' tokens gives its processed scores
    session = tiny.start(cond, 1)
    logits = session.prefill()
    lo, hi = tiny.prompts.offset, tiny.prompts.offset + tiny.vocab_size
    for t, code in enumerate(expected.tolist()):
        mine = guided_logits(logits[:1], logits[1:], torch.tensor([scale]))
        assert torch.allclose(mine, scores[t][:, lo:hi], atol=1e-4, rtol=1e-5), f"guided logits differ at step {t}"
        if t + 1 < len(expected):
            logits = session.step(torch.tensor([code]))


def test_rows_of_different_lengths_equal_their_runs_apart(tiny):
    cond = tiny.encode(SHORT)
    both = tiny.start(cond, 2)
    alone = tiny.start(cond, 1, guidance=False)
    a, b = both.prefill(), alone.prefill()
    assert a.shape == (4, 24) and torch.allclose(a[:2], b.expand(2, -1), atol=1e-5)
    for code in (3, 17, 0):
        a, b = both.step(torch.tensor([code, code])), alone.step(torch.tensor([code]))
        assert torch.allclose(a[0], b[0], atol=1e-5) and torch.allclose(a[1], b[0], atol=1e-5)
    both.keep(torch.tensor([1, 1, 0]))  # repeats copy rows, in both halves
    a = both.step(torch.tensor([5, 5, 5]))
    assert a.shape == (6, 24) and torch.allclose(a[0], a[2], atol=1e-5) and torch.allclose(a[3], a[5], atol=1e-5)


def test_scalingar_path_prunes_selects_and_decodes_with_our_cosmos_decoder(tiny, files):
    config = RunConfig(strategy="scalingar", sampling=SamplingConfig(num_trajectories=4, seed=3),
                       gate=GateConfig(hard_fail=0.99, min_survivors=2))
    with step_rows(tiny) as rows_seen:
        result = generate(tiny, tiny.encode(SHORT), config)
    removed = [r for r in result.trace.trajectories if r.removed_at is not None]
    assert len(removed) == 2 and result.selected not in {r.index for r in removed}
    assert rows_seen[0] == 4 and rows_seen[-1] == 2 and result.tokens_generated < 4 * 16
    assert result.images.shape == (4, 3, 64, 64)
    done = (result.codes >= 0).all(1)  # removed trajectories keep -1 where they stopped
    reference = load_decoder(files[1], TINY).decode_codes(result.codes[done], (4, 4))
    assert done.sum() == 2 and torch.equal(result.images[done], reference)
    assert torch.equal(result.image, result.images[result.selected])


def test_gate_warmup_scales_with_the_token_count():
    for size, tokens in ((256, 256), (512, 1024), (768, 2304), (1024, 4096)):
        assert simplear.grid_side(size) ** 2 == tokens
        assert steps_from_fraction(GateConfig().warmup_fraction, tokens) == tokens // 8  # 12.5 %


def test_presets_are_registered_with_simplears_settings():
    names = registry.names()
    for name in ("simplear-0.5b-sft", "simplear-0.5b-rl", "simplear-1.5b-sft", "simplear-1.5b-rl"):
        assert name in names
        info = registry.entry(name).info
        assert info.defaults.cfg_scale == 6.0 and info.vocab_size == 64000 and info.grid == (64, 64)
        repos = [f["repo_id"] for f in registry.entry(name).files]
        assert repos == [PRESETS[name].repo_id, "nvidia/Cosmos-1.0-Tokenizer-DV8x16x16"]


def test_missing_files_are_named(tmp_path, files):
    with pytest.raises(FileNotFoundError, match=r"Daniel0724/SimpleAR-0\.5B-RL"):
        registry.load("simplear-0.5b-rl", models_dir=tmp_path, device="cpu")
    folder, decoder = files
    copy = tmp_path / "lm"
    shutil.copytree(folder, copy)
    shard = next(copy.glob("model-00002-*.safetensors"))
    shard.unlink()
    with pytest.raises(FileNotFoundError, match=rf"{shard.name} missing in {copy}"):
        simplear.load_folder(copy, decoder, "x", 64, "cpu", "fp32", TINY)
    with pytest.raises(FileNotFoundError, match=r"the Cosmos decoder .*nope\.jit is missing; fetch decoder\.jit"):
        simplear.load_folder(folder, tmp_path / "nope.jit", "x", 64, "cpu", "fp32", TINY)


def test_bad_input_is_one_clear_line(tmp_path, files, tiny):
    folder, decoder = files
    with pytest.raises(ValueError, match=r"image size 100 px is not a positive multiple of 16 px"):
        simplear.load_folder(folder, decoder, "x", 100, "cpu", "fp32", TINY)
    with pytest.raises(ValueError, match="encodes to no tokens"):
        tiny.encode("")
    plain = tmp_path / "plain"
    shutil.copytree(folder, plain)
    synthetic.tiny_tokenizer(special=False).save_pretrained(plain)
    with pytest.raises(ValueError, match=r"tokenizer_config\.json lacks SimpleAR's special tokens <\|t2i\|>"):
        simplear.load_folder(plain, decoder, "x", 64, "cpu", "fp32", TINY)


def test_memory_table_grows_with_n_and_size():
    table = {(size, n): simplear.preset_memory("1.5B", n, size) for size in simplear.IMAGE_SIZES for n in (1, 4, 8)}
    assert table[(1024, 8)]["kv_cache"] == 8 * table[(1024, 1)]["kv_cache"]
    assert table[(1024, 1)]["kv_cache"] > 10 * table[(256, 1)]["kv_cache"]
    assert 3.0e9 < table[(256, 1)]["weights"] < 4.0e9  # about 1.7 B parameters in bf16 + the decoder


def test_image_size_is_a_simplear_setting_only(tmp_path):
    with pytest.raises(ValueError, match="the image size is a setting of SimpleAR models"):
        registry.load("toy-shapes-256", image_size=512)
    with pytest.raises(ValueError, match=r"image size 500 px is not a positive multiple of 16 px"):
        registry.load("simplear-1.5b-rl", models_dir=tmp_path, image_size=500)


def test_a_local_folder_finds_its_decoder_beside_it(tmp_path, files):
    from scalingar_core.models.simplear.presets import is_simplear_folder, load_checkpoint

    folder, decoder = files
    base = tmp_path / "SimpleAR"
    shutil.copytree(folder, base / "SimpleAR-tiny")
    assert is_simplear_folder(base / "SimpleAR-tiny") and not is_simplear_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"put decoder\.jit of nvidia/Cosmos-1\.0-Tokenizer-DV8x16x16 in"):
        load_checkpoint(base / "SimpleAR-tiny", device="cpu", dtype="fp32")
    (base / "Cosmos-1.0-Tokenizer-DV8x16x16").mkdir()
    shutil.copy(decoder, base / "Cosmos-1.0-Tokenizer-DV8x16x16" / "decoder.jit")
    # the real decoder config is DV8x16x16: the tiny archive is found, then refused by its FSQ levels
    with pytest.raises(ValueError, match="belongs to another tokenizer"):
        load_checkpoint(base / "SimpleAR-tiny", device="cpu", dtype="fp32", image_size=64)


def test_loaded_model_memory_estimate_and_an_old_transformers(tiny, files, monkeypatch):
    one, eight = tiny.memory_estimate(1), tiny.memory_estimate(8)
    assert one > sum(p.numel() * 4 for p in tiny.lm.parameters()) and eight > one
    import transformers

    monkeypatch.setattr(transformers, "__version__", "4.57.6")
    with pytest.raises(RuntimeError, match=r"SimpleAR needs transformers >= 5.24 .*pip install -U"):
        simplear.load_folder(files[0], files[1], "x", 64, "cpu", "fp32", TINY)


def test_preset_with_a_missing_shard_names_it_and_the_fetch_command(tmp_path, files):
    folder, decoder = files
    local = tmp_path / "Daniel0724--SimpleAR-0.5B-RL"
    shutil.copytree(folder, local)
    (tmp_path / "nvidia--Cosmos-1.0-Tokenizer-DV8x16x16").mkdir()
    shutil.copy(decoder, tmp_path / "nvidia--Cosmos-1.0-Tokenizer-DV8x16x16" / "decoder.jit")
    shard = next(local.glob("model-00001-*.safetensors"))
    shard.unlink()
    with pytest.raises(FileNotFoundError, match=rf"{shard.name} missing in .*; fetch them with `hf download "
                                                r"Daniel0724/SimpleAR-0\.5B-RL"):
        registry.load("simplear-0.5b-rl", models_dir=tmp_path, device="cpu", image_size=256)
