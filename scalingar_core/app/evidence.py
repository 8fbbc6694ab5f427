"""The bench's evidence sections: which split and seeds it ran, the compute-matched frontier against
Best-of-k (``frontier.py``) and what each signal picks (``signals.py``), as records, summary, markdown
and plots."""
from __future__ import annotations

from pathlib import Path

from .. import files
from . import frontier, signals

FRONTIER_PLOT, AUROC_PLOT = "frontier.png", "auroc_vs_step.png"


# ---------------------------------------------------------------- split and seeds

def part_of(text: str) -> tuple[int, int]:
    """``J/K`` (prompt indices J mod K) as a pair, or a clear error."""
    import argparse

    j, slash, k = text.partition("/")
    if not (slash and j.strip().isdigit() and k.strip().isdigit() and int(j) < int(k)):
        raise argparse.ArgumentTypeError(f"{text!r}: write J/K with 0 <= J < K, e.g. 0/5 (prompts 0, 5, 10, ...)")
    return int(j), int(k)


def split_seed_base(source: str) -> int:
    """What the bench adds to every sampling seed of a prompt source (0 for a prompt file)."""
    from ..models.toy.prompts import SEED_BASE

    return SEED_BASE.get(source, 0)


def split_meta(source: str, entries: list[dict], seed_base: int, seed_indices=range(1)) -> dict:
    """The split, the seeds and, for anything but the builtin split, its caption overlap with it."""
    from ..models.toy.prompts import SPLITS, builtin_overlap

    seed_indices = list(seed_indices)
    meta = {"split": source if source in SPLITS else "file", "seed_base": seed_base, "seed_indices": seed_indices,
            "seed_rule": f"{seed_base} + seed_index × 1000003 + prompt_index, seed_index in {seed_indices}"}
    if source != "builtin":
        meta["builtin_overlap"] = builtin_overlap(entries)
    return meta


def _overlap_line(meta: dict) -> list[str]:
    overlap = meta.get("builtin_overlap")
    if meta.get("split") == "builtin":
        return [(f"Split: builtin (the development split: settings and signals are ranked here). Sampling seeds: "
                 f"{meta['seed_rule']}."), ""]
    if overlap is None:
        return []
    if meta["split"] == "heldout":
        return [f"Held-out split: sampling seeds disjoint from the builtin split ({meta['seed_rule']}); "
                f"captions shared with it only where it already holds every caption: "
                + ", ".join(f"{c} {n}" for c, n in overlap.items()) + ". Settings and signals are ranked on "
                "the builtin split only.", ""]
    if overlap:
        return [f"**FLAG: {sum(overlap.values())} prompts of this file share a caption with the builtin split "
                f"(the development set: " + ", ".join(f"{c} {n}" for c, n in overlap.items())
                + "); their figures are not held-out evidence.**", ""]
    return ["No prompt of this file shares a caption with the builtin split.", ""]


# ---------------------------------------------------------------- per record (in the worker)

def record_evidence(method: str, result) -> dict:
    """What the frontier and the signal report need from one run: the steps, every candidate's final score
    (Best-of-k re-picks among them) and, for ``signals.SIGNAL_METHODS``, every signal at each fraction."""
    trace = result.trace
    out = {"steps": trace.steps, "scores": list(result.scores)}
    if method in signals.SIGNAL_METHODS:
        profile = trace.config["profile"]
        out["signal_at"] = signals.record_signals(trace, profile["alpha_h"], profile["alpha_m"])
    return out


# ---------------------------------------------------------------- summary, markdown, plots

def check_best_of_k(ks: list[int] | None, n: int, methods: list[str]) -> None:
    if ks is None:
        return
    if frontier.REFERENCE not in methods:
        raise ValueError(f"--best-of-k needs the {frontier.REFERENCE} method (its candidates give every "
                         f"Best-of-k): add it to --methods")
    frontier.check_k(ks, n)


def evidence_of(records: list[dict], ks: list[int] | None = None) -> dict:
    by_method: dict[str, list[dict]] = {}
    for r in records:
        by_method.setdefault(r["method"], []).append(r)
    front = frontier.frontier(by_method)
    if front is not None and ks is not None:
        front["listed_k"] = sorted(set(ks))
    return {"frontier": front,
            "signal_report": {m: signals.signal_report(by_method[m]) for m in signals.SIGNAL_METHODS if m in by_method}}


