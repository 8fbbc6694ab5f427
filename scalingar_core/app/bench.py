"""Benchmark: ScalingAR against its baselines and ablations on a prompt set, side by side.

    python -m scalingar_core bench --model toy-shapes-256 --prompts builtin --methods plain,best_of_n,scalingar \\
        --n 8 --seeds 2 --out DIR

Methods are strategies (``plain``, ``best_of_n``, ``importance_sampling``, ``random_prune``, ``scalingar``),
the paper's ablations (``scalingar-no-conditional``, ``scalingar-no-worst-block``, ``scalingar-no-token-conf``,
``termination-only``, ``scheduler-only``), or any of those with setting overrides after ``@``, e.g.
``scalingar@gate.recovery_reference=flag;profile.w_d=0``. Prompts with a ``spec`` are scored by the toy
checker on the final image; prompts without one are only generated (for external scoring).
Writes DIR/results.json, DIR/records.jsonl, DIR/results.md and DIR/tradeoff.png as one set, with DIR/run.json
naming its run id (see output_set.py); one bench or generate at a time writes into DIR (DIR/.scalingar.lock).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import signal
import sys
import textwrap
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from .. import files
from ..engine.config import (
    SECTIONS,
    STRATEGIES,
    RunConfig,
    read_overrides,
    setting_from_text,
)
from ..engine.trace import json_safe
from ..errors import RunAborted, echo, exit_status
from ..models.device import check_device
from ..models.registry import DEFAULT_MODEL, model_help
from ..models.toy.checker import FAILURE_KINDS, failure_kind
from .evidence import (
    AUROC_PLOT,
    FRONTIER_PLOT,
    check_best_of_k,
    evidence_markdown,
    evidence_of,
    evidence_plots,
    part_of,
    record_evidence,
    split_meta,
    split_seed_base,
)
from .help import COMPILE_HELP
from .output_set import MANIFEST, OutputSet, folder_lock
from .shard import Shard, gather

ABLATIONS = {
    "scalingar-no-conditional": {"strategy": "scalingar", "profile": {"w_i": 1.0, "w_d": 0.0}},
    "scalingar-no-worst-block": {"strategy": "scalingar", "profile": {"w_tok": 1.0, "w_blk": 0.0}},
    "scalingar-no-token-conf": {"strategy": "scalingar", "profile": {"w_tok": 0.0, "w_blk": 1.0}},
    "termination-only": {"strategy": "scalingar", "scheduler": {"enabled": False}},
    "scheduler-only": {"strategy": "scalingar", "gate": {"enabled": False}},
}
FRACTIONS = (0.25, 0.5, 0.75)
# Final-step state and whole-trajectory means whose within-prompt AUROC is reported per method, to see which
# signal carries information about correctness (and which points the wrong way, AUROC < 0.5).
FINAL_SIGNALS = ("C", "I", "s_tok", "B", "D_hat")
# token_logprob: the sampled token's own log-probability (not in the paper: does it carry what entropy misses?)
MEAN_SIGNALS = ("entropy_norm", "margin", "kl", "token_logprob")


# set by the bench itself for every method (--n, and a seed per prompt and repetition from --seeds)
BENCH_OWNED = {"num_trajectories": "--n", "seed": "--seeds (each prompt and repetition gets its own seed)"}


def _refuse_bench_owned(keys, where: str) -> None:
    """A ValueError when ``keys`` (sampling settings) include one the bench sets itself."""
    for key in keys:
        if key in BENCH_OWNED:
            raise ValueError(f"{where} sets sampling.{key}, which the bench sets for every method: use "
                             f"{BENCH_OWNED[key]}")


def method_config(name: str, n: int, seed: int, base: dict | None = None) -> RunConfig:
    """RunConfig of a method name (strategy, ablation, or either with ``@section.key=value;...``)."""
    head, _, overrides = name.partition("@")
    if head in ABLATIONS:
        spec = json.loads(json.dumps(ABLATIONS[head]))
    elif head in STRATEGIES:
        spec = {"strategy": head}
    else:
        raise ValueError(f"unknown method {echo(head)}: use a strategy or one of {', '.join(ABLATIONS)}")
    sampling = (base or {}).get("sampling")
    _refuse_bench_owned(sampling if isinstance(sampling, dict) else (), "--config")
    for section, values in (base or {}).items():
        spec.setdefault(section, {}).update(values)
    for item in filter(None, overrides.split(";")):
        key, eq, value = item.partition("=")
        section, dot, field = key.partition(".")
        if not (eq and dot):
            raise ValueError(f"method override {echo(item)}: write section.field=value, e.g. gate.quantile=0.3")
        if section not in SECTIONS:
            raise ValueError(f"method override {echo(item)}: unknown section {echo(section)}; use one of "
                             f"{', '.join(SECTIONS)} (the strategy is the name before @)")
        if section == "sampling":
            _refuse_bench_owned([field], f"method override {echo(item)}")
        spec.setdefault(section, {})[field] = setting_from_text(section, field, value)
    spec["sampling"] = {**spec.get("sampling", {}), "num_trajectories": n, "seed": seed}
    return RunConfig.from_dict(spec)


# ---------------------------------------------------------------- workers

_MODEL = None
_LOAD_ERROR: Exception | None = None


def _die_with(parent: int) -> None:
    """Make this worker end when the bench does. SIGTERM and SIGINT get their default meaning (the bench
    itself stops its pool on either), and on Linux the kernel sends SIGKILL when the parent dies, even by
    SIGKILL (prctl PR_SET_PDEATHSIG): a worker is never left holding a core or device memory."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the bench handles it
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the bench died before prctl took effect
        os._exit(1)


