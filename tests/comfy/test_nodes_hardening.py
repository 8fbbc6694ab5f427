"""Fast tier, bad input in ComfyUI: a Trace Save that cannot write fails at queue time (not after the
generation) and writes atomically; files that are not checkpoints and prompts that clean to nothing are named
errors; messages repeat at most ~200 characters of what the user typed."""
from __future__ import annotations

from pathlib import Path

import pytest


def _trace():
    from scalingar_core.engine.loop import generate
    from scalingar_core.testing.reference_model import ReferenceModel

    model = ReferenceModel(grid=(4, 4))
    return generate(model, model.encode("a")).trace


def test_trace_save_target_is_checked_at_queue_time(cenv):
    import folder_paths

    save = cenv.nodes.trace_nodes.ScalingARTraceSave
    blocker = Path(folder_paths.get_output_directory()) / "not_a_folder"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("x")
    try:
        assert save.validate_inputs(filename_prefix="scalingar/trace", format="json") is True
        for prefix, why in (("../../escape", "outside ComfyUI's output folder"), ("", "empty"),
                            ("not_a_folder/trace", "is a file"), ("/etc/trace", "outside")):
            message = save.validate_inputs(filename_prefix=prefix, format="json")
            assert isinstance(message, str) and why in message, (prefix, message)
        with pytest.raises(ValueError, match="is a file"):
            save.execute(_trace(), "not_a_folder/trace", "json")
    finally:
        blocker.unlink()


def test_trace_save_writes_atomically(cenv, monkeypatch):
    import folder_paths

    from scalingar_core.engine.loop import generate
    from scalingar_core.testing.reference_model import ReferenceModel

    model = ReferenceModel(grid=(4, 4))
    trace = generate(model, model.encode("a")).trace
    real_write = Path.write_text

    def interrupted(self, data, *a, **k):
        real_write(self, data[: len(data) // 2], *a, **k)
        raise KeyboardInterrupt
    monkeypatch.setattr(Path, "write_text", interrupted)
    folder = Path(folder_paths.get_output_directory()) / "atomic"
    try:
        cenv.nodes.trace_nodes.ScalingARTraceSave.execute(trace, "atomic/trace", "json")
    except KeyboardInterrupt:
        pass
    monkeypatch.undo()
    assert not folder.exists() or list(folder.iterdir()) == []  # no truncated trace, no temporary file


def test_combo_errors_echo_at_most_about_200_characters(cenv):
    message = cenv.nodes.trace_nodes.ScalingARTraceSave.validate_inputs(filename_prefix="t", format="x" * 10_000)
    assert isinstance(message, str) and len(message) < 600 and "(10000 characters)" in message


def test_a_text_file_named_like_a_checkpoint_is_named_in_the_loader(cenv):
    folder = Path(cenv.nodes.models.default_folder())
    folder.mkdir(parents=True, exist_ok=True)
    gpt, vq = folder / "c2i_B_256.pt", folder / "vq_ds16_c2i.pt"
    gpt.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 443000000\n")
    vq.write_bytes(b"only needs to exist: the GPT file is read first")
    try:
        with pytest.raises(ValueError, match="is not a checkpoint: it is a Git LFS pointer"):
            cenv.nodes.loader.ScalingARModelLoader.execute("c2i_B_256.pt", "auto", False)
    finally:
        gpt.unlink()
        vq.unlink()


def test_a_llamagen_prompt_that_cleans_to_nothing_is_an_error_in_text_encode(cenv, tmp_path):
    from scalingar_core.models.llamagen.adapter import load_preset
    from scalingar_core.testing.llamagen import tiny_preset, write_preset_files

    preset = tiny_preset("tiny-t2i-empty-caption")
    write_preset_files(preset, tmp_path)
    patcher = cenv.nodes.patcher.wrap(load_preset(preset, models_dir=tmp_path, device="cpu"))
    encode = cenv.nodes.encode.ScalingARTextEncode
    for prompt in ("猫写真", "https://example.com/cat", "  "):  # empty after upstream's cleaner
        with pytest.raises(ValueError, match="empty after LlamaGen's caption cleaning"):
            encode.execute(patcher, prompt)
    assert encode.execute(patcher, "a red car")[0].prompt == "a red car"


def test_nodes_called_directly_check_their_inputs_like_the_server(cenv, tmp_path):
    """Without a server nothing validates the inputs: each node does, with one line naming node and input."""
    from scalingar_core.engine.config import GateConfig

    n = cenv.nodes
    loader, encode, sampler = n.loader.ScalingARModelLoader, n.encode.ScalingARTextEncode, n.sampler.ScalingARSampler
    save, gate = n.trace_nodes.ScalingARTraceSave, n.config_nodes.ScalingARTerminationGate
    model = loader.execute("toy-shapes", "auto", False)[0]
    cond = encode.execute(model, "a red circle")[0]
    good = {"model": model, "conditioning": cond, "strategy": "scalingar", "num_trajectories": 2, "seed": 0,
            "temperature": 0.0, "top_k": -1, "top_p": 0.0, "cfg_scale": -1.0}
    cases = [
        (lambda: encode.execute(None, "a red circle"), "ScalingAR Text Encode: input model is missing"),
        (lambda: encode.execute(model, None), "ScalingAR Text Encode: input prompt is missing"),
        (lambda: encode.execute("toy-shapes", "x"), "model='toy-shapes' must be a model from ScalingAR Model Loader, got str"),
        (lambda: loader.execute("toy-shapes", "fp99", False), "dtype='fp99' is not one of the choices: auto"),
        (lambda: loader.execute("toy-shapes", "auto", "yes"), "download_if_missing='yes' must be true or false"),
        (lambda: sampler.execute(**{**good, "num_trajectories": "8"}), "num_trajectories='8' must be a whole number"),
        (lambda: sampler.execute(**{**good, "num_trajectories": 0}), "num_trajectories=0 must be between 1 and 64"),
        (lambda: sampler.execute(**{**good, "cfg_scale": float("nan")}), "cfg_scale=nan must be a finite number"),
        (lambda: sampler.execute(**{**good, "conditioning": "a red circle"}),
         "conditioning='a red circle' must be the output of ScalingAR Text Encode"),
        (lambda: sampler.execute(**good, gate={"quantile": 0.3}),
         "gate=<dict> must be the output of ScalingAR Termination Gate"),
        (lambda: save.execute(_trace(), "scalingar/trace", "xml"), "format='xml' is not one of the choices"),
        (lambda: save.execute({"steps": 3}, "scalingar/trace", "json"), "trace=<dict> must be the trace output"),
        (lambda: gate.execute(**{**vars(GateConfig()), "quantile": 2.0}), "quantile=2.0 must be between 0.01 and 0.99"),
    ]
    for call, expected in cases:
        with pytest.raises(ValueError) as err:
            call()
        assert expected in str(err.value) and "\n" not in str(err.value), (expected, str(err.value))
    assert sampler.execute(**good, gate=gate.execute(**vars(GateConfig()))[0])[0].shape[0] == 1  # valid: runs
