"""Fast tier: the nodes called directly, inside ComfyUI's real modules (no server).

Run with the ComfyUI venv: .scratch/comfyui/venv/bin/python -m pytest tests/comfy/test_nodes_fast.py -q
Models: a randomly initialised toy-shapes network (the real model classes, no weights needed), plus the
bundled toy-shapes weights where a test loads through the registry (skipped while they are missing).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "comfyui"))

N_SMALL = 3


# ----------------------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def toy(cenv):
    """A toy-shapes ARModel with random weights, wrapped for ComfyUI, and its encoded default prompt."""
    from scalingar_core.models.toy.model import ToyNet, ToyShapesModel, default_config

    torch.manual_seed(0)
    net = ToyNet(default_config())
    # Upstream init zeroes the output head (uniform logits, identical trajectories); give it random weights
    # so trajectories differ and the confidence signals move.
    torch.nn.init.normal_(net.gpt.output.weight, std=0.5)
    model = ToyShapesModel(net)
    patcher = cenv.nodes.patcher.wrap(model)
    cond = cenv.nodes.encode.ScalingARTextEncode.execute(patcher, "two red circles")[0]
    return patcher, cond


def run_sampler(cenv, patcher, cond, strategy="scalingar", n=N_SMALL, seed=0, temperature=0.0, top_k=-1,
                top_p=0.0, cfg=-1.0, profile=None, gate=None, scheduler=None, compile=False):
    node = cenv.nodes.sampler.ScalingARSampler
    return node.execute(patcher, cond, strategy, n, seed, temperature, top_k, top_p, cfg,
                        profile=profile, gate=gate, scheduler=scheduler, compile=compile)


def policy(cenv):
    from scalingar_core.engine.config import GateConfig, ProfileConfig, SchedulerConfig

    # A gate that must remove: after a short warm-up every C below 0.99 is a hard fail (one survivor kept).
    return ProfileConfig(), GateConfig(warmup_fraction=0.1, protection_fraction=0.1, hard_fail=0.99), \
        SchedulerConfig()


class FakeServer:
    client_id = "client-1"

    def __init__(self):
        self.sent = []

    def send_sync(self, event, data, sid=None):
        self.sent.append((event, data, sid))


# ----------------------------------------------------------------------------- package and registration

def test_root_package_imports_cleanly_without_comfyui(tmp_path):
    """Plain Python, no ComfyUI on the path: the root package imports and exports nothing ComfyUI-specific."""
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('pack', {str(REPO / '__init__.py')!r}, "
            f"submodule_search_locations=[{str(REPO)!r}])\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "print(sorted(k for k in vars(m) if (k.isupper() and not k.startswith('_')) or k == 'comfy_entrypoint'), m.__all__)\n"
            "print('comfy' in sys.modules, 'folder_paths' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[] []", "False False"]


def test_classic_and_v3_registration_list_the_same_nodes(cenv):
    import asyncio

    pack = cenv.pack
    assert pack.WEB_DIRECTORY == "./web"
    extension = asyncio.run(pack.comfy_entrypoint())
    v3 = asyncio.run(extension.get_node_list())
    v3_ids = {n.GET_SCHEMA().node_id for n in v3}
    assert v3_ids == set(pack.NODE_CLASS_MAPPINGS) == set(pack.NODE_DISPLAY_NAME_MAPPINGS)
    assert v3_ids == {"ScalingARModelLoader", "ScalingARTextEncode", "ScalingARConfidenceProfile",
                      "ScalingARTerminationGate", "ScalingARGuidanceScheduler", "ScalingARSampler",
                      "ScalingARTracePlot", "ScalingARTraceSave"}
    for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
        assert pack.NODE_DISPLAY_NAME_MAPPINGS[node_id].startswith("ScalingAR ")
        assert cls.GET_SCHEMA().node_id == node_id


def test_every_input_has_a_tooltip_and_every_node_a_description(cenv):
    for node_id, cls in cenv.pack.NODE_CLASS_MAPPINGS.items():
        info = cls.GET_NODE_INFO_V1()
        assert info["description"], node_id
        for section in ("required", "optional"):
            for name, spec in info["input"].get(section, {}).items():
                assert spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"


def test_dropdown_values_are_validated_for_every_combo_input(cenv):
    """ComfyUI 0.3.75 does not check V3 Combo values at queue time; our validate_inputs does, naming only
    the Combo inputs (so ComfyUI keeps its own min/max checks for the rest)."""
    import inspect

    for node_id, cls in cenv.pack.NODE_CLASS_MAPPINGS.items():
        inputs = cls.GET_NODE_INFO_V1()["input"]
        required = {**inputs["required"], **inputs.get("optional", {})}  # optional dropdowns are checked too
        combos = [name for name, spec in required.items() if spec[0] == "COMBO"]
        if not combos:
            continue
        args = inspect.getfullargspec(cls.validate_inputs).args
        assert args[1:] == combos + list(cls.CHECKED_INPUTS), node_id
        assert inspect.getfullargspec(cls.validate_inputs).varkw is None, node_id
        good = {name: required[name][1]["default"] for name in combos}
        assert cls.validate_inputs(**good) is True
        bad = dict(good, **{combos[0]: "no-such-choice"})
        message = cls.validate_inputs(**bad)
        assert isinstance(message, str) and combos[0] in message and "no-such-choice" in message


def test_model_dropdown_puts_toy_first_and_lists_loadable_checkpoints_only(cenv):
    from scalingar_core.models import registry

    folder = Path(cenv.nodes.models.default_folder())
    folder.mkdir(parents=True, exist_ok=True)
    loadable = folder / "t2i_XL_stage1_256.safetensors"  # a converted LlamaGen GPT file: the loader knows it
    nested = folder / "mine" / "c2i_B_256.pt"
    preset_file = folder / "peizesun--llamagen_t2i" / "t2i_XL_stage2_512.pt"  # reached through its preset
    unknown = [folder / "my_toy.safetensors", folder / "vq_ds16_t2i.pt", folder / "notes.txt",
               folder / "mine" / "pytorch_model.bin"]
    made = [loadable, nested, preset_file, *unknown]
    for p in made:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"0")
    try:
        options = cenv.nodes.loader.ScalingARModelLoader.GET_NODE_INFO_V1()["input"]["required"]["model"][1]["options"]
    finally:
        for p in made:
            p.unlink()
        preset_file.parent.rmdir()
        nested.parent.rmdir()
    assert options[0] == "toy-shapes-256"
    assert options[:len(registry.names())] == registry.names()
    assert options[len(registry.names()):] == ["mine/c2i_B_256.pt", "t2i_XL_stage1_256.safetensors"]


def test_dropdown_filter_is_a_replaceable_function(cenv):
    """The list's filter is one argument, so other model kinds (folders) can plug in their own check."""
    folder = Path(cenv.nodes.models.default_folder())
    folder.mkdir(parents=True, exist_ok=True)
    a, b = folder / "a.safetensors", folder / "b.safetensors"
    for p in (a, b):
        p.write_bytes(b"0")
    seen = []
    try:
        got = cenv.nodes.models.local_checkpoints(set(), loadable=lambda path: seen.append(path) or
                                                  path.endswith("b.safetensors"))
    finally:
        for p in (a, b):
            p.unlink()
    assert got == ["b.safetensors"] and sorted(seen) == [str(a), str(b)]  # asked with full paths


