"""The command line end to end: generate writes images, a plot and a trace that validates against the schema."""
import json
from pathlib import Path

import jsonschema
import pytest

from scalingar_core.app import cli
from scalingar_core.models import registry
from scalingar_core.models.protocol import ModelInfo
from scalingar_core.testing.reference_model import ReferenceModel

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "scalingar_core" / "engine" / "trace_schema.json").read_text())


@pytest.fixture
def reference_registered(monkeypatch):
    m = ReferenceModel(grid=(8, 8))
    entry = registry.ModelEntry(info=ModelInfo("test-reference", "test", m.grid, m.vocab_size, m.defaults),
                                loader=lambda **kw: m)
    registry._populate()
    monkeypatch.setitem(registry._REGISTRY, "test-reference", entry)
    return m


def test_generate_writes_outputs_and_schema_valid_trace(reference_registered, tmp_path):
    out = tmp_path / "out"
    rc = cli.main(["generate", "--model", "test-reference", "--prompt", "x", "--n", "4", "--seed", "1",
                   "--out", str(out), "--all", "--config", '{"gate": {"recovery_window": 4}}'])
    assert rc == 0
    for name in ("image.png", "candidates.png", "trace_plot.png", "entropy.png", "trace.json"):
        assert (out / name).stat().st_size > 0
    trace = json.loads((out / "trace.json").read_text())
    jsonschema.validate(trace, SCHEMA)
    assert trace["num_trajectories"] == 4 and trace["seed"] == 1 and trace["config"]["gate"]["recovery_window"] == 4
    survivors = [t["index"] for t in trace["trajectories"] if t["removed_at"] is None]
    assert sorted(p.name for p in out.glob("candidate_*.png")) == sorted(f"candidate_{i}.png" for i in survivors)


def test_schema_rejects_a_broken_trace(reference_registered, tmp_path):
    cli.main(["generate", "--model", "test-reference", "--prompt", "x", "--n", "2", "--out", str(tmp_path)])
    trace = json.loads((tmp_path / "trace.json").read_text())
    del trace["trajectories"][0]["state"]["R"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(trace, SCHEMA)


def test_bad_settings_and_unknown_model_give_clear_errors(reference_registered, tmp_path, capsys):
    assert cli.main(["generate", "--model", "test-reference", "--prompt", "x", "--n", "0", "--out", str(tmp_path)]) == 2
    assert "num_trajectories=0" in capsys.readouterr().err
    assert cli.main(["generate", "--model", "../../etc/passwd", "--prompt", "x", "--out", str(tmp_path)]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert cli.main(["generate", "--model", "test-reference", "--prompt", "x", "--out", str(tmp_path),
                     "--config", '{"gate": {"quantile": 2}}']) == 2
    assert "quantile=2" in capsys.readouterr().err
    assert cli.main(["generate", "--model", "test-reference", "--prompt", "x", "--out", str(tmp_path),
                     "--config", '{"gates": {"quantile": 0.9}}']) == 2
    assert "unknown section(s) ['gates']" in capsys.readouterr().err
