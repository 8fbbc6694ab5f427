"""Evidence a skeptic accepts: the held-out split, Best-of-k from the Best-of-N candidates, the matched
comparison, what each signal picks, and the bench's records and tables for them."""
import json

import pytest

from scalingar_core.app import bench, evidence, frontier, signals
from scalingar_core.engine.config import RunConfig
from scalingar_core.engine.loop import generate
from scalingar_core.models.toy import prompts
from scalingar_core.testing.reference_model import ReferenceModel

# ---------------------------------------------------------------- the held-out split

def test_heldout_split_is_disjoint_where_it_can_be_and_leans_on_held_out_pairs():
    held = prompts.heldout_eval()
    assert len(held) == 250 and held == prompts.heldout_eval()  # fixed
    used = prompts.builtin_captions()
    for cat in ("two_object", "position"):
        assert not {e["prompt"] for e in held if e["category"] == cat} & used[cat]
    for cat in prompts.MULTI_OBJECT:
        entries = [e for e in held if e["category"] == cat]
        hard = sum(prompts.is_held_out(e["spec"]) for e in entries)
        assert hard == prompts.HELDOUT_HARD[cat] and hard / len(entries) >= 0.5  # builtin: a fifth
    for e in held:
        assert prompts.parse(e["prompt"]) == e["spec"] and prompts.category_of(e["spec"]) == e["category"]
    overlap = prompts.builtin_overlap(held)
    assert set(overlap) == {"single_object", "counting", "color_attr"}  # only where builtin has every caption


def test_split_seeds_never_meet():
    base = evidence.split_seed_base("heldout")
    builtin = {s * 1_000_003 + i for s in range(10) for i in range(500)}
    assert evidence.split_seed_base("builtin") == 0 and evidence.split_seed_base("my_prompts.jsonl") == 0
    assert not builtin & {base + s * 1_000_003 + i for s in range(10) for i in range(250)}


def test_a_prompt_file_overlapping_builtin_is_flagged():
    entries = prompts.builtin_eval(60)[:3]
    meta = evidence.split_meta("mine.jsonl", entries, 0)
    assert meta["split"] == "file" and sum(meta["builtin_overlap"].values()) == 3
    assert "FLAG: 3 prompts" in "".join(evidence._overlap_line(meta))
    fresh = [{"prompt": "a red circle above a yellow square", "category": "position"}]
    fresh = [e for e in fresh if e["prompt"] not in prompts.builtin_captions()["position"]]
    if fresh:
        assert "No prompt" in "".join(evidence._overlap_line(evidence.split_meta("x.jsonl", fresh, 0)))


# ---------------------------------------------------------------- Best-of-k and the frontier

def rec(pid, seed, scores, ok, passed=None, tokens=None, steps=10):
    return {"id": pid, "seed": seed, "scores": scores, "final_ok": ok, "steps": steps,
            "passed": passed, "tokens": tokens if tokens is not None else len(ok) * steps}


def test_best_of_k_picks_the_highest_score_among_the_first_k():
    r = rec("p", 0, [0.1, 0.5, float("nan"), 0.9], [False, True, True, False])
    assert [frontier.best_of_k_pass(r, k) for k in (1, 2, 3, 4)] == [0.0, 1.0, 1.0, 0.0]  # NaN never wins
    with pytest.raises(ValueError, match="k = 5.*N = 4"):
        frontier.best_of_k_pass(r, 5)
    with pytest.raises(ValueError, match="k = 0"):
        frontier.check_k([0], 4)


def test_interpolation_and_matched_difference():
    r = rec("p", 0, [0.9, 0.1, 0.5, 0.2], [False, True, True, True])  # Best-of-k: 0 for every k
    r2 = rec("q", 0, [0.1, 0.9, 0.5, 0.2], [False, True, False, False])  # 0, then 1 from k = 2
    assert frontier.interpolated_pass(r2, 15) == pytest.approx(0.5)  # halfway between k = 1 and 2
    assert frontier.interpolated_pass(r2, 5) == 0.0 and frontier.interpolated_pass(r2, 99) == 1.0  # clipped to 1..N
    same_as_bo2 = [dict(rec("p", 0, [], [], passed=False, tokens=20)), dict(rec("q", 0, [], [], passed=True, tokens=20))]
    m = frontier.matched(same_as_bo2, [r, r2])
    assert m["k_equivalent"] == 2 and m["difference"]["mean"] == 0.0 and m["best_of_k"]["mean"] == 0.5
    better = [dict(x, passed=True) for x in same_as_bo2]
    assert frontier.matched(better, [r, r2])["difference"]["mean"] == 0.5