def _init(model_name: str, models_dir, device, compile_decode: bool = False, parent: int | None = None):
    import torch

    global _MODEL, _LOAD_ERROR
    if parent is not None:
        _die_with(parent)
    torch.set_num_threads(1)  # one process per core
    from ..models import registry
    from ..models.protocol import set_compile

    try:
        _MODEL = registry.load(model_name, models_dir=models_dir, device=device)
        set_compile(_MODEL, compile_decode)
    except Exception as exc:  # raised again by the first task, so the main process reports it as it is
        _LOAD_ERROR = exc


def _checker():
    from ..models.toy.checker import check

    return check


def _run_job(job: list[dict]) -> list[dict]:
    """The methods of one prompt and seed, decoded together in one batch (``engine.loop.generate_batch``: one
    model forward per step for all of them, each with its own policy, streams and trace). A job of one task
    is a plain ``generate``."""
    from ..engine.loop import generate_batch

    if _LOAD_ERROR is not None:
        raise _LOAD_ERROR

    entry = job[0]["entry"]
    spec = entry.get("spec")
    check = _checker() if spec is not None else None
    oracle = None
    if check is not None:
        oracle = lambda images: [float(check(im, spec).passed) for im in images]  # noqa: E731 (reward=checker)
    configs = [method_config(t["method"], t["n"], t["seed"], t["base"]) for t in job]
    rewards = [oracle if t["reward"] == "checker" else None for t in job]
    start = time.perf_counter()
    results = generate_batch(_MODEL, [_MODEL.encode(entry["prompt"])] * len(job), configs, rewards,
                             extra_signals=True)  # the signal report reads the signals beyond the paper's
    wall = (time.perf_counter() - start) / len(job)  # batched: the job's time, shared equally
    return [_record(task, result, wall, check, spec) for task, result in zip(job, results)]


