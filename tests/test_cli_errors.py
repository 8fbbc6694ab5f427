"""Command-line errors: every user error is one `error:` line with exit status 2, found before the model
loads; outputs are written atomically (Ctrl-C leaves no truncated PNG) and the trace before the pictures."""
import json

import pytest
import torch
from poisoned import PoisonedModel

from scalingar_core.app import cli
from scalingar_core.models import registry
from scalingar_core.models.protocol import ModelInfo
from scalingar_core.testing.reference_model import ReferenceModel


@pytest.fixture
def loads(monkeypatch):
    """Registers test models; returns the list of model names loaded (to prove errors come before loading)."""
    loaded = []
    registry._populate()
    for name, make in (("test-reference", lambda: ReferenceModel(grid=(8, 8))),
                       ("test-poisoned", lambda: PoisonedModel(victims=range(8), at=4))):
        model = make()
        entry = registry.ModelEntry(info=ModelInfo(name, "test", model.grid, model.vocab_size, model.defaults),
                                    loader=lambda name=name, model=model, **kw: loaded.append(name) or model)
        monkeypatch.setitem(registry._REGISTRY, name, entry)
    return loaded


def generate(*extra):
    return cli.main(["generate", "--model", "test-reference", "--prompt", "x", "--n", "2", *extra])


def bad_arguments(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    deep = tmp_path / "deep.json"
    deep.write_text('{"gate": {"quantile": ' + "[" * 100_000 + "]" * 100_000 + "}}")
    binary = tmp_path / "settings.json"
    binary.write_bytes(b"\xff\xfe\x00{\x00}")
    return {
        "out is a file": (["--out", str(afile)], "--out"),
        "trace is a folder": (["--out", str(tmp_path / "o"), "--trace", str(tmp_path)], "--trace"),
        "out under a file": (["--out", str(afile / "sub")], "is a file, not a folder"),
        "device absent": (["--out", str(tmp_path / "o"), "--device", "cuda" if not torch.cuda.is_available()
                           else "cuda:99"], "--device cuda"),
        "device not a device": (["--out", str(tmp_path / "o"), "--device", "gpu"], "is not a torch device"),
        "config a number": (["--out", str(tmp_path / "o"), "--config", "5"], "inline JSON"),
        "config broken JSON": (["--out", str(tmp_path / "o"), "--config", "{gate"], "not valid JSON"),
        "unknown key": (["--out", str(tmp_path / "o"), "--config", '{"sampling": {"n": 3}}'], "['n']"),
        "string boolean": (["--out", str(tmp_path / "o"), "--config", '{"scheduler": {"enabled": "false"}}'],
                           "enabled='false'"),
        "extreme cfg": (["--out", str(tmp_path / "o"), "--cfg", "1e30"], "cfg_scale=1e+30"),
        "config nested too deeply": (["--out", str(tmp_path / "o"), "--config", str(deep)],
                                     f"file {deep} is nested too deeply"),
        "config a binary file": (["--out", str(tmp_path / "o"), "--config", str(binary)],
                                 f"file {binary} is not UTF-8 text"),
        "flag against config": (["--out", str(tmp_path / "o"), "--seed", "1", "--config", '{"sampling": {"seed": 7}}'],
                                "--seed 1 conflicts with --config sampling.seed=7"),
    }


@pytest.mark.parametrize("case", ["out is a file", "trace is a folder", "out under a file", "device absent",
                                  "device not a device", "config a number", "config broken JSON", "unknown key",
                                  "string boolean", "extreme cfg", "config nested too deeply",
                                  "config a binary file", "flag against config"])
def test_user_errors_are_one_line_exit_2_before_the_model_loads(case, loads, tmp_path, capsys):
    args, expected = bad_arguments(tmp_path)[case]
    assert generate(*args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert loads == []  # nothing was loaded


def test_config_also_takes_a_json_file(loads, tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"gate": {"recovery_window": 5}}))
    assert generate("--out", str(tmp_path / "o"), "--config", str(path)) == 0
    assert json.loads((tmp_path / "o" / "trace.json").read_text())["config"]["gate"]["recovery_window"] == 5


def test_config_settings_apply_where_no_flag_is_given_and_may_agree_with_one(loads, tmp_path):
    def used(*args):
        assert generate("--out", str(tmp_path), *args) == 0
        return json.loads((tmp_path / "trace.json").read_text())["config"]["sampling"]

    assert used("--config", '{"sampling": {"seed": 7}}')["seed"] == 7
    assert used("--seed", "7", "--config", '{"sampling": {"seed": 7}}')["seed"] == 7
    assert used()["seed"] == 0 and used()["num_trajectories"] == 2  # the test helper passes --n 2


def test_a_failure_drawing_the_pictures_keeps_the_previous_set_whole(loads, tmp_path, monkeypatch):
    """The outputs are a set: a failure after some files were made (here the trace plot) keeps none of them."""
    import scalingar_core.app.plot as plot

    assert generate("--out", str(tmp_path), "--seed", "1") == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken(*a, **k):
        raise RuntimeError("plot failed")
    monkeypatch.setattr(plot, "plot_trace", broken)
    with pytest.raises(RuntimeError, match="plot failed"):
        generate("--out", str(tmp_path), "--seed", "2")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no staged file, no lock left


def test_ctrl_c_while_writing_a_png_leaves_no_truncated_file(loads, tmp_path, monkeypatch, capsys):
    from PIL import Image

    (tmp_path / "image.png").write_bytes(b"previous image")
    real_save = Image.Image.save

    def interrupted(self, fp, format=None, **params):
        real_save(self, fp, format=format or "PNG", **params)
        with open(fp, "r+b") as f:  # half written when the interrupt arrives
            f.truncate(20)
        raise KeyboardInterrupt
    monkeypatch.setattr(Image.Image, "save", interrupted)
    try:
        status = generate("--out", str(tmp_path))
    except KeyboardInterrupt:  # caught here so it cannot end the whole test session
        status = "KeyboardInterrupt escaped"
    assert status == 130
    assert "interrupted" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.png"]  # no partial or temporary file
    assert (tmp_path / "image.png").read_bytes() == b"previous image"


def test_every_trajectory_nonfinite_is_one_line_and_exit_1(loads, tmp_path, capsys):
    assert cli.main(["generate", "--model", "test-poisoned", "--prompt", "x", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: every remaining trajectory (8 of 8) produced NaN") and "step 4" in err
    assert not (tmp_path / "image.png").exists()


def test_empty_models_dir_variable_falls_back_to_the_default_folder(monkeypatch):
    monkeypatch.setenv("SCALINGAR_MODELS_DIR", "")
    args = cli.build_parser().parse_args(["generate", "--prompt", "x"])
    assert args.models_dir.is_absolute() and args.models_dir.parts[-3:] == (".cache", "scalingar", "models")


def test_download_of_the_bundled_model_says_so(capsys):
    assert cli.main(["download", "--model", "toy-shapes"]) == 0
    out = capsys.readouterr().out
    assert "bundled" in out and "toy-shapes.safetensors" in out