def test_pyproject_reads_with_comfyuis_own_config_parser(cenv):
    """ComfyUI (and the Registry, which shares these types) parses [tool.comfy], Models included."""
    from comfy_config import config_parser

    config = config_parser.extract_node_configuration(str(REPO))
    comfy = config.tool_comfy
    assert comfy.publisher_id == "scalingar" and comfy.display_name == "ScalingAR"
    assert len(comfy.models) >= 12
    assert all(m.location.startswith("scalingar/") and m.model_url.startswith("https://huggingface.co/")
               for m in comfy.models)
    assert "matplotlib>=3.7" in config.project.dependencies


def test_model_folder_keeps_extra_model_paths_entries(cenv):
    """An extra_model_paths.yaml ``scalingar:`` entry (read before packs import) survives registration."""
    import folder_paths

    saved = folder_paths.folder_names_and_paths.pop("scalingar")
    try:
        folder_paths.add_model_folder_path("scalingar", "/elsewhere/scalingar")  # what the yaml loader does
        cenv.nodes.models.register_folder()
        paths, exts = folder_paths.folder_names_and_paths["scalingar"]
        assert paths == [os.path.join(folder_paths.models_dir, "scalingar"), "/elsewhere/scalingar"]
        assert ".safetensors" in exts and ".pt" in exts
    finally:
        folder_paths.folder_names_and_paths["scalingar"] = saved


def test_loader_picks_the_folder_that_holds_the_preset(cenv, tmp_path):
    import folder_paths

    models = cenv.nodes.models
    other = tmp_path / "extra"
    (other / "peizesun--llamagen_t2i").mkdir(parents=True)
    paths, exts = folder_paths.folder_names_and_paths["scalingar"]
    folder_paths.folder_names_and_paths["scalingar"] = (paths + [str(other)], exts)
    try:
        files = [{"repo_id": "peizesun/llamagen_t2i", "filename": "t2i_XL_stage2_512.pt"}]
        assert models.folder_for(files) == str(other)
        assert models.folder_for([{"repo_id": "nobody/nothing", "filename": "x.pt"}]) == paths[0]
    finally:
        folder_paths.folder_names_and_paths["scalingar"] = (paths, exts)


def test_missing_preset_weights_error_names_file_and_folder(cenv):
    """A LlamaGen preset without its files and with downloads off: the error says what, where, how."""
    loader = cenv.nodes.loader.ScalingARModelLoader
    with pytest.raises(Exception) as err:
        loader.execute("llamagen-t2i-xl-256", "float32", False)
    message = str(err.value)
    assert "t2i_XL_stage1_256" in message or "vq_ds16_t2i" in message, message
    assert cenv.nodes.models.default_folder() in message, message