def _record(task: dict, result, wall: float, check, spec) -> dict:
    entry, trace = task["entry"], result.trace
    record = {"id": entry.get("id"), "category": entry.get("category", "uncategorised"), "method": task["method"],
              "seed": task["seed"], "tokens": result.tokens_generated, "wall_s": wall, "selected": result.selected,
              "passed": None, "reason": None, "final_ok": None, "c_at": {}, "config": trace.config}
    if check is not None:
        verdict = check(result.image, spec)
        record["passed"], record["reason"] = bool(verdict.passed), verdict.reason
        record["final_ok"] = [None if r.removed_at is not None else bool(check(result.images[r.index], spec).passed)
                              for r in trace.trajectories]
        record["signals"] = {name: [r.state[name][-1] if r.removed_at is None else None for r in trace.trajectories]
                             for name in FINAL_SIGNALS}
        for name in MEAN_SIGNALS:
            record["signals"]["mean_" + name] = [float(np.mean(r.signals[name])) if r.removed_at is None else None
                                                 for r in trace.trajectories]
        for f in FRACTIONS:
            step = min(trace.steps - 1, int(f * trace.steps))
            record["c_at"][str(f)] = [r.state["C"][step] if step < len(r.state["C"]) else None
                                      for r in trace.trajectories]
        record.update(record_evidence(task["method"], result))
    record["image"] = result.image.numpy() if task.get("keep_image") else None
    return record


# ---------------------------------------------------------------- aggregation

def auroc(scores, labels) -> float | None:
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        return None
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def _scored(record: dict, values: list | None) -> list[tuple[float, bool]]:
    """(value, final correctness) of each surviving trajectory of one record that has both."""
    return [(v, ok) for v, ok in zip(values or [], record["final_ok"] or []) if v is not None and ok is not None]


def within_prompt_auroc(records: list[dict], values_of) -> float | None:
    """Mean over prompts with mixed outcomes of the AUROC of a per-trajectory value for final correctness."""
    vals = []
    for r in records:
        pairs = _scored(r, values_of(r))
        a = auroc([c for c, _ in pairs], [ok for _, ok in pairs])
        if a is not None:
            vals.append(a)
    return float(np.mean(vals)) if vals else None


def selection_accuracy(records: list[dict], signal: str) -> float | None:
    """Accuracy had each image been the surviving candidate with the highest ``signal`` (the first on ties):
    what choosing by that signal instead of the method's own score would have given, on the same candidates."""
    picks = []
    for r in records:
        pairs = _scored(r, r.get("signals", {}).get(signal))
        if pairs:
            picks.append(max(pairs, key=lambda p: p[0])[1])
    return float(np.mean(picks)) if picks else None


def paired_difference(a: list[dict], b: list[dict]) -> dict | None:
    """Accuracy of ``a`` minus ``b`` on the (prompt, seed) pairs both scored, with the standard error of the
    paired differences (both methods see the same prompts and random streams, so pairing removes the
    prompts' own difficulty from the noise)."""
    passed = {(r["id"], r["seed"]): r["passed"] for r in b if r["passed"] is not None}
    diffs = [float(r["passed"]) - float(passed[(r["id"], r["seed"])]) for r in a
             if r["passed"] is not None and (r["id"], r["seed"]) in passed]
    if len(diffs) < 2:
        return None
    return {"diff": float(np.mean(diffs)), "se": float(np.std(diffs, ddof=1) / np.sqrt(len(diffs))),
            "pairs": len(diffs)}


