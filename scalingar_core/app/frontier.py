"""The compute-matched frontier: Best-of-k for every k ≤ N from the Best-of-N candidates, and each pruning
method against Best-of-k at the same tokens per image.

Best-of-k takes the first k of the N Best-of-N candidates (by index: each has its own random stream, so
the first k are exactly what a Best-of-k run would draw) and keeps the one with the highest Best-of-N score.
It costs k·T tokens and nothing extra to compute. A method spending x tokens per image is compared with
Best-of-k interpolated linearly between the two k around x / T, prompt by prompt and seed by seed.
"""
from __future__ import annotations

import math
import textwrap

import numpy as np

from .signals import clustered, plus_minus

REFERENCE = "best_of_n"
UNMATCHED = ("plain", "best_of_n", "importance_sampling")  # fixed budgets: no matched comparison


def check_k(ks: list[int], n: int) -> None:
    """A clear error for a Best-of-k that cannot be computed from N candidates."""
    for k in ks:
        if k < 1 or k > n:
            raise ValueError(f"Best-of-k with k = {k}: k is taken from the N = {n} Best-of-N candidates, so it must "
                             f"be between 1 and N (raise --n to {k} or ask for a smaller k)")


def best_of_k_pass(record: dict, k: int) -> float:
    """1 if Best-of-k on this record's candidates (the first k, the highest score, the first on ties) passes."""
    scores, ok = record["scores"], record["final_ok"]
    check_k([k], len(ok))
    first = [-math.inf if s is None or not math.isfinite(s) else s for s in scores[:k]]
    return float(ok[int(np.argmax(first))])


def best_of_k_curve(reference: list[dict]) -> list[dict]:
    """Accuracy (± 1 SE clustered by prompt) and tokens per image of Best-of-k for k = 1…N."""
    n = len(reference[0]["final_ok"])
    steps = reference[0]["steps"]
    return [{"k": k, "tokens": k * steps,
             **clustered({(r["id"], r["seed"]): best_of_k_pass(r, k) for r in reference})} for k in range(1, n + 1)]


def interpolated_pass(record: dict, tokens: float) -> float:
    """Best-of-k's pass on one record at ``tokens`` per image: linear between the k on either side (k = 1
    below one image's tokens, k = N above N images')."""
    n, steps = len(record["final_ok"]), record["steps"]
    kf = min(max(tokens / steps, 1.0), float(n))
    lo = math.floor(kf)
    w = kf - lo
    value = best_of_k_pass(record, lo)
    return value if w == 0 else (1 - w) * value + w * best_of_k_pass(record, lo + 1)


def matched(records: list[dict], reference: list[dict]) -> dict | None:
    """One method against Best-of-k at its own mean tokens per image, on the (prompt, seed) pairs both have."""
    ref = {(r["id"], r["seed"]): r for r in reference if r.get("scores") and r.get("final_ok")}
    mine = {(r["id"], r["seed"]): float(r["passed"]) for r in records if r["passed"] is not None}
    keys = [k for k in mine if k in ref]
    if len(keys) < 2:
        return None
    tokens = float(np.mean([r["tokens"] for r in records]))
    interp = {k: interpolated_pass(ref[k], tokens) for k in keys}
    return {"tokens": tokens, "accuracy": clustered({k: mine[k] for k in keys}), "best_of_k": clustered(interp),
            "k_equivalent": tokens / ref[keys[0]]["steps"],
            "difference": clustered({k: mine[k] - interp[k] for k in keys})}


def frontier(by_method: dict[str, list[dict]]) -> dict | None:
    """The Best-of-k curve and every budget-varying method's matched comparison (None without Best-of-N)."""
    reference = [r for r in by_method.get(REFERENCE, []) if r.get("scores") and r.get("final_ok")]
    if not reference:
        return None
    return {"best_of_k": best_of_k_curve(reference),
            "matched": {name: matched(rs, reference) for name, rs in by_method.items() if name not in UNMATCHED}}


def markdown(front: dict | None) -> list[str]:
    if front is None:
        return []
    lines = ["### Compute-matched frontier: Best-of-k from the Best-of-N candidates", "",
             "| k | tokens/image | accuracy % (± 1 SE, clustered by prompt) |", "|---|---|---|"]
    lines += [f"| {p['k']} | {p['tokens']} | {plus_minus(p)} |" for p in front["best_of_k"]]
    lines += ["", ("Each method against Best-of-k interpolated at its own tokens per image (same prompts and seeds; "
                   "difference ± 1 SE clustered by prompt):"), "",
              ("| method | tokens/image | ≈ k | accuracy % | Best-of-k at those tokens % | difference (points) | "
               "prompts × seeds |"), "|---|---|---|---|---|---|---|"]
    for name, m in front["matched"].items():
        if m is not None:
            lines.append(f"| {name} | {m['tokens']:.0f} | {m['k_equivalent']:.2f} | {plus_minus(m['accuracy'])} | "
                         f"{plus_minus(m['best_of_k'])} | {plus_minus(m['difference'], True)} | "
                         f"{m['difference']['pairs']} |")
    return lines + [""]


def frontier_plot(front: dict, extra: dict[str, tuple[float, float]], title: str, path) -> None:
    """Accuracy against tokens per image: the Best-of-k line with its ± 1 SE band, every matched method as
    a numbered point (ScalingAR's family round and blue, random pruning square and grey), and ``extra``
    fixed-budget points (name → (tokens, accuracy))."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .. import files

    fig = Figure(figsize=(11.5, 5.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.07, 0.1, 0.52, 0.8))
    curve = front["best_of_k"]
    xs = np.array([p["tokens"] for p in curve])
    ys = np.array([100 * p["mean"] for p in curve])
    se = np.array([100 * (p["se"] or 0.0) for p in curve])
    ax.fill_between(xs, ys - se, ys + se, color="#fde68a", alpha=0.6, linewidth=0)
    ax.plot(xs, ys, "-o", color="#b45309", markersize=4, label="Best-of-k (± 1 SE)")
    for p, x, y in zip(curve, xs, ys):
        ax.annotate(f"k={p['k']}", (x, y), textcoords="offset points", xytext=(0, -12), ha="center", fontsize=7)
    key = []
    points = [(n, m["tokens"], 100 * m["accuracy"]["mean"], 100 * (m["accuracy"]["se"] or 0.0))
              for n, m in front["matched"].items() if m is not None]
    for i, (name, x, y, e) in enumerate(points, 1):
        ours = not name.startswith("random_prune")
        ax.errorbar([x], [y], yerr=[e], fmt="o" if ours else "s", markersize=10, zorder=3, elinewidth=0.8,
                    color="#93c5fd" if ours else "#d1d5db", markeredgecolor="black", ecolor="#6b7280")
        ax.annotate(str(i), (x, y), ha="center", va="center", fontsize=6, zorder=4)
        key.append(textwrap.fill(f"{i:>2}. {name}: {y:.1f} % at {x:.0f}", 58, subsequent_indent="    ",
                                 break_on_hyphens=False))
    for name, (x, y) in extra.items():
        ax.scatter([x], [100 * y], marker="D", color="black", zorder=3)
        ax.annotate(name, (x, 100 * y), textcoords="offset points", xytext=(6, -3), fontsize=8)
    ax.set_xlabel("visual tokens per image (mean)")
    ax.set_ylabel("accuracy (% of images passing the checker)")
    ax.set_xlim(left=0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(textwrap.fill(title, 80), fontsize=9)
    fig.text(0.61, 0.9, "\n".join(key), va="top", ha="left", fontsize=7, family="monospace")
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
