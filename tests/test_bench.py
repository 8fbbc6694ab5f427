"""The benchmark CLI on a 2-prompt run: results.json schema, markdown, trade-off plot, method parsing."""
import json

import numpy as np
import pytest

from scalingar_core.app import bench


def test_two_prompt_run_writes_the_documented_schema(tmp_path):
    rc = bench.main(["--model", "toy-shapes", "--prompts", "builtin", "--per-category", "1", "--limit", "2", "--seeds", "1", "--n", "4",
                     "--workers", "1", "--methods", "plain,best_of_n,scalingar,termination-only", "--out", str(tmp_path)])
    assert rc == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert set(res) >= {"methods", "oracle_best_of_n", "random_pick"}
    assert set(res["methods"]) == {"plain", "best_of_n", "scalingar", "termination-only"}
    for name, m in res["methods"].items():
        assert set(m) >= {"accuracy", "tokens_per_image", "wall_s", "images", "auroc_within_prompt"}
        assert set(m["accuracy"]) == {"overall", "per_category"}
        assert 0 <= m["accuracy"]["overall"] <= 1
        assert set(m["accuracy"]["per_category"]) == {"single_object", "counting"}  # one builtin entry each
        assert set(m["auroc_within_prompt"]) == {"0.25", "0.5", "0.75"}
        assert m["images"] == 2
    assert res["methods"]["plain"]["tokens_per_image"] == 64
    assert res["methods"]["best_of_n"]["tokens_per_image"] == 4 * 64
    assert res["methods"]["scalingar"]["tokens_per_image"] <= 4 * 64
    assert 0 <= res["random_pick"] <= res["oracle_best_of_n"] <= 1
    assert "| scalingar |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "tradeoff.png").stat().st_size > 0
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert len(records) == 2 * 4 and all(r["passed"] in (True, False) for r in records)


def test_method_names_and_overrides():
    cfg = bench.method_config("scalingar-no-conditional", 8, 3)
    assert (cfg.strategy, cfg.profile.w_i, cfg.profile.w_d, cfg.sampling.seed) == ("scalingar", 1.0, 0.0, 3)
    cfg = bench.method_config("termination-only@gate.recovery_window=8;gate.recovery_reference=flag", 8, 0)
    assert not cfg.scheduler.enabled and cfg.gate.recovery_window == 8 and cfg.gate.recovery_reference == "flag"
    with pytest.raises(ValueError, match="unknown method"):
        bench.method_config("beam-search", 8, 0)
    with pytest.raises(ValueError, match="quantile"):
        bench.method_config("scalingar@gate.quantile=3", 8, 0)


def test_auroc():
    assert bench.auroc([0.9, 0.8, 0.1], [True, True, False]) == 1.0
    assert bench.auroc([0.1, 0.9], [True, False]) == 0.0
    assert bench.auroc([0.5, 0.5], [True, False]) == 0.5
    assert bench.auroc([0.5, 0.6], [True, True]) is None


def test_failure_kinds_follow_the_checker_and_reach_the_markdown(tmp_path):
    """Scenes rendered from one spec and checked against another fail for the reason the bench names."""
    from scalingar_core.models.toy.checker import check
    from scalingar_core.models.toy.render import render_spec

    def obj(color, shape):
        return {"color": color, "shape": shape}

    red, blue = obj("red", "circle"), obj("blue", "square")
    left = {"objects": [red, blue], "relation": {"type": "left_of", "subject": 0, "reference": 1}}
    right = {"objects": [red, blue], "relation": {"type": "right_of", "subject": 0, "reference": 1}}
    _, drawn_left = render_spec(left, 0)
    cases = [({"objects": [red]}, {"objects": [red]}, None),
             ({"objects": [red]}, {"objects": [blue]}, "wrong object"),
             ({"objects": [red]}, {"objects": [red, red]}, "missing object"),
             ({"objects": [red, red]}, {"objects": [red]}, "extra object"),
             (left, right, "wrong relation")]
    records = []
    for drawn, wanted, kind in cases:
        image = drawn_left if drawn is left else render_spec(drawn, 0)[1]
        reason = check(image, wanted).reason
        assert bench.failure_kind(reason) == kind, reason
        records.append({"method": "m", "category": "c", "passed": kind is None, "reason": reason, "tokens": 1,
                        "wall_s": 0.0, "final_ok": [kind is None], "c_at": {}, "signals": {"C": [0.5]}})
    assert bench.failure_kind("malformed red shape at (0, 0) (box 3×3, 5 px): not a circle") == "malformed shape"
    summary = bench.summarise(records)
    assert summary["methods"]["m"]["failures"] == {"malformed shape": 0, "wrong object": 0.2, "missing object": 0.2,
                                                   "extra object": 0.2, "wrong relation": 0.2}
    bench.write_markdown(summary, {"model": "toy", "prompts": 5, "seeds": 1, "n": 1, "command": "x"},
                         tmp_path / "r.md")
    text = (tmp_path / "r.md").read_text()
    assert "| m | 0.0 | 20.0 | 20.0 | 20.0 | 20.0 |" in text and "| method | C |" in text


def test_accuracy_if_selected_by_a_signal_picks_the_highest_survivor():
    def record(values, oks):
        return {"method": "m", "category": "c", "passed": oks[0] is True, "reason": None, "tokens": 1, "wall_s": 0.0,
                "final_ok": oks, "c_at": {}, "signals": {"s": values}}

    records = [record([0.1, 0.9, 0.5], [False, True, False]),  # the highest passes
               record([0.8, None, 0.2], [False, None, True]),  # a removed candidate (None) is never chosen
               record([0.3, 0.3], [True, False])]  # ties: the first
    assert bench.selection_accuracy(records, "s") == pytest.approx(2 / 3)
    assert bench.selection_accuracy(records, "absent") is None
    assert bench.summarise(records)["methods"]["m"]["accuracy_if_selected_by"] == {"s": pytest.approx(2 / 3)}


def test_paired_difference_against_best_of_n():
    def record(method, pid, seed, passed):
        return {"id": pid, "seed": seed, "method": method, "passed": passed}

    a = [record("x", "p", 0, True), record("x", "p", 1, True), record("x", "q", 0, False), record("x", "r", 0, True)]
    b = [record("b", "p", 0, False), record("b", "p", 1, True), record("b", "q", 0, False)]  # no ("r", 0)
    d = bench.paired_difference(a, b)
    assert d["pairs"] == 3 and d["diff"] == pytest.approx(1 / 3)
    assert d["se"] == pytest.approx(float(np.std([1, 0, 0], ddof=1)) / np.sqrt(3))
    assert bench.paired_difference(a[:1], b) is None