def summarise(records: list[dict]) -> dict:
    by_method: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_method[r["method"]].append(r)
    methods = {}
    for name, rs in by_method.items():
        scored = [r for r in rs if r["passed"] is not None]
        per_cat = defaultdict(list)
        for r in scored:
            per_cat[r["category"]].append(r["passed"])
        aurocs = {str(f): within_prompt_auroc(scored, lambda r, f=f: r["c_at"].get(str(f))) for f in FRACTIONS}
        names = sorted({k for r in scored for k in r.get("signals", {})})
        signal_aurocs = {k: within_prompt_auroc(scored, lambda r, k=k: r["signals"].get(k)) for k in names}
        selections = {k: selection_accuracy(scored, k) for k in names}
        methods[name] = {
            "accuracy": {"overall": float(np.mean([r["passed"] for r in scored])) if scored else None,
                         "per_category": {c: float(np.mean(v)) for c, v in sorted(per_cat.items())}},
            "tokens_per_image": float(np.mean([r["tokens"] for r in rs])),
            "wall_s": float(sum(r["wall_s"] for r in rs)),
            "images": len(rs),
            "auroc_within_prompt": aurocs,
            "auroc_final_signals": signal_aurocs,
            "accuracy_if_selected_by": selections,
            "mixed_outcome_prompts": sum(1 for r in scored if len({ok for ok in r["final_ok"] or [] if ok is not None}) == 2),
            "removed_per_image": float(np.mean([sum(1 for ok in r["final_ok"] or [] if ok is None) for r in scored]))
            if scored else None,
            # share of the scored images failing for each reason (they sum to 1 − accuracy)
            "failures": {k: sum(failure_kind(r["reason"]) == k for r in scored) / len(scored) for k in FAILURE_KINDS}
            if scored else {},
        }
    if "best_of_n" in by_method:
        for name in methods:
            methods[name]["vs_best_of_n"] = paired_difference(by_method[name], by_method["best_of_n"])
    full = [r for r in by_method.get("best_of_n", []) if r["final_ok"]]
    oracle = float(np.mean([any(r["final_ok"]) for r in full])) if full else None
    random_pick = float(np.mean([np.mean(r["final_ok"]) for r in full])) if full else None
    return {"methods": methods, "oracle_best_of_n": oracle, "random_pick": random_pick}


def _fmt(x, pct=True):
    if x is None:
        return "–"
    return f"{100 * x:.1f}" if pct else f"{x:.0f}"


def _paired(d: dict | None) -> str:
    return "–" if d is None else f"{100 * d['diff']:+.1f} ± {100 * d['se']:.1f}"


def write_markdown(summary: dict, meta: dict, path: Path) -> None:
    cats = sorted({c for m in summary["methods"].values() for c in m["accuracy"]["per_category"]})
    def auc(x):
        return "–" if x is None else f"{x:.3f}"

    elapsed = meta.get("elapsed_s")
    batched = meta.get("batched", False)  # a batch's time is shared equally by its methods: no wall column
    lines = [f"# Benchmark: {meta['model']}, {meta['prompts']} prompts × {meta['seeds']} seeds, N={meta['n']}", "",
             f"Command: `{meta['command']}`" + (f" ({elapsed / 60:.1f} min, {meta.get('workers')} worker processes)"
                                                 if elapsed else ""), "",
             "| method | accuracy % | " + " | ".join(cats) + " | tokens/image | removed/image | AUROC C@25% | @50% | "
             "@75% | vs best_of_n (paired, ± 1 SE) |" + ("" if batched else " wall s |"),
             "|---|---|" + "---|" * len(cats) + "---|---|---|---|---|---|" + ("" if batched else "---|")]
    for name, m in summary["methods"].items():
        a = m["auroc_within_prompt"]
        removed = m.get("removed_per_image")
        lines.append(f"| {name} | {_fmt(m['accuracy']['overall'])} | "
                     + " | ".join(_fmt(m["accuracy"]["per_category"].get(c)) for c in cats)
                     + f" | {m['tokens_per_image']:.0f} | {'–' if removed is None else f'{removed:.2f}'} | "
                     + " | ".join(auc(a[f]) for f in ("0.25", "0.5", "0.75"))
                     + f" | {_paired(m.get('vs_best_of_n'))} |" + ("" if batched else f" {m['wall_s']:.0f} |"))
    lines += ["", f"Oracle best-of-N (any of the N Best-of-N candidates passes): {_fmt(summary['oracle_best_of_n'])} %",
              f"Random pick (mean pass rate of the N Best-of-N candidates): {_fmt(summary['random_pick'])} %", ""]
    signals = sorted({k for m in summary["methods"].values() for k in m.get("auroc_final_signals", {})})
    if signals:
        lines += [("Within-prompt AUROC of each surviving trajectory's value for its own final correctness (final "
                   "state, or the mean over the trajectory for `mean_*`; 0.5 = chance, below 0.5 = points the wrong "
                   "way):"), "", "| method | " + " | ".join(signals) + " |", "|---|" + "---|" * len(signals)]
        lines += [f"| {name} | " + " | ".join(auc(m["auroc_final_signals"].get(k)) for k in signals) + " |"
                  for name, m in summary["methods"].items() if m.get("auroc_final_signals")]
        lines += ["", "Accuracy % had each image been the surviving candidate with the highest value of each signal "
                  "(the same candidates, another choice):", "",
                  "| method | " + " | ".join(signals) + " |", "|---|" + "---|" * len(signals)]
        lines += [f"| {name} | " + " | ".join(_fmt(m["accuracy_if_selected_by"].get(k)) for k in signals) + " |"
                  for name, m in summary["methods"].items() if m.get("accuracy_if_selected_by")]
        lines.append("")
    if any(m.get("failures") for m in summary["methods"].values()):
        lines += ["Why images fail (% of images, by the checker's reason):", "",
                  "| method | " + " | ".join(FAILURE_KINDS) + " |", "|---|" + "---|" * len(FAILURE_KINDS)]
        lines += [f"| {name} | " + " | ".join(_fmt(m["failures"].get(k)) for k in FAILURE_KINDS) + " |"
                  for name, m in summary["methods"].items() if m.get("failures")]
        lines.append("")
    lines += evidence_markdown(summary)
    files.write_text(path, "\n".join(lines))