def test_clustered_se_uses_per_prompt_means():
    values = {("a", 0): 1.0, ("a", 1): 1.0, ("b", 0): 0.0, ("b", 1): 0.0}
    c = signals.clustered(values)
    assert c["mean"] == 0.5 and c["prompts"] == 2 and c["se"] == pytest.approx(0.5)  # std([1, 0]) / √2
    assert signals.clustered({("a", 0): 1.0})["se"] is None and signals.clustered({}) is None


# ---------------------------------------------------------------- signals

def test_best_of_n_score_recomputed_from_the_trace_equals_the_samplers():
    model = ReferenceModel(grid=(8, 8))
    result = generate(model, model.encode("a"), RunConfig(strategy="best_of_n"))
    ev = evidence.record_evidence("best_of_n", result)
    assert ev["scores"] == pytest.approx(result.scores, abs=1e-5)
    at = ev["signal_at"]
    assert set(at) == {"0.25", "0.5", "0.75", "1.0"} and set(at["1.0"]) == set(signals.signal_names())
    assert at["1.0"]["bon_score"] == pytest.approx(result.scores, abs=1e-5)
    for i, r in enumerate(result.trace.trajectories):
        logp = r.signals["token_logprob"]
        assert at["1.0"]["logprob_mean"][i] == pytest.approx(sum(logp) / 64)
        assert at["1.0"]["logprob_min"][i] == pytest.approx(min(logp))
        assert at["0.25"]["logprob_min"][i] == pytest.approx(min(logp[:16]))
        assert at["1.0"]["logprob_low10"][i] == pytest.approx(sum(sorted(logp)[:7]) / 7)  # ⌈6.4⌉ lowest
        assert at["0.5"]["C"][i] == pytest.approx(r.state["C"][31])
    assert "signal_at" not in evidence.record_evidence("random_prune", result)


def test_signal_report_top1_random_and_oracle():
    def r(pid, ok, c, lp):
        return {"id": pid, "seed": 0, "final_ok": ok,
                "signal_at": {f: {"C": c, "logprob_mean": lp} for f in ("0.25", "0.5", "0.75", "1.0")}}
    records = [r("a", [True, False], [0.1, 0.9], [0.9, 0.1]), r("b", [False, True], [0.9, 0.1], [0.1, 0.9]),
               r("c", [False, False], [0.5, 0.4], [0.4, 0.5])]
    rep = signals.signal_report(records)
    assert rep["oracle"]["mean"] == pytest.approx(2 / 3) and rep["random_pick"]["mean"] == pytest.approx(1 / 3)
    assert rep["signals"]["C"]["top1"]["1.0"]["mean"] == 0.0
    assert rep["signals"]["logprob_mean"]["top1"]["1.0"]["mean"] == pytest.approx(2 / 3)
    assert rep["signals"]["logprob_mean"]["auroc"]["1.0"] == 1.0 and rep["signals"]["C"]["auroc"]["1.0"] == 0.0
    assert rep["signals"]["logprob_mean"]["top1_vs_C"]["mean"] == pytest.approx(2 / 3)
    assert rep["signals"]["bon_score"]["top1"]["1.0"] is None  # not recorded here
    assert signals.winner(rep) == "logprob_mean"
    assert signals.confirmed({"top1_vs_C": {"mean": 0.05, "se": 0.02}})
    assert not signals.confirmed({"top1_vs_C": {"mean": 0.05, "se": 0.03}})


# ---------------------------------------------------------------- the bench end to end