def evidence_markdown(summary: dict) -> list[str]:
    front = summary.get("frontier")
    if front is not None and front.get("listed_k"):
        front = {**front, "best_of_k": [p for p in front["best_of_k"] if p["k"] in front["listed_k"]]}
    return (_overlap_line(summary.get("meta", {})) + frontier.markdown(front)
            + signals.markdown(summary.get("signal_report") or {}))


def _title(summary: dict, what: str) -> str:
    meta = summary.get("meta", {})
    return (f"{meta.get('model', '')}, {meta.get('split', '')} split: {what} ({meta.get('prompts', '?')} prompts × "
            f"{meta.get('seeds', '?')} seeds, N = {meta.get('n', '?')})")


def evidence_plots(summary: dict) -> list[tuple[str, object]]:
    """``(file name, draw(path))`` for the frontier plot and the AUROC-vs-step plot, where computed."""
    plots = []
    front = summary.get("frontier")
    if front is not None:
        extra = {name: (m["tokens_per_image"], m["accuracy"]["overall"]) for name, m in summary["methods"].items()
                 if name in ("plain", "importance_sampling") and m["accuracy"]["overall"] is not None}
        title = _title(summary, "accuracy against tokens")
        plots.append((FRONTIER_PLOT, lambda path: frontier.frontier_plot(front, extra, title, path)))
    report = (summary.get("signal_report") or {}).get(frontier.REFERENCE)
    if report is not None:
        title = _title(summary, "AUROC of each signal among Best-of-N's candidates")
        plots.append((AUROC_PLOT, lambda path: signals.auroc_plot(report, title, path)))
    return plots


# ---------------------------------------------------------------- rank on builtin, confirm on held-out

def resummarise(run_dirs: list[Path], out: Path) -> dict:
    """Finished bench runs of one split, model and N merged (pieces of one run: ``--first-seed``, ``--part``;
    or extra methods on the same prompts and seeds, matched against the Best-of-N records of the others),
    and their summary recomputed from the records by this code, written into ``out``."""
    import json

    from .bench import summarise, write_results

    records, metas = [], []
    for run_dir in run_dirs:
        records += [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines() if line.strip()]
        metas.append(json.loads((run_dir / "results.json").read_text())["meta"])
    meta = dict(metas[0])
    for other, run_dir in zip(metas[1:], run_dirs[1:]):
        for key in ("model", "split", "n"):
            if other.get(key) != meta.get(key):
                raise ValueError(f"{run_dir}: its {key} {other.get(key)!r} differs from {run_dirs[0]}'s "
                                 f"{meta.get(key)!r}: only runs of the same set-up merge")
    seen = set()
    for r in records:
        key = (r["method"], r["id"], r["seed"])
        if key in seen:
            raise ValueError(f"runs {', '.join(map(str, run_dirs))} repeat {key}: give each run its own --first-seed "
                             f"or --part")
        seen.add(key)
    seeds = sorted({s for m in metas for s in m.get("seed_indices", [])})
    ids = {r["id"] for r in records}
    methods = list(dict.fromkeys(m for meta_ in metas for m in meta_["methods"]))
    meta.update(methods=methods, prompts=len(ids), parts=[m.get("part", [0, 1]) for m in metas], seeds=len(seeds), seed_indices=seeds, elapsed_s=sum(m.get("elapsed_s") or 0 for m in metas),
                seed_rule=meta["seed_rule"].split(", seed_index in")[0] + f", seed_index in {seeds}",
                command=metas[0]["command"] + (f" # + {len(metas) - 1} more pieces: other --first-seed / --part, "
                                               f"seed indices {seeds}" if len(metas) > 1 else ""))
    summary = summarise(records)
    summary.update(evidence_of(records))
    summary["meta"] = meta
    write_results(files.check_output_dir(out, "the merged results' folder"), summary, records)
    return summary


def best_setting(summary: dict) -> str | None:
    """The ScalingAR point (defaults or a sweep point) with the highest accuracy over Best-of-k at its own
    tokens: the setting the builtin split nominates."""
    matched = (summary.get("frontier") or {}).get("matched", {})
    ours = {n: m for n, m in matched.items() if n.startswith("scalingar") and m is not None}
    return max(ours, key=lambda n: ours[n]["difference"]["mean"]) if ours else None