def tradeoff_plot(summary: dict, path: Path) -> None:
    """Accuracy (%) against visual tokens per image on real axes: one numbered point per method (the
    ScalingAR family round and blue, baselines square and grey), the key beside the axes, and Best-of-N's
    oracle and random-pick levels as reference lines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pts = [(n, m["tokens_per_image"], 100 * m["accuracy"]["overall"]) for n, m in summary["methods"].items()
           if m["accuracy"]["overall"] is not None]
    fig = Figure(figsize=(11, 5.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.07, 0.1, 0.55, 0.8))
    key = []
    for i, (name, x, y) in enumerate(pts, 1):
        ours = name.startswith(("scalingar", "termination-only", "scheduler-only"))
        ax.scatter([x], [y], s=140, zorder=3, color="#93c5fd" if ours else "#d1d5db", marker="o" if ours else "s",
                   edgecolors="black", linewidths=0.6)
        ax.annotate(str(i), (x, y), ha="center", va="center", fontsize=7, zorder=4)
        key.append(textwrap.fill(f"{i:>2}. {name}: {y:.1f} % at {x:.0f}", 52, subsequent_indent="    ",
                                 break_on_hyphens=False))
    for name, label, style in (("oracle_best_of_n", "oracle best-of-N", ":"), ("random_pick", "random pick", "--")):
        if summary.get(name) is not None:
            level = 100 * summary[name]
            ax.axhline(level, color="#6b7280", linestyle=style, linewidth=1)
            ax.annotate(label, (0, level), textcoords="offset points", xytext=(4, 3), fontsize=8, color="#4b5563")
    ax.set_xlabel("visual tokens per image (mean)")
    ax.set_ylabel("accuracy (% of images passing the checker)")
    ax.set_xlim(left=0, right=max([x for _, x, _ in pts] + [1]) * 1.08)
    ax.grid(True, alpha=0.3)
    meta = summary.get("meta", {})
    ax.set_title(f"{meta.get('model', '')}: accuracy against token budget ({meta.get('prompts', '?')} prompts × "
                 f"{meta.get('seeds', '?')} seeds, N = {meta.get('n', '?')})", fontsize=10)
    fig.text(0.64, 0.9, "\n".join(key), va="top", ha="left", fontsize=8, family="monospace")
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")

# ---------------------------------------------------------------- CLI

def load_prompts(source: str, per_category: int) -> list[dict]:
    if source == "builtin":
        from ..models.toy.prompts import builtin_eval

        return builtin_eval(per_category)
    if source == "heldout":
        from ..models.toy.prompts import heldout_eval

        return heldout_eval()
    from ..models.toy.prompts import with_specs
    from .prompt_files import read_prompt_file

    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {source} not found: give 'builtin', 'heldout' or a JSON-lines file of "
                                '{"prompt": ..., "category": ..., "spec": {...}}')
    return with_specs([(p.line, p.entry) for p in read_prompt_file(path)], path)  # the reader generate uses


def _progress(jobs, total: int, start: float, records: list[dict] | None = None) -> list[dict]:
    """Collect the jobs' records into ``records`` (given, so a caller still sees what finished if a worker
    dies), reporting every 200 generations."""
    records = [] if records is None else records
    for job in jobs:
        for record in job:
            records.append(record)
            if len(records) % 200 == 0 or len(records) == total:
                print(f"  {len(records)}/{total} generations, {time.perf_counter() - start:.0f} s", file=sys.stderr,
                      flush=True)
    return records


def prepare(args) -> tuple[list[dict], list[str], dict, Path]:
    """Everything a run needs, checked before the first generation: numbers, prompts, methods, overrides,
    model name and device; the output folder is created. Any problem is a ValueError that names it, and
    the results already in the output folder stay untouched."""
    for option, value, minimum in (("--seeds", args.seeds, 1), ("--n", args.n, 1), ("--workers", args.workers, 1),
                                   ("--limit", args.limit, 0), ("--first-seed", args.first_seed, 0),
                                   ("--per-category", args.per_category, 1)):
        if value < minimum:
            raise ValueError(f"{option} {value}: must be at least {minimum}")
    from ..models import registry

    registry.entry(args.model)
    check_device(args.device)
    entries = load_prompts(args.prompts, args.per_category)
    if args.limit:
        entries = entries[: args.limit]
    if not entries:
        raise ValueError(f"no prompts in {args.prompts}: nothing to benchmark (the results in {args.out} are left "
                         f"as they are)")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise ValueError("--methods is empty: name at least one, e.g. --methods best_of_n,scalingar")
    base = read_overrides(args.config)
    for m in methods:
        method_config(m, args.n, 0, base)  # fail fast on a bad method name or override
    check_best_of_k(args.best_of_k, args.n, methods)
    out = files.check_output_dir(args.out, "--out")
    for name in (*RESULT_FILES, MANIFEST):  # a device or FIFO where a result goes: refused now, not after the run
        files.check_target(out / name)
    return entries, methods, base, out


RESULT_FILES = ("results.json", "records.jsonl", "results.md", "tradeoff.png", FRONTIER_PLOT, AUROC_PLOT)


def write_results(out: Path, summary: dict, records: list[dict]) -> None:
    """The four result files as one set (see output_set.py): staged, then moved into place together, with
    one run id in results.json and run.json; a failure before the moves leaves the previous results whole."""
    with OutputSet(out, "bench", command=summary["meta"].get("command")) as outputs:
        summary["meta"]["run_id"] = outputs.run_id
        outputs.write_text("results.json", json.dumps(json_safe(summary), indent=1, allow_nan=False))
        outputs.write_text("records.jsonl", "".join(json.dumps(json_safe(r), allow_nan=False) + "\n" for r in records))
        with outputs.writing("results.md") as staged:
            write_markdown(summary, summary["meta"], staged)
        with outputs.writing("tradeoff.png") as staged:
            tradeoff_plot(summary, staged)
        for name, draw in evidence_plots(summary):  # the frontier and AUROC-vs-step plots, when computed
            with outputs.writing(name) as staged:
                draw(staged)
        outputs.commit()


def _method_settings(records: list[dict]) -> dict[str, dict]:
    """Each method's settings as the runs recorded them (taken off the records; the seed, which differs per
    prompt and repetition, left out): what a results row was really run with."""
    settings = {}
    for r in records:
        config = r.pop("config", None)
        if config is not None and r["method"] not in settings:
            settings[r["method"]] = {**config, "sampling": {k: v for k, v in config["sampling"].items() if k != "seed"}}
    return settings


def _generate_all(args, jobs: list[list[dict]], workers: int, start: float) -> list[dict]:
    total = sum(len(job) for job in jobs)
    if workers == 1:
        _init(args.model, args.models_dir, args.device, args.compile)
        return _progress(map(_run_job, jobs), total, start)
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    # an executor, not multiprocessing.Pool: a worker that dies (killed, out of memory) breaks the run at
    # once instead of leaving Pool.imap waiting forever for its lost task
    done: list[dict] = []
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"), initializer=_init,
                               initargs=(args.model, args.models_dir, args.device, args.compile, os.getpid()))
    finished = False
    try:
        done = _progress(pool.map(_run_job, jobs), total, start, done)
        finished = True
    except BrokenProcessPool:
        raise RunAborted(f"a bench worker died (killed, or out of memory) after {len(done)} of {total} "
                         f"generations; nothing was written and the results in {args.out} are unchanged. "
                         f"Rerun, with fewer --workers if memory is short") from None
    finally:
        _stop(pool, kill=not finished)
    return done


def _stop(pool, kill: bool) -> None:
    """End the pool now: on an error or a signal its workers are killed (``shutdown`` alone would wait for
    the jobs they are running, minutes on a large model); after a normal end this only joins them."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public handle before 3.14
    if kill:
        for process in processes:
            with contextlib.suppress(Exception):
                process.kill()
    pool.shutdown(wait=True, cancel_futures=True)