def test_bench_writes_frontier_signals_split_and_verdict(tmp_path):
    methods = "plain,best_of_n,scalingar,random_prune"
    for split, first, part, out in (("builtin", 0, "0/1", "builtin"), ("heldout", 0, "0/1", "heldout"),
                                    ("heldout", 1, "1/2", "heldout_s1")):
        assert bench.main(["--model", "toy-shapes", "--prompts", split, "--per-category", "1", "--limit", "2",
                           "--seeds", "1", "--first-seed", str(first), "--part", part, "--n", "4", "--workers", "1",
                           "--methods", methods, "--out", str(tmp_path / out)]) == 0
    res = json.loads((tmp_path / "heldout" / "results.json").read_text())
    assert res["meta"]["split"] == "heldout" and res["meta"]["seed_base"] == prompts.SEED_BASE["heldout"]
    records = [json.loads(x) for x in (tmp_path / "heldout" / "records.jsonl").read_text().splitlines()]
    assert {r["seed"] for r in records} == {prompts.SEED_BASE["heldout"], prompts.SEED_BASE["heldout"] + 1}
    assert res["meta"]["seed_indices"] == [0]
    curve = res["frontier"]["best_of_k"]
    assert [p["tokens"] for p in curve] == [64, 128, 192, 256]
    bon = [r for r in records if r["method"] == "best_of_n"]
    assert curve[-1]["mean"] == pytest.approx(sum(r["passed"] for r in bon) / len(bon))  # Best-of-N itself
    assert set(res["frontier"]["matched"]) == {"scalingar", "random_prune"}
    text = (tmp_path / "heldout" / "results.md").read_text()
    assert "Held-out split" in text and "Compute-matched frontier" in text and "| lgc_k5_w32 |" in text
    for name in ("frontier.png", "auroc_vs_step.png"):
        assert (tmp_path / "heldout" / name).stat().st_size > 0
    assert evidence.main(["--builtin", str(tmp_path / "builtin"), "--heldout", str(tmp_path / "heldout"),
                          str(tmp_path / "heldout_s1"), "--builtin-out", str(tmp_path / "b"), "--heldout-out",
                          str(tmp_path / "h"), "--out", str(tmp_path / "verdict.md")]) == 0
    merged = json.loads((tmp_path / "h" / "results.json").read_text())
    assert merged["meta"]["seed_indices"] == [0, 1] and merged["meta"]["seeds"] == 2
    assert merged["methods"]["best_of_n"]["images"] == 3  # 2 prompts with seed 0, the second one with seed 1
    part = [json.loads(x) for x in (tmp_path / "heldout_s1" / "records.jsonl").read_text().splitlines()]
    assert {r["seed"] for r in part} == {prompts.SEED_BASE["heldout"] + 1_000_003 + 1}  # the full run's seed
    with pytest.raises(ValueError, match="repeat"):
        evidence.resummarise([tmp_path / "heldout", tmp_path / "heldout"], tmp_path / "h2")
    extra = tmp_path / "extra"
    assert bench.main(["--model", "toy-shapes", "--prompts", "heldout", "--limit", "2", "--seeds", "1", "--n", "4",
                       "--workers", "1", "--methods", "scalingar@gate.quantile=0.3", "--out", str(extra)]) == 0
    merged = evidence.resummarise([tmp_path / "heldout", tmp_path / "heldout_s1", extra], tmp_path / "h3")
    matched = merged["frontier"]["matched"]["scalingar@gate.quantile=0.3"]
    assert matched["difference"]["pairs"] == 2 and matched["best_of_k"] is not None  # Best-of-N of the other run
    with pytest.raises(ValueError, match="split"):
        evidence.resummarise([tmp_path / "heldout", tmp_path / "builtin"], tmp_path / "h2")
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    assert verdict["signal"] in signals.signal_names() and verdict["setting"] == "scalingar"
    with pytest.raises(SystemExit, match="not a builtin run"):
        evidence.main(["--builtin", str(tmp_path / "heldout"), "--heldout", str(tmp_path / "heldout"),
                       "--builtin-out", str(tmp_path / "b"), "--heldout-out", str(tmp_path / "h"),
                       "--out", str(tmp_path / "v2.md")])


def test_asking_for_k_above_n_is_one_clear_error(tmp_path, capsys):
    rc = bench.main(["--model", "toy-shapes", "--prompts", "builtin", "--limit", "1", "--seeds", "1", "--n", "4",
                     "--workers", "1", "--methods", "best_of_n", "--best-of-k", "2,9", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc != 0 and "k = 9" in err and "N = 4" in err and not (tmp_path / "results.json").exists()
    rc = bench.main(["--model", "toy-shapes", "--prompts", "builtin", "--limit", "1", "--seeds", "1", "--n", "4",
                     "--workers", "1", "--methods", "scalingar", "--best-of-k", "2", "--out", str(tmp_path)])
    assert rc != 0 and "needs the best_of_n method" in capsys.readouterr().err


def test_verdict_says_when_nothing_beat_best_of_k_and_when_the_nominee_was_not_run():
    def c(mean, se=0.01):
        return {"mean": mean, "se": se, "pairs": 100}
    row = {"top1": {"1.0": c(0.5)}, "top1_vs_C": c(0.02), "top1_vs_random": c(0.05)}
    v = {"signal": "gap_min", "signal_builtin": row, "signal_heldout": row, "signal_confirmed": True,
         "setting": "scalingar@gate.recovery_window=16",
         "setting_builtin": {"accuracy": c(0.4), "tokens": 700.0, "best_of_k": c(0.4), "difference": c(0.0)},
         "setting_heldout": None, "defaults_heldout": None}
    text = "\n".join(evidence.verdict_markdown(v, "b", "h"))
    assert "No ScalingAR setting beat Best-of-k" in text and "was not run on held-out" in text
    assert "Confirmed" in text and "**gap_min**" in text
