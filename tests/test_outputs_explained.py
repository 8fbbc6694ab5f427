"""Outputs that explain themselves: the checker's verdicts (printed and in trace.json) and candidates.png's
numbered panels with the chosen one framed green."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from scalingar_core.app import candidates as cand
from scalingar_core.app import cli
from scalingar_core.app.verdict import verdict_lines
from scalingar_core.engine.images import REMOVED_RGB, mark_removed
from scalingar_core.engine.trace import Trace, TrajectoryRecord
from scalingar_core.models.toy import prompts, render
from scalingar_core.models.toy.checker import check


def spec(caption):
    return prompts.parse(caption)


def test_verdicts_name_the_failure_in_a_few_words():
    want = spec("a yellow circle and a blue square")
    _, good = render.render_spec(want, seed=0)
    assert check(good, want).verdict() == "passes"
    _, swapped = render.render_spec(spec("a yellow circle and a yellow square"), seed=0)
    assert check(swapped, want).verdict() == "wrong object: yellow square for blue square"
    _, alone = render.render_spec(spec("a yellow circle"), seed=0)
    assert check(alone, want).verdict() == "missing object: blue square"
    _, three = render.render_spec(spec("two red circles"), seed=1)
    assert check(three, spec("a red circle")).verdict() == "extra object: red circle"


def test_verdict_lines_put_the_chosen_image_first():
    report = {"chosen": 2, "candidates": [
        {"index": 0, "checked": False, "removed_at": 97, "removed_reason": "basin"},
        {"index": 1, "checked": True, "passed": False, "verdict": "wrong object: yellow square for blue square"},
        {"index": 2, "checked": True, "passed": True, "verdict": "passes"}]}
    assert verdict_lines(report, 256) == ["checker: chosen #2: passes",
                                          "  #0: removed at step 98/256 (basin), not checked",
                                          "  #1: wrong object: yellow square for blue square"]


def small_trace(selected=2, removed=(0,)):
    records = [TrajectoryRecord(index=i, removed_at=10 if i in removed else None,
                                removed_reason="basin" if i in removed else None, selected=i == selected)
               for i in range(4)]
    return Trace(config={}, grid=(4, 4), vocab_size=8, num_trajectories=4, seed=0, steps=16, strategy="scalingar",
                 tokens_generated=0, threshold=[], trajectories=records)


def test_candidate_panels_frame_only_the_chosen_one_in_green():
    trace = small_trace()
    images = torch.full((4, 3, 16, 16), 1.0)  # white, so any frame shows
    images[0] = mark_removed(images[0])
    panels = cand.candidate_panels(images, trace, {2: "passes", 3: "wrong object"}, min_side=96)
    assert panels.shape[0] == 4
    h = panels.shape[-2]
    top = h - 96  # the caption rows sit above the 96-pixel image
    green, red = np.array(cand.CHOSEN_RGB), np.array(REMOVED_RGB)

    def corner(panel):
        return panel[:, top + 1, 1].numpy()

    assert np.allclose(corner(panels[2]), green, atol=1 / 255)
    assert np.allclose(corner(panels[0]), red, atol=1 / 255)  # the sampler's red frame stays
    for i in (1, 3):
        assert np.allclose(corner(panels[i]), 1.0, atol=1 / 255)  # no frame
    # the caption: the chosen number in green, a removed one in red, the rest in the text colour
    captions = panels[:, :, :top].permute(0, 2, 3, 1).numpy()

    def share(i, rgb):
        return (np.abs(captions[i] - np.asarray(rgb)).max(-1) < 0.1).sum()

    assert share(2, green) > 20 and share(2, red) == 0
    assert share(0, red) > 20 and share(0, green) == 0
    assert share(1, green) == share(1, red) == 0
    assert cand.caption({"index": 2, "selected": True, "removed_at": None}, 16, "passes") == (
        ["#2 chosen", "passes"], cand.rgb255(cand.CHOSEN_RGB))
    assert cand.caption({"index": 0, "selected": False, "removed_at": 10, "removed_reason": "hard_fail"}, 16,
                        None)[0] == ["#0 removed at 11/16", "hard fail"]


@pytest.mark.slow
def test_generate_prints_the_checkers_verdict_and_records_it(tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main(["generate", "--model", "toy-shapes", "--prompt", "two red circles", "--n", "4", "--seed", "3",
                   "--out", str(out), "--all"])
    assert rc == 0
    printed = capsys.readouterr().out
    trace = json.loads((out / "trace.json").read_text())
    report = trace["checker"]
    selected = next(t["index"] for t in trace["trajectories"] if t["selected"])
    assert report["chosen"] == selected and report["spec"] == spec("two red circles")
    chosen = next(c for c in report["candidates"] if c["index"] == selected)
    assert f"checker: chosen #{selected}: {chosen['verdict']}" in printed
    # every checked verdict is the checker's own on the written image
    for c in report["candidates"]:
        if c["checked"]:
            image = np.asarray(Image.open(out / f"candidate_{c['index']}.png").convert("RGB"))
            assert check(image, report["spec"]).passed == c["passed"], c
            assert f"#{c['index']}: {c['verdict']}" in printed
        else:
            assert trace["trajectories"][c["index"]]["removed_at"] == c["removed_at"]
    assert report["chosen_passes"] == check(np.asarray(Image.open(out / "image.png").convert("RGB")),
                                            report["spec"]).passed


def test_no_verdict_when_the_model_has_no_checker(tmp_path, capsys, monkeypatch):
    from scalingar_core.models import registry
    from scalingar_core.models.protocol import ModelInfo
    from scalingar_core.testing.reference_model import ReferenceModel

    m = ReferenceModel(grid=(8, 8))
    registry._populate()
    monkeypatch.setitem(registry._REGISTRY, "test-reference", registry.ModelEntry(
        info=ModelInfo("test-reference", "test", m.grid, m.vocab_size, m.defaults), loader=lambda **kw: m))
    assert cli.main(["generate", "--model", "test-reference", "--prompt", "x", "--n", "2", "--out", str(tmp_path)]) == 0
    assert "checker" not in capsys.readouterr().out
    assert "checker" not in json.loads((tmp_path / "trace.json").read_text())
