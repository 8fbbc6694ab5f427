"""What each intrinsic signal picks: per-trajectory values at 25 / 50 / 75 / 100 % of the tokens, their
within-prompt AUROC for final correctness, and the accuracy of picking the top-1 candidate by each.

Signals (all read so that higher should mean better):

* ``C`` and its parts ``s_tok``, ``B``, ``I``, ``D_hat``: the profile's state after the last step seen;
* ``bon_score``: Best-of-N's default intrinsic score, the mean token confidence c_t (eq. 5);
* ``logprob_mean`` / ``logprob_min`` / ``logprob_low10``: the sampled tokens' log-probabilities, their mean,
  minimum, and mean of the lowest 10 %;
* ``gap_mean`` / ``gap_min``: log p_cond − log p_uncond of the sampled tokens;
* ``lgc_k{k}_w{w}``: DeepConf's lowest group confidence with top-k token confidence and window w.

Only the top-1 pick accuracy decides whether a signal is useful: a high AUROC can still pick losers.
"""
from __future__ import annotations

import math
import textwrap
from collections import defaultdict

import numpy as np
import torch

from ..engine.confidence import token_confidence
from ..engine.token_signals import TOPK_CONFIDENCE_K, lowest_group_confidence

FRACTIONS = (0.25, 0.5, 0.75, 1.0)
STATE_SIGNALS = ("C", "s_tok", "B", "I", "D_hat")
DEEPCONF_WINDOWS = (8, 32, 128)  # tokens; the toy image has 256 (a 16 × 16 grid: half a row to eight rows)
LOW_SHARE = 0.1
SIGNAL_METHODS = ("best_of_n", "scalingar")
"""Methods whose records carry every signal (the others keep the bench's final-state ones)."""


def signal_names() -> list[str]:
    return [*STATE_SIGNALS, "bon_score", "logprob_mean", "logprob_min", "logprob_low10", "gap_mean", "gap_min",
            *(f"lgc_k{k}_w{w}" for k in TOPK_CONFIDENCE_K for w in DEEPCONF_WINDOWS)]


def _series(values: list, upto: int) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values[:upto]], dtype=float)