def test_local_checkpoint_that_is_no_known_family_is_a_clear_error(cenv):
    folder = Path(cenv.nodes.models.default_folder())
    bogus = folder / "bogus.safetensors"
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(bogus))
    try:
        with pytest.raises(ValueError, match="not a checkpoint of a known family"):
            cenv.nodes.loader.ScalingARModelLoader.execute("bogus.safetensors", "auto", False)
    finally:
        bogus.unlink()


def test_loader_returns_a_model_patcher_for_the_bundled_toy(cenv):
    from scalingar_core.models.toy import model as toy_model

    if not toy_model.WEIGHTS_FILE.is_file():
        pytest.skip(f"toy-shapes weights not in the repository yet ({toy_model.WEIGHTS_FILE})")
    import comfy.model_patcher

    out = cenv.nodes.loader.ScalingARModelLoader.execute("toy-shapes", "auto", False)
    patcher = out[0]
    assert isinstance(patcher, comfy.model_patcher.ModelPatcher)
    ar = patcher.model.ar
    assert ar.name == "toy-shapes"
    assert patcher.model_size() == sum(p.numel() * p.element_size() for p in ar.net.parameters()) + \
        sum(b.numel() * b.element_size() for b in ar.net.buffers())


def test_llamagen_family_loads_from_an_extra_folder_and_samples(cenv, tmp_path):
    """A tiny LlamaGen t2i preset in the upstream file layout (GPT .pt, VQ .pt, T5 folder) sitting in a
    second model folder, as extra_model_paths.yaml would add: loader -> encode -> sampler, all glue."""
    import comfy.model_management as mm
    import folder_paths

    from scalingar_core.models import registry
    from scalingar_core.models.llamagen.adapter import load_preset
    from scalingar_core.models.registry import ModelEntry
    from scalingar_core.testing.llamagen import tiny_preset, write_preset_files

    preset = tiny_preset("tiny-t2i-comfy-test")
    extra = tmp_path / "extra_scalingar"
    write_preset_files(preset, extra)
    registry.register(ModelEntry(info=preset.info(), loader=lambda **kw: load_preset(preset, **kw),
                                 files=preset.files()))
    paths, exts = folder_paths.folder_names_and_paths["scalingar"]
    folder_paths.folder_names_and_paths["scalingar"] = (paths + [str(extra)], exts)
    try:
        options = cenv.nodes.loader.ScalingARModelLoader.GET_NODE_INFO_V1()["input"]["required"]["model"][1]["options"]
        assert "tiny-t2i-comfy-test" in options
        assert not any(o.endswith(("gpt.pt", "vq.pt")) for o in options)  # preset files are not "local" entries
        patcher = cenv.nodes.loader.ScalingARModelLoader.execute("tiny-t2i-comfy-test", "float32", False)[0]
        # T5 has its own patcher, as ComfyUI's text encoders do: it is loaded for encoding and may be
        # offloaded while the GPT decodes
        text_patcher = patcher.model.text_encoder_patcher
        assert set(patcher.model.parts.keys()) == {"gpt", "vq"}
        assert set(text_patcher.model.parts.keys()) == {"text_encoder"}
        mm.unload_all_models()
        cond = cenv.nodes.encode.ScalingARTextEncode.execute(patcher, "a red car under the sky")[0]
        loaded = [lm.model for lm in mm.current_loaded_models]
        assert any(m is text_patcher for m in loaded) and not any(m is patcher for m in loaded)
        mm.unload_all_models()  # ComfyUI offloads the text encoder; the conditioning stays usable
        out = run_sampler(cenv, patcher, cond, n=2)
        loaded = [lm.model for lm in mm.current_loaded_models]
        assert any(m is patcher for m in loaded) and not any(m is text_patcher for m in loaded)
        ar = patcher.model.ar
        decode_only = cenv.nodes.patcher.memory_estimate(ar, 2, patcher.model_size(), text_encoder=False)
        assert decode_only == ar.memory_estimate(2, text_encoder=False) - patcher.model_size() > 0
        t5_bytes = ar.text_encoder.parameter_bytes()
        assert t5_bytes > 0 and ar.memory_estimate(2) - ar.memory_estimate(2, text_encoder=False) == t5_bytes
        image, candidates, trace, entropy_map = out.args
        assert image.shape == (1, 64, 64, 3) and candidates.shape == (2, 64, 64, 3)
        assert entropy_map.shape[0] == 2
        assert trace.steps == 16
    finally:
        folder_paths.folder_names_and_paths["scalingar"] = (paths, exts)
        registry._REGISTRY.pop("tiny-t2i-comfy-test", None)