def jobs_of(tasks: list[dict], batch: bool) -> list[list[tuple[int, dict]]]:
    """``(index, task)`` pairs grouped into jobs: every method of one prompt and seed together (they share
    the condition, so one batched decode serves them), or one task per job without ``batch``."""
    groups: dict[tuple, list[tuple[int, dict]]] = {}
    for i, task in enumerate(tasks):
        key = (task["seed"], task["entry"].get("id"), task["entry"]["prompt"]) if batch else (i,)
        groups.setdefault(key, []).append((i, task))
    return list(groups.values())


def run(args) -> dict | None:
    entries, methods, base, out = prepare(args)
    shard = Shard.from_env()
    # one bench (rank 0 of a launcher's run) writes into --out at a time
    with folder_lock(out) if shard.is_main else contextlib.nullcontext():
        return _run(args, entries, methods, base, out, shard)


def _run(args, entries, methods, base, out, shard) -> dict | None:
    # repeated captions are different samples: every (entry, seed) pair gets its own sampling seed, shared
    # by all methods so they are compared on the same random streams
    seed_base = split_seed_base(args.prompts)
    tasks = [{"entry": e, "method": m, "seed": seed_base + s * 1_000_003 + i, "n": args.n, "base": base,
              "reward": args.reward}
             for s in range(args.first_seed, args.first_seed + args.seeds) for i, e in enumerate(entries) for m in methods
             if i % args.part[1] == args.part[0]]
    # under torchrun / accelerate launch each rank takes every WORLD_SIZE-th job (see shard.py)
    jobs = [job for _, job in shard.take(jobs_of(tasks, args.batch))]
    indices = [i for job in jobs for i, _ in job]
    tasks = [task for job in jobs for _, task in job]
    args.device = shard.device(args.device)
    workers = max(1, args.workers) if shard.world_size == 1 else 1  # the launcher's ranks replace the pool
    start = time.perf_counter()
    records = _generate_all(args, [[task for _, task in job] for job in jobs], workers, start)
    if len(records) != len(tasks):  # never replace good results with partial or empty ones
        raise RunAborted(f"only {len(records)} of {len(tasks)} generations finished; the results in {out} are "
                         f"unchanged")
    for r in records:
        r.pop("image", None)
    records = gather(list(zip(indices, records)), out, "records", shard)
    shard.close()
    if records is None:
        return None  # not rank 0: its records went to rank 0
    elapsed = time.perf_counter() - start
    settings = _method_settings(records)
    summary = summarise(records)
    for name, config in settings.items():
        summary["methods"][name]["config"] = config
    if args.reward == "checker":
        summary["reward"] = "checker (ORACLE upper bound: Best-of-N and IS see the exact checker)"
    else:
        summary["reward"] = "intrinsic (" + (base or {}).get("baseline", {}).get("score", "token_confidence") + ")"
    summary["meta"] = {"model": args.model, "prompts": len(range(args.part[0], len(entries), args.part[1])),
                       "seeds": args.seeds, "n": args.n,
                       "methods": methods, "elapsed_s": elapsed, "workers": workers * shard.world_size,
                       "batched": args.batch,
                       "command": args.command_line,
                       **split_meta(args.prompts, entries, seed_base, range(args.first_seed, args.first_seed + args.seeds)),
                       "part": list(args.part)}
    summary.update(evidence_of(records, args.best_of_k))
    write_results(out, summary, records)
    return summary


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give whole numbers separated by commas, e.g. 1,2,4") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scalingar_core bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=DEFAULT_MODEL, help=model_help())
    p.add_argument("--models-dir", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--prompts", default="builtin", help="'builtin' (the development split), 'heldout' (250 prompts for confirmation only) or a "
                        "JSON-lines prompt file")
    p.add_argument("--per-category", type=int, default=100, help="builtin prompts per category")
    p.add_argument("--limit", type=int, default=0, help="use only the first K prompts (0 = all)")
    p.add_argument("--methods", default="plain,best_of_n,importance_sampling,random_prune,scalingar",
                   help="comma-separated methods: the strategies " + ", ".join(STRATEGIES) + "; the ablations "
                        + ", ".join(ABLATIONS) + "; either with overrides, e.g. 'scalingar@gate.quantile=0.3'")
    p.add_argument("--n", "--num-trajectories", dest="n", type=int, default=8,
                   help="trajectories per image (under torchrun spell it --num-trajectories)")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--part", type=part_of, default=(0, 1), metavar="J/K",
                   help="only the prompts whose index is J modulo K (their seeds unchanged), so a long run can go in "
                        "K pieces that app/evidence.py merges (default 0/1: all)")
    p.add_argument("--first-seed", type=int, default=0,
                   help="index of the first seed (runs of seeds 0..S-1 and S..2S-1 merge into one: see app/evidence.py)")
    p.add_argument("--reward", default="intrinsic", choices=["intrinsic", "checker"],
                   help="Best-of-N / IS score: the model's own confidence, or the exact checker (an oracle)")
    p.add_argument("--config", default=None,
                   help="setting overrides applied to every method: inline JSON or the path of a JSON file "
                        "(not sampling.num_trajectories or sampling.seed: use --n and --seeds)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--out", required=True)
    p.add_argument("--best-of-k", type=_int_list, default=None,
                   help="the k of the Best-of-k rows to list (default all 1..N; computed from the best_of_n method's "
                        "N candidates, so each k must be at most --n)")
    p.add_argument("--compile", action="store_true", help=COMPILE_HELP)
    p.add_argument("--no-batch", dest="batch", action="store_false",
                   help="decode each method alone instead of all methods of a prompt and seed in one batch "
                        "(same tokens up to floating-point rounding; batched decodes each history the methods share once "
                        "and is about 4x faster for the ten methods on a CPU)")
    return p


def main(argv=None) -> int:
    import shlex

    argv = list(argv or [])
    args = build_parser().parse_args(argv)
    args.command_line = "python -m scalingar_core bench " + " ".join(shlex.quote(a) for a in argv)

    def command() -> int:
        summary = run(args)
        if summary is None:  # a rank other than 0 of a launcher's run
            return 0
        print(Path(args.out, "results.md").read_text())
        return 0 if summary["methods"] else 1
    return exit_status(command)


if __name__ == "__main__":
    raise SystemExit(main(__import__("sys").argv[1:]))