def _nan_or(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def trajectory_values(signals: dict[str, list], state: dict[str, list], upto: int, alpha_h: float,
                      alpha_m: float) -> dict[str, float | None]:
    """Every signal of one trajectory after its first ``upto`` steps (None where it was not recorded)."""
    out: dict[str, float | None] = {k: _nan_or(_series(state[k], upto)[-1]) for k in STATE_SIGNALS}
    conf = token_confidence(_series(signals["entropy_norm"], upto), _series(signals["margin"], upto), alpha_h, alpha_m)
    logp = _series(signals["token_logprob"], upto)
    low = np.sort(logp[np.isfinite(logp)])
    gap = _series(signals["guidance_gap"], upto)
    with np.errstate(all="ignore"):
        out.update(bon_score=_nan_or(np.nanmean(conf)), logprob_mean=_nan_or(np.nanmean(logp)),
                   logprob_min=_nan_or(np.nanmin(logp)) if low.size else None,
                   logprob_low10=_nan_or(low[: max(1, math.ceil(LOW_SHARE * low.size))].mean()) if low.size else None,
                   gap_mean=_nan_or(np.nanmean(gap)), gap_min=_nan_or(np.nanmin(gap)) if np.isfinite(gap).any() else None)
    for k in TOPK_CONFIDENCE_K:
        series = torch.from_numpy(_series(signals[f"topk_conf_{k}"], upto))[None]
        for w in DEEPCONF_WINDOWS:
            out[f"lgc_k{k}_w{w}"] = _nan_or(float(lowest_group_confidence(series, w)[0]))
    return out


def record_signals(trace, alpha_h: float, alpha_m: float) -> dict[str, dict[str, list]]:
    """``{fraction: {signal: [value of each trajectory, None if it was gone by then]}}`` of one run."""
    out = {}
    for f in FRACTIONS:
        upto = max(1, round(f * trace.steps))
        per = [trajectory_values(r.signals, r.state, upto, alpha_h, alpha_m) if len(r.state["C"]) >= upto else None
               for r in trace.trajectories]
        out[str(f)] = {name: [None if p is None else p[name] for p in per] for name in signal_names()}
    return out


# ---------------------------------------------------------------- from records to figures

def clustered(values: dict[tuple, float]) -> dict | None:
    """Mean of per-(prompt, seed) values and its standard error clustered by prompt (the seeds of one
    prompt are not independent): the SE of the per-prompt means (None from one prompt; no values: None)."""
    by_prompt = defaultdict(list)
    for (pid, _), v in values.items():
        by_prompt[pid].append(v)
    means = np.array([np.mean(v) for v in by_prompt.values()])
    if len(means) == 0:
        return None
    se = float(means.std(ddof=1) / math.sqrt(len(means))) if len(means) > 1 else None
    return {"mean": float(np.mean(list(values.values()))), "se": se,
            "prompts": len(means), "pairs": len(values)}


def _pairs(record: dict, values: list | None) -> list[tuple[float, bool]]:
    return [(v, ok) for v, ok in zip(values or [], record["final_ok"] or []) if v is not None and ok is not None]


def top1_picks(records: list[dict], signal: str, fraction: str) -> dict[tuple, float]:
    """Per (prompt, seed): 1 if the candidate with the highest ``signal`` at ``fraction`` of the tokens
    (the first on ties) passed, else 0."""
    picks = {}
    for r in records:
        pairs = _pairs(r, r.get("signal_at", {}).get(fraction, {}).get(signal))
        if pairs:
            picks[(r["id"], r["seed"])] = float(max(pairs, key=lambda p: p[0])[1])
    return picks


def _auroc(records: list[dict], signal: str, fraction: str) -> float | None:
    from .bench import within_prompt_auroc

    return within_prompt_auroc(records, lambda r: r.get("signal_at", {}).get(fraction, {}).get(signal))


def signal_report(records: list[dict]) -> dict | None:
    """For one method's records: random-pick and oracle levels, and for every signal its AUROC and top-1
    pick accuracy at each fraction, plus the paired top-1 difference against C at 100 %."""
    records = [r for r in records if r.get("signal_at") and r.get("final_ok")]
    if not records:
        return None
    survivors = [[ok for ok in r["final_ok"] if ok is not None] for r in records]
    random_pick = {(r["id"], r["seed"]): float(np.mean(s)) for r, s in zip(records, survivors) if s}
    oracle = {(r["id"], r["seed"]): float(any(s)) for r, s in zip(records, survivors) if s}
    base = top1_picks(records, "C", "1.0")
    rows = {}
    for name in signal_names():
        picks = {f: top1_picks(records, name, str(f)) for f in FRACTIONS}
        final = picks[1.0]
        diff = {k: final[k] - base[k] for k in final if k in base}
        rows[name] = {"auroc": {str(f): _auroc(records, name, str(f)) for f in FRACTIONS},
                      "top1": {str(f): clustered(p) for f, p in picks.items()},
                      "top1_vs_C": clustered(diff),
                      "top1_vs_random": clustered({k: final[k] - random_pick[k] for k in final if k in random_pick})}
    return {"random_pick": clustered(random_pick), "oracle": clustered(oracle), "signals": rows}


def winner(report: dict) -> str:
    """The signal with the highest top-1 pick accuracy at 100 % of the tokens, C excluded (the first on
    ties, in ``signal_names`` order): the one candidate the builtin split nominates."""
    best, value = None, -1.0
    for name, row in report["signals"].items():
        top = row["top1"]["1.0"]
        if name != "C" and top is not None and top["mean"] > value:
            best, value = name, top["mean"]
    return best


def confirmed(row: dict) -> bool:
    """A signal beats C at top-1 by at least 2 paired standard errors: the bar a signal must pass, on
    held-out prompts, to become a setting."""
    d = row["top1_vs_C"]
    return d is not None and d["se"] is not None and d["mean"] > 0 and d["mean"] >= 2 * d["se"]


def plus_minus(d: dict | None, signed: bool = False) -> str:
    """``mean ± SE`` of a :func:`clustered` result, in points."""
    if d is None:
        return "–"
    se = "–" if d["se"] is None else f"{100 * d['se']:.1f}"
    return f"{100 * d['mean']:{'+' if signed else ''}.1f} ± {se}"


def markdown(reports: dict[str, dict]) -> list[str]:
    lines = []
    for method, rep in reports.items():
        if rep is None:
            continue
        fr = [str(f) for f in FRACTIONS]
        whose = " (the N Best-of-N candidates)" if method == "best_of_n" else " (its survivors)"
        lines += [f"### What each signal picks among {method}'s candidates{whose}", "",
                  (f"Random pick {plus_minus(rep['random_pick'])} %, oracle {plus_minus(rep['oracle'])} % (± 1 SE "
                   "clustered by prompt). Top-1: accuracy had the candidate with the highest value been kept; AUROC "
                   "within prompt (0.5 = chance). At 100 %, paired difference against picking by C and by chance."), "",
                  ("| signal | AUROC @25% | @50% | @75% | @100% | top-1 @25% | @50% | @75% | @100% | top-1 − C | "
                   "top-1 − random |"), "|---|" + "---|" * 10]
        for name, row in rep["signals"].items():
            aur = " | ".join("–" if row["auroc"][f] is None else f"{row['auroc'][f]:.3f}" for f in fr)
            top = " | ".join(plus_minus(row["top1"][f]) for f in fr)
            lines.append(f"| {name} | {aur} | {top} | {plus_minus(row['top1_vs_C'], True)} | "
                         f"{plus_minus(row['top1_vs_random'], True)} |")
        lines.append("")
    return lines


def auroc_plot(report: dict, title: str, path) -> None:
    """Within-prompt AUROC of every signal against the share of the tokens generated."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .. import files

    fig = Figure(figsize=(10, 5.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.08, 0.1, 0.58, 0.8))
    styles = ["-", "--", ":", "-."]
    colours = matplotlib.colormaps["tab20"].colors  # 17 signals: the default cycle repeats after 10
    for i, (name, row) in enumerate(report["signals"].items()):
        pts = [(100 * f, row["auroc"][str(f)]) for f in FRACTIONS if row["auroc"][str(f)] is not None]
        if pts:
            ax.plot(*zip(*pts), styles[i % 4], marker="o", markersize=3, label=name, color=colours[i % 20],
                    linewidth=2.5 if name == "C" else 1.2)
    ax.axhline(0.5, color="black", linewidth=0.8)
    ax.set_xlabel("% of the image's tokens generated")
    ax.set_ylabel("within-prompt AUROC for final correctness")
    ax.set_xticks([100 * f for f in FRACTIONS])
    ax.grid(True, alpha=0.3)
    ax.set_title(textwrap.fill(title, 80), fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