def test_janus_presets_and_janus_pro_folders_in_the_dropdown_load_encode_and_sample(cenv):
    """The Janus-Pro presets are offered; a folder of the original deepseek-ai release in models/Janus-Pro/
    is listed by name (a folder that is not Janus is not), loads, encodes its chat-format prompt and samples
    with a removal: loader -> encode -> sampler glue for a second family."""
    import folder_paths

    from scalingar_core.testing import janus as synthetic

    base = Path(folder_paths.get_folder_paths(cenv.nodes.models.JANUS_FOLDER)[0])
    folder = synthetic.write_original_folder(base / "Janus-Pro-tiny",
                                             synthetic.random_model(synthetic.tiny_config(vq="vq16")))
    (base / "not-janus").mkdir(parents=True, exist_ok=True)
    (base / "not-janus" / "config.json").write_text('{"model_type": "llama"}')
    try:
        options = cenv.nodes.loader.ScalingARModelLoader.GET_NODE_INFO_V1()["input"]["required"]["model"][1]["options"]
        assert {"janus-pro-1b", "janus-pro-7b", "Janus-Pro/Janus-Pro-tiny"} <= set(options)
        assert "Janus-Pro/not-janus" not in options
        patcher = cenv.nodes.loader.ScalingARModelLoader.execute("Janus-Pro/Janus-Pro-tiny", "float32", False)[0]
        assert set(patcher.model.parts.keys()) == {"janus"}
        cond = cenv.nodes.encode.ScalingARTextEncode.execute(patcher, "a red cube")[0]
        assert int(cond.condition.ids[-1]) == int(cond.condition.uncond_ids[-1])  # both end in <begin_of_image>
        _, gate, _ = policy(cenv)
        image, candidates, trace, entropy_map = run_sampler(cenv, patcher, cond, n=3, gate=gate).args
        assert image.shape == (1, 64, 64, 3) and candidates.shape == (3, 64, 64, 3)
        assert entropy_map.shape[0] == 3  # one entropy panel per candidate for Janus too
        assert trace.steps == 16 and any(t.removed_at is not None for t in trace.trajectories)
    finally:
        import shutil

        shutil.rmtree(folder)
        shutil.rmtree(base / "not-janus")


def test_simplear_folders_in_the_dropdown_load_at_the_chosen_size_encode_and_sample(cenv, monkeypatch):
    """A SimpleAR folder in models/SimpleAR/ with its Cosmos decoder beside it is listed, loads at the
    loader's image size, encodes its prompt frame and samples with a removal (a third family's glue)."""
    import shutil

    import folder_paths

    from scalingar_core.models.simplear import model as simplear
    from scalingar_core.testing import simplear as synthetic
    from scalingar_core.testing.cosmos import TINY

    monkeypatch.setattr(simplear, "DECODER_CONFIG", TINY)  # the tiny archive's tokenizer, not DV8x16x16
    base = Path(folder_paths.get_folder_paths(cenv.nodes.models.SIMPLEAR_FOLDER)[0])
    folder, decoder = synthetic.write_folder(base)
    shutil.move(str(decoder.parent), str(base / "Cosmos-1.0-Tokenizer-DV8x16x16"))
    try:
        info = cenv.nodes.loader.ScalingARModelLoader.GET_NODE_INFO_V1()["input"]
        assert {"simplear-1.5b-rl", "SimpleAR/SimpleAR-tiny"} <= set(info["required"]["model"][1]["options"])
        assert "SimpleAR/Cosmos-1.0-Tokenizer-DV8x16x16" not in info["required"]["model"][1]["options"]
        assert "1024" in info["optional"]["image_size"][1]["options"]
        patcher = cenv.nodes.loader.ScalingARModelLoader.execute("SimpleAR/SimpleAR-tiny", "float32", False, "256")[0]
        assert set(patcher.model.parts.keys()) == {"simplear", "cosmos"}
        cond = cenv.nodes.encode.ScalingARTextEncode.execute(patcher, "a red cube")[0]
        _, gate, _ = policy(cenv)
        image, candidates, trace, entropy_map = run_sampler(cenv, patcher, cond, n=3, gate=gate).args
        assert image.shape == (1, 256, 256, 3) and candidates.shape == (3, 256, 256, 3)
        assert trace.steps == 256 and any(t.removed_at is not None for t in trace.trajectories)
        with pytest.raises(ValueError, match="the image size is a setting of SimpleAR models"):
            cenv.nodes.loader.ScalingARModelLoader.execute("toy-shapes-256", "float32", False, "512")
    finally:
        shutil.rmtree(folder)
        shutil.rmtree(base / "Cosmos-1.0-Tokenizer-DV8x16x16")


def test_janus_preset_without_weights_names_repo_files_and_folder(cenv):
    with pytest.raises(Exception) as err:
        cenv.nodes.loader.ScalingARModelLoader.execute("janus-pro-1b", "auto", False)
    message = str(err.value)
    assert "deepseek-community/Janus-Pro-1B" in message and "model.safetensors" in message, message
    assert cenv.nodes.models.default_folder() in message, message


def test_download_progress_drives_one_progress_bar_per_file(cenv):
    import comfy.utils

    ticks = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None, **kw:
                                             ticks.append((value, total, node_id)))
    try:
        progress = cenv.nodes.loader.DownloadProgress("5")
        progress("gpt.pt", 0, 200)
        progress("gpt.pt", 150, 200)
        progress("vq.pt", 10, None)  # unknown size: shown as done/done
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    assert ticks == [(0, 200, "5"), (150, 200, "5"), (10, 10, "5")]


