"""Every picture the README shows is as new as what it shows: the JSON beside it records the sha256 of the
workflow, weights and script it was made from, and the picture's own (scripts/readme_pictures.py)."""
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import readme_pictures  # noqa: E402


def readme_pictures_shown() -> list[Path]:
    text = (ROOT / "README.md").read_text()
    return [ROOT / p for p in dict.fromkeys(re.findall(r"\]\((docs/[^)\s]+\.png)\)", text))]


def test_the_readme_shows_pictures_and_each_exists():
    pictures = readme_pictures_shown()
    assert pictures, "the README shows no picture"
    for p in pictures:
        assert p.is_file(), p


@pytest.mark.parametrize("picture", readme_pictures_shown(), ids=lambda p: p.name)
def test_each_readme_picture_is_newer_than_what_it_shows(picture):
    assert readme_pictures.problems(picture) == []


def test_a_changed_source_or_picture_makes_it_stale(tmp_path, monkeypatch):
    monkeypatch.setattr(readme_pictures, "REPO", tmp_path)
    (tmp_path / "workflow.json").write_text("{}")
    picture = tmp_path / "shot.png"
    picture.write_bytes(b"png")
    assert readme_pictures.problems(picture) == ["shot.png has no shot.json saying what it was made from"]
    readme_pictures.stamp(picture, ["workflow.json"], "make it")
    assert readme_pictures.problems(picture) == []
    assert json.loads((tmp_path / "shot.json").read_text())["sources"] == {
        "workflow.json": readme_pictures.sha256(tmp_path / "workflow.json")}
    (tmp_path / "workflow.json").write_text('{"changed": true}')
    assert readme_pictures.problems(picture) == ["shot.png is older than workflow.json: retake it with `make it`"]
    readme_pictures.stamp(picture, ["workflow.json"], "make it")
    picture.write_bytes(b"another png")
    assert readme_pictures.problems(picture) == ["shot.png was changed after shot.json was written"]
