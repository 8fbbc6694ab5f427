"""Each subcommand's --help lists only its own options, and the values they accept."""
import pytest

from scalingar_core.app import bench, cli
from scalingar_core.engine.config import STRATEGIES
from scalingar_core.models import registry


@pytest.fixture(autouse=True)
def wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "2000")  # no wrapping: argparse breaks names at hyphens


def help_of(argv, capsys) -> str:
    with pytest.raises(SystemExit) as done:
        cli.main([*argv, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_download_offers_only_what_it_uses(capsys):
    text = help_of(["download"], capsys)
    for option in ("--device", "--dtype", "--download", "--compile"):
        assert option not in text
    assert "--model" in text and "--models-dir" in text


def test_generate_lists_models_and_strategies_and_compile_advice(capsys):
    text = help_of(["generate"], capsys)
    for name in registry.names():
        assert name in text
    for strategy in STRATEGIES:
        assert strategy in text
    assert "only on a GPU" in text and "--device" in text and "--download" in text


def test_bench_lists_every_method_name(capsys):
    text = help_of(["bench"], capsys)
    for name in (*STRATEGIES, *bench.ABLATIONS):
        assert name in text
    assert "only on a GPU" in text