def test_loader_shows_download_sizes_on_the_node_before_fetching(cenv, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from scalingar_core.models import registry

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    class Hub:  # HfApi stand-in
        def model_info(self, repo_id, files_metadata=False, timeout=None):
            return SimpleNamespace(siblings=[SimpleNamespace(rfilename="c2i_B_256.pt", size=444_000_000),
                                             SimpleNamespace(rfilename="vq_ds16_c2i.pt", size=288_000_000)])

    class Server:
        def __init__(self):
            self.texts = []

        def send_progress_text(self, text, node_id, sid=None):
            self.texts.append((text, node_id))

    server, files = Server(), registry.entry("llamagen-c2i-b-256").files
    cenv.nodes.loader.announce_download(files, str(tmp_path), "7", server=server, api=Hub())
    (text, node), = server.texts
    assert node == "7" and text.startswith("downloading 2 file(s), 0.73 GB")
    assert "FoundationVision/LlamaGen/c2i_B_256.pt  0.44 GB" in text
    folder = tmp_path / "FoundationVision--LlamaGen"
    folder.mkdir()
    for name in ("c2i_B_256.pt", "vq_ds16_c2i.pt"):
        (folder / name).write_bytes(b"x")
    cenv.nodes.loader.announce_download(files, str(tmp_path), "7", server=server, api=Hub())
    assert len(server.texts) == 1  # nothing to fetch: nothing shown


# ----------------------------------------------------------------------------- model management

def test_sampler_loads_the_model_through_comfy_model_management(cenv, toy):
    import comfy.model_management as mm

    patcher, cond = toy
    mm.unload_all_models()
    assert not any(lm.model is patcher for lm in mm.current_loaded_models)
    run_sampler(cenv, patcher, cond, strategy="plain", n=1)
    assert any(lm.model is patcher for lm in mm.current_loaded_models)
    assert patcher.model.ar.device == mm.get_torch_device()
    mm.unload_all_models()  # ComfyUI may evict it at any time; the next run must still work
    assert not any(lm.model is patcher for lm in mm.current_loaded_models)
    run_sampler(cenv, patcher, cond, strategy="plain", n=1)


def test_compile_toggle_decodes_with_the_compiled_step(cenv, toy):
    """The sampler's compile toggle reaches the model (traced here with dynamo's eager backend, which counts
    graphs like inductor without its C++ build); off again, the model decodes eagerly."""
    import torch._dynamo.utils as dynamo_utils

    from scalingar_core.models.compile import CompiledDecoder

    patcher, cond = toy
    ar = patcher.model.ar
    gpt = ar.net.gpt
    gpt.__dict__["_compiled_decoder"] = CompiledDecoder(gpt, backend="eager")
    try:
        dynamo_utils.counters.clear()
        out = run_sampler(cenv, patcher, cond, n=2, compile=True)
        assert dynamo_utils.counters["stats"]["unique_graphs"] >= 1 and out.args[1].shape[0] == 2
        assert gpt.__dict__["_compiled_decoder"].caches is None  # its static KV cache is not left on the device
        run_sampler(cenv, patcher, cond, n=2)
        assert ar.compile_decode is False
    finally:
        gpt.__dict__.pop("_compiled_decoder", None)


def test_memory_estimate_is_passed_without_double_counting_weights(cenv):
    patcher_mod = cenv.nodes.patcher

    class WithEstimate:
        def memory_estimate(self, n):
            return 1000 + 10 * n

    assert patcher_mod.memory_estimate(WithEstimate(), 4, weight_bytes=1000) == 40
    assert patcher_mod.memory_estimate(WithEstimate(), 4, weight_bytes=5000) == 0
    assert patcher_mod.memory_estimate(object(), 4) == 0


def test_patcher_moves_modules_in_place_and_the_model_follows(cenv):
    from scalingar_core.models.toy.model import ToyNet, ToyShapesModel, default_config

    model = ToyShapesModel(ToyNet(default_config()))
    module = cenv.nodes.patcher.ARModelModule(model)
    assert list(module.parts.keys()) == ["net"]
    module.to(torch.float64)  # any in-place move: the ARModel sees it through its own references
    assert model.net.gpt.tok_embeddings.weight.dtype == torch.float64
    class NoModules:
        weights = torch.zeros(3)

    with pytest.raises(TypeError, match="holds no torch modules"):
        cenv.nodes.patcher.ARModelModule(NoModules())


# ----------------------------------------------------------------------------- config nodes

@pytest.mark.parametrize("node_name, config_name", [("ScalingARConfidenceProfile", "ProfileConfig"),
                                                    ("ScalingARTerminationGate", "GateConfig"),
                                                    ("ScalingARGuidanceScheduler", "SchedulerConfig")])
def test_config_node_inputs_are_the_dataclass_fields_with_their_defaults(cenv, node_name, config_name):
    from scalingar_core.engine import config as cfg

    cls = getattr(cfg, config_name)
    node = cenv.pack.NODE_CLASS_MAPPINGS[node_name]
    table = cenv.nodes.config_fields.TABLES[cls]
    assert [f.name for f in fields(cls)] == list(table), f"nodes/config_fields.py out of date for {config_name}"
    inputs = node.GET_NODE_INFO_V1()["input"]["required"]
    assert list(inputs) == [f.name for f in fields(cls)]
    defaults = {name: spec[1]["default"] for name, spec in inputs.items()}
    assert node.execute(**defaults)[0] == cls()
    for name, spec in inputs.items():  # every default inside its own widget range
        opts = spec[1]
        if "options" in opts:
            assert opts["default"] in opts["options"], name
        elif opts.get("min") is not None:
            assert opts["min"] <= opts["default"] <= opts["max"], name


def test_config_node_rejects_a_bad_combination_with_the_setting_named(cenv):
    from scalingar_core.engine.config import ProfileConfig

    node = cenv.pack.NODE_CLASS_MAPPINGS["ScalingARConfidenceProfile"]
    values = {f.name: f.default for f in fields(ProfileConfig)}
    values.update(w_tok=0.0, w_blk=0.0)
    with pytest.raises(ValueError, match="w_tok \\+ w_blk"):
        node.execute(**values)


# ----------------------------------------------------------------------------- sampler

def test_sampler_outputs_image_candidates_trace_and_ui_summary(cenv, toy):
    patcher, cond = toy
    profile, gate, scheduler = policy(cenv)
    out = run_sampler(cenv, patcher, cond, n=4, profile=profile, gate=gate, scheduler=scheduler)
    image, candidates, trace, entropy_map = out.args
    assert image.shape == (1, 32, 32, 3) and image.dtype == torch.float32
    assert candidates.shape == (4, 32, 32, 3)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert trace.trajectories[trace.selected].removed_at is None  # a survivor is chosen
    assert torch.equal(image[0], candidates[trace.selected])
    summary = out.ui["scalingar_trace"][0]
    json.dumps(summary, allow_nan=False)  # the browser's JSON.parse rejects NaN
    assert summary["num_trajectories"] == 4 and summary["steps"] == 64
    assert summary["selected"] == trace.selected
    assert len(summary["trajectories"]) == 4 and len(summary["trajectories"][0]["C"]) >= 1
    assert summary["strategy"] == "scalingar"
    # the entropy map: one panel per candidate (enlarged, with a title row and a colour bar), an IMAGE batch
    from scalingar_core.app.entropy_map import panel_layout

    layout = panel_layout(256, 256)  # 32 px toy images are enlarged 8x
    assert entropy_map.shape == (4, layout.height, layout.width, 3) and entropy_map.dtype == torch.float32
    assert 0.0 <= float(entropy_map.min()) and float(entropy_map.max()) <= 1.0


def test_removed_candidates_are_framed_in_red(cenv, toy):
    patcher, cond = toy
    profile, gate, scheduler = policy(cenv)
    out = run_sampler(cenv, patcher, cond, n=6, profile=profile, gate=gate, scheduler=scheduler)
    _, candidates, trace, entropy_map = out.args
    removed = [r.index for r in trace.trajectories if r.removed_at is not None]
    assert removed, "the aggressive gate removed nobody in 64 tokens; the frame cannot be checked"
    corner = candidates[removed[0], 0, 0]
    assert corner[0] > 0.8 and corner[1] < 0.2 and corner[2] < 0.2  # red
    from scalingar_core.app.entropy_map import panel_layout

    left, top = panel_layout(256, 256).image[:2]
    for i, r in enumerate(trace.trajectories):  # the entropy map frames the same candidates
        corner = entropy_map[i, top, left]
        assert (corner[0] > 0.8 and corner[1] < 0.2 and corner[2] < 0.2) == (r.removed_at is not None), i
    assert sum(r.removed_at is None for r in trace.trajectories) >= 1


def test_same_seed_same_images_other_seed_other_images(cenv, toy):
    patcher, cond = toy
    a = run_sampler(cenv, patcher, cond, seed=7)
    b = run_sampler(cenv, patcher, cond, seed=7)
    c = run_sampler(cenv, patcher, cond, seed=8)
    assert torch.equal(a.args[1], b.args[1])
    assert not torch.equal(a.args[1], c.args[1])


def test_absent_gate_and_scheduler_mean_off_and_sentinels_mean_model_defaults(cenv, toy):
    from scalingar_core.engine.config import GateConfig, ProfileConfig, SchedulerConfig

    s = cenv.nodes.sampler
    sampling = s.sampling_config(5, 3, 0.0, -1, 0.0, -1.0)
    assert (sampling.temperature, sampling.top_k, sampling.top_p, sampling.cfg_scale) == (None, None, None, None)
    explicit = s.sampling_config(5, 3, 0.7, 0, 0.9, 0.0)
    assert (explicit.temperature, explicit.top_k, explicit.top_p, explicit.cfg_scale) == (0.7, 0, 0.9, 0.0)
    config = s.run_config("scalingar", sampling)
    assert config.gate.enabled is False and config.scheduler.enabled is False
    assert config.profile == ProfileConfig()
    config = s.run_config("scalingar", sampling, gate=GateConfig(), scheduler=SchedulerConfig())
    assert config.gate.enabled and config.scheduler.enabled
    patcher, cond = toy
    trace = run_sampler(cenv, patcher, cond, n=4, cfg=2.0).args[2]
    assert all(r.removed_at is None for r in trace.trajectories)  # no gate: nobody removed
    assert all(v == 2.0 for r in trace.trajectories for v in r.state["cfg"])  # no scheduler: fixed CFG


def _run_with_reporter(cenv, toy, seconds_per_token):
    """One toy generation (64 tokens) through a StepReporter on a fake clock; returns ticks and events."""
    import comfy.utils

    patcher, cond = toy
    ticks = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None, **kw:
                                             ticks.append((value, total, node_id)))
    server = FakeServer()
    clock = iter(i * seconds_per_token for i in range(10_000))
    reporter = cenv.nodes.progress.StepReporter("17", "prompt-1", server=server, clock=lambda: next(clock))
    from scalingar_core.engine.loop import generate

    try:
        config = cenv.nodes.sampler.run_config("scalingar",
                                                cenv.nodes.sampler.sampling_config(3, 0, 0.0, -1, 0.0, -1.0))
        generate(patcher.model.ar, cond.condition, config, callback=reporter)
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    return ticks, server