def verdict(builtin: dict, heldout: dict) -> dict:
    """The signal and the setting chosen on the builtin split, and what the held-out split says of them."""
    ref = frontier.REFERENCE
    signal = signals.winner(builtin["signal_report"][ref])
    setting = best_setting(builtin)
    held = heldout["signal_report"][ref]["signals"][signal]
    return {"signal": signal, "signal_builtin": builtin["signal_report"][ref]["signals"][signal],
            "signal_heldout": held, "signal_confirmed": signals.confirmed(held),
            "setting": setting, "setting_builtin": builtin["frontier"]["matched"].get(setting),
            "setting_heldout": heldout["frontier"]["matched"].get(setting),
            "defaults_heldout": heldout["frontier"]["matched"].get("scalingar")}


def verdict_markdown(v: dict, builtin_dir: str, heldout_dir: str) -> list[str]:
    pm = signals.plus_minus

    def top(row):
        return pm(row["top1"]["1.0"])
    lines = ["## Verdict: chosen on the builtin split, confirmed (or not) on the held-out split", "",
             f"Signal picking Best-of-N's winner (top-1 at 100 % of the tokens, C excluded), chosen on builtin: "
             f"**{v['signal']}**: builtin {top(v['signal_builtin'])} % (vs C {pm(v['signal_builtin']['top1_vs_C'], True)}); "
             f"held-out {top(v['signal_heldout'])} % (vs C {pm(v['signal_heldout']['top1_vs_C'], True)}, vs random "
             f"{pm(v['signal_heldout']['top1_vs_random'], True)}). "
             + ("Confirmed: at least 2 paired SE over C on held-out." if v["signal_confirmed"] else
                "Not confirmed: less than 2 paired SE over C on held-out, so it does not become a setting."), ""]
    built = v["setting_builtin"]
    if built is not None and built["difference"]["mean"] <= 0:
        lines += [(f"No ScalingAR setting beat Best-of-k at matched tokens on builtin (the best, {v['setting']}: "
                   f"{pm(built['difference'], True)} points), so no setting is a candidate to confirm."), ""]
    for label, key in (("builtin", "setting_builtin"), ("held-out", "setting_heldout")):
        m = v[key]
        if m is not None:
            lines.append(f"- {v['setting']} on {label}: {pm(m['accuracy'])} % at {m['tokens']:.0f} tokens; "
                         f"Best-of-k at those tokens {pm(m['best_of_k'])} %; difference {pm(m['difference'], True)} "
                         f"points ({m['difference']['pairs']} prompt-seed pairs).")
        else:
            lines.append(f"- {v['setting']} was not run on {label} (its sweep is fixed before the ranking).")
    m = v["defaults_heldout"]
    if m is not None:
        lines.append(f"- scalingar (defaults) on held-out: {pm(m['accuracy'])} % at {m['tokens']:.0f} tokens; Best-of-k "
                     f"at those tokens {pm(m['best_of_k'])} %; difference {pm(m['difference'], True)} points.")
    return lines + ["", f"Tables: `{builtin_dir}/results.md` (builtin), `{heldout_dir}/results.md` (held-out).", ""]


def main(argv=None) -> int:
    import argparse
    import json

    from .. import files
    from ..engine.trace import json_safe

    p = argparse.ArgumentParser(prog="python -m scalingar_core.app.evidence",
                                description="Rank signals and settings on a builtin bench run, confirm the winners "
                                            "on a held-out run, and rewrite both runs' tables from their records.")
    p.add_argument("--builtin", required=True, nargs="+", help="bench --out folders of --prompts builtin runs")
    p.add_argument("--heldout", required=True, nargs="+", help="bench --out folders of --prompts heldout runs")
    p.add_argument("--builtin-out", required=True)
    p.add_argument("--heldout-out", required=True)
    p.add_argument("--out", required=True, help="the verdict: a markdown file")
    args = p.parse_args(argv)
    runs = {}
    for name, src, dst in (("builtin", args.builtin, args.builtin_out), ("heldout", args.heldout, args.heldout_out)):
        runs[name] = resummarise([Path(d) for d in src], files.check_output_dir(dst))
        if runs[name]["meta"].get("split") != name:
            raise SystemExit(f"{src}: a {runs[name]['meta'].get('split')} run, not a {name} run: rerun the bench with "
                             f"--prompts {name}")
    v = verdict(runs["builtin"], runs["heldout"])
    files.write_text(args.out, "\n".join(verdict_markdown(v, args.builtin_out, args.heldout_out)))
    files.write_text(Path(args.out).with_suffix(".json"), json.dumps(json_safe(v), indent=1, allow_nan=False))
    print(Path(args.out).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