def test_progress_and_events_are_throttled_to_what_a_person_can_see(cenv, toy):
    # 64 tokens a second (1/64 s each, exact in binary): the bar moves every 4th token (>= 50 ms apart),
    # the plot every 13th (>= 200 ms apart); the first and the last token always
    ticks, server = _run_with_reporter(cenv, toy, 1 / 64)
    values = [t[0] for t in ticks]
    assert values == list(range(1, 64, 4)) + [64] and {t[1] for t in ticks} == {64}
    assert len(values) <= 20 + 1  # one second of tokens: at most 20 updates, plus the last token
    assert {t[2] for t in ticks} == {"17"}
    events = [d for e, d, sid in server.sent if e == "scalingar.step"]
    assert all(sid == "client-1" for _, _, sid in server.sent)
    assert [e["step"] for e in events] == [0, 13, 26, 39, 52, 63]
    for e in events:
        assert e["node"] == "17" and e["prompt_id"] == "prompt-1"
        assert {"step", "total", "num_trajectories", "ids", "C", "cfg", "theta", "removed"} <= set(e)
        json.dumps(e, allow_nan=False)


def test_slow_tokens_still_move_the_bar_every_token(cenv, toy):
    # 125 ms per token (a big model): every token is worth showing, the plot every other token
    ticks, server = _run_with_reporter(cenv, toy, 1 / 8)
    assert [t[0] for t in ticks] == list(range(1, 65))
    steps = [d["step"] for e, d, _ in server.sent if e == "scalingar.step"]
    assert steps == list(range(0, 64, 2)) + [63]


def test_throttle_says_yes_first_last_and_once_per_interval(cenv):
    throttle = cenv.nodes.progress.Throttle(0.05)
    times = [0.0, 0.01, 0.049, 0.05, 0.07, 0.2, 0.21]
    assert [throttle.due(t) for t in times] == [True, False, False, True, False, True, False]
    assert throttle.due(0.215, last=True)


def test_interrupt_aborts_generation_and_the_next_run_works(cenv, toy):
    import comfy.model_management as mm

    patcher, cond = toy
    mm.interrupt_current_processing(True)
    with pytest.raises(mm.InterruptProcessingException):
        run_sampler(cenv, patcher, cond)
    assert not mm.processing_interrupted()  # the check consumed the flag
    assert run_sampler(cenv, patcher, cond).args[0].shape == (1, 32, 32, 3)


def test_conditioning_from_another_model_is_refused_with_the_fix(cenv, toy):
    patcher, cond = toy
    alien = cenv.nodes.types.EncodedPrompt(model_name="llamagen-t2i-xl-512", prompt="x", condition=None)
    with pytest.raises(ValueError, match="same ScalingAR Model Loader"):
        run_sampler(cenv, patcher, alien)


def test_invalid_sampling_setting_names_the_setting(cenv, toy):
    patcher, cond = toy
    with pytest.raises(ValueError, match="top_k"):
        run_sampler(cenv, patcher, cond, top_k=10**6)  # larger than the toy vocabulary


# ----------------------------------------------------------------------------- trace nodes

def _count_colour(image: torch.Tensor, rgb, tol=40) -> int:
    target = torch.tensor(rgb, dtype=torch.float32) / 255.0
    return int(((image - target).abs().amax(-1) < tol / 255.0).sum())


def test_trace_plot_image(cenv, toy):
    patcher, cond = toy
    plot_node, tp = cenv.nodes.trace_nodes.ScalingARTracePlot, __import__("scalingar_core.app.plot", fromlist=["x"])
    from scalingar_core.engine.config import GateConfig, SchedulerConfig

    # Gate on but unable to remove anyone (hard fail 0, threshold quantile tiny): four full-length lines.
    keep_all = GateConfig(quantile=0.01, hard_fail=0.0, min_survivors=4)
    trace = run_sampler(cenv, patcher, cond, n=4, gate=keep_all, scheduler=SchedulerConfig()).args[2]
    plot = plot_node.execute(trace, 640, 400)[0]
    assert plot.shape == (1, 400, 640, 3)
    hard_fail = tuple(int(tp.THEME["hard_fail"][i:i + 2], 16) for i in (1, 3, 5))
    panel = [int(tp.THEME["panel"][i:i + 2], 16) for i in (1, 3, 5)]
    for r in trace.trajectories:  # the selected line in its colour, the others dimmed over the panel
        rgb = tp.colour(r.index) if r.selected else [0.55 * c + 0.45 * p for c, p in zip(tp.colour(r.index), panel)]
        assert _count_colour(plot[0], rgb, tol=20) > 100, f"trajectory {r.index} not drawn"
    assert _count_colour(plot[0], hard_fail, tol=20) < 30  # only the legend's key
    blank = plot_node.execute(trace, 640, 400)[0]
    assert torch.equal(plot, blank)  # deterministic
    profile, gate, scheduler = policy(cenv)
    pruned = run_sampler(cenv, patcher, cond, n=4, profile=profile, gate=gate, scheduler=scheduler).args[2]
    assert any(r.removed_at is not None for r in pruned.trajectories)
    crosses = _count_colour(plot_node.execute(pruned, 640, 400)[0][0], hard_fail, tol=20)
    assert crosses > 30, crosses  # hard-fail crosses beyond the legend's


def test_trace_save_writes_json_and_csv_into_the_output_folder(cenv, toy):
    import folder_paths

    patcher, cond = toy
    trace = run_sampler(cenv, patcher, cond).args[2]
    out = cenv.nodes.trace_nodes.ScalingARTraceSave.execute(trace, "scalingar/t", "json+csv")
    files = out.ui["scalingar_files"]
    assert [Path(f["filename"]).suffix for f in files] == [".json", ".csv"]
    base = Path(folder_paths.get_output_directory()) / files[0]["subfolder"]
    data = json.loads((base / files[0]["filename"]).read_text())
    assert data["num_trajectories"] == N_SMALL and len(data["trajectories"]) == N_SMALL
    assert {"signals", "state"} <= set(data["trajectories"][0])
    rows = (base / files[1]["filename"]).read_text().splitlines()
    assert rows[0].startswith("trajectory,step,threshold")
    assert len(rows) - 1 == sum(len(t["state"]["C"]) for t in data["trajectories"])
    again = cenv.nodes.trace_nodes.ScalingARTraceSave.execute(trace, "scalingar/t", "json")
    assert again.ui["scalingar_files"][0]["filename"] != files[0]["filename"]  # a counter, no overwrite
    with pytest.raises(Exception):
        cenv.nodes.trace_nodes.ScalingARTraceSave.execute(trace, "../../escape", "json")


# ----------------------------------------------------------------------------- workflows

@pytest.mark.parametrize("name", ["toy_shapes_scalingar", "llamagen_t2i_512_scalingar", "ar_grpo_256_scalingar",
                                  "janus_pro_1b_scalingar", "scalingar_vs_best_of_n"])
def test_shipped_workflow_converts_against_the_node_schemas(cenv, name):
    """Every template's widget values line up with the current inputs (same check the editor relies on)."""
    import workflow_api

    import nodes as comfy_nodes  # ComfyUI's own module: SaveImage, PreviewImage

    info = {}
    for node_id, cls in {**comfy_nodes.NODE_CLASS_MAPPINGS, **cenv.pack.NODE_CLASS_MAPPINGS}.items():
        if node_id.startswith("ScalingAR") or node_id in ("SaveImage", "PreviewImage"):
            info[node_id] = (cls.GET_NODE_INFO_V1() if hasattr(cls, "GET_NODE_INFO_V1")
                             else {"input": cls.INPUT_TYPES(), "input_order": None})
    for v in info.values():
        if v.get("input_order") is None:
            v["input_order"] = {k: list(s) for k, s in v["input"].items()}
    workflow = json.loads((REPO / "workflows" / f"{name}.json").read_text())
    notes = [n for n in workflow["nodes"] if n["type"] == "Note"]
    assert notes and len(notes[0]["widgets_values"][0]) > 80, "each template explains itself in a Note"
    api = workflow_api.to_api(workflow, info)
    for node_id, node in api.items():
        spec = info[node["class_type"]]["input"]
        for section in ("required",):
            for input_name in spec.get(section, {}):
                if input_name in ("unique_id", "prompt", "extra_pnginfo"):
                    continue
                assert input_name in node["inputs"], f"{name}: node {node_id} lacks {input_name}"
        for input_name, value in node["inputs"].items():
            all_specs = {**spec.get("required", {}), **spec.get("optional", {})}
            opts = all_specs[input_name][1] if len(all_specs[input_name]) > 1 else {}
            if isinstance(value, list):
                continue  # a link
            if "options" in opts:
                assert value in opts["options"], f"{name}: {node_id}.{input_name}={value!r}"
            if opts.get("min") is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
                assert opts["min"] <= value <= opts["max"], f"{name}: {node_id}.{input_name}={value!r}"
    samplers = [n for n in api.values() if n["class_type"] == "ScalingARSampler"]
    if name == "scalingar_vs_best_of_n":
        assert sorted(s["inputs"]["strategy"] for s in samplers) == ["best_of_n", "scalingar"]
        assert len({s["inputs"]["seed"] for s in samplers}) == 1
