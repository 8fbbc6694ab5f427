"""How many visual tokens per image each reading of the termination gate spends (A12, docs/method.md).

The paper's one cost figure is the test: LlamaGen-512 (T = 1024), N = 8, ScalingAR spends **2350 visual
tokens per image** against Best-of-N's 8192 (v3 Table 5, ratio 0.287). This drives the real
``TerminationGate`` (``scalingar_core.engine.gate.replay``: no model, no profile) with

* synthetic C traces — each trajectory's C declines steadily from its own level (the ranking is fixed,
  the easiest case to prune) after a warm-up transient, plus noise — at T = 256, 576, 1024 (AR-GRPO-256,
  Janus-Pro 384 px, LlamaGen-512), N = 8, for several noise levels; and
* real C traces recorded from a toy model (``--real MODEL``: Best-of-N runs, so nobody is pruned while
  recording), whose own noise level is measured and added to the synthetic sweep.

Noise is white noise passed through the profile's two EMA stages (λ = 0.2 each, as C inherits from
s_tok → I), scaled so that the **step-to-step standard deviation of C** equals the stated level — the same
statistic measured on the real traces after warm-up. Each reading is probation × rebound reference:

    continuous | window | end_of_window   ×   running_min | flag | min_since_flag

    python benchmarks/gate_budget.py                                # synthetic sweep only (seconds)
    # + real traces and their noise: the tables of docs/benchmarks.md and docs/gate_budget/
    python benchmarks/gate_budget.py --real toy-shapes-256 --real-prompts 40 --prompts 10 --lengths 256,576,1024
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scalingar_core import files  # noqa: E402
from scalingar_core.engine.config import CHOICES, GateConfig  # noqa: E402
from scalingar_core.engine.gate import tokens_spent  # noqa: E402
from scalingar_core.engine.replay import replay  # noqa: E402

PAPER_TOKENS, PAPER_BON = 2350, 8192  # v3 Table 5, LlamaGen-512, N = 8
PAPER_RATIO = PAPER_TOKENS / PAPER_BON
READINGS = list(itertools.product(CHOICES["probation"], CHOICES["recovery_reference"]))


def smooth_noise(n: int, steps: int, delta_std: float, generator: torch.Generator, rate: float = 0.2) -> torch.Tensor:
    """White noise through two EMAs (the profile's s_tok → I smoothing), scaled to a step-diff std."""
    x = torch.randn(n, 1, steps + 400, generator=generator, dtype=torch.float64)
    kernel = (rate * (1 - rate) ** torch.arange(160, dtype=torch.float64)).flip(0).view(1, 1, -1)  # EMA weights
    for _ in range(2):
        x = torch.nn.functional.conv1d(x, kernel)  # causal EMA; its first 159 steps are dropped
    x = x[:, 0, -steps:]
    if delta_std == 0:
        return torch.zeros(n, steps, dtype=torch.float64)
    return x * (delta_std / x.diff(dim=1).std())


def synthetic_traces(n: int, steps: int, delta_std: float, seed: int, level: float = 0.45, spread: float = 0.04,
                     decline: float = 0.08, transient: float = 0.1) -> torch.Tensor:
    """``[n, steps]`` C traces: fixed-rank levels spread over ``spread``, a steady ``decline`` over the image,
    a warm-up transient that starts ``transient`` higher and decays within ~3 % of T, and smooth noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(steps, dtype=torch.float64) / steps
    levels = level + spread * (torch.randperm(n, generator=g).double() / max(1, n - 1) - 0.5)
    trend = levels[:, None] - decline * t[None] + transient * torch.exp(-t / 0.03)[None]
    return (trend + smooth_noise(n, steps, delta_std, g)).float()


def step_noise(traces: torch.Tensor, warmup: int) -> float:
    """Step-to-step standard deviation of C after warm-up (NaN = not recorded)."""
    d = traces[:, warmup:].diff(dim=1)
    d = d[~torch.isnan(d)]
    return float(d.std())


def budget(traces: list[torch.Tensor], cfg: GateConfig) -> tuple[float, float]:
    """Mean tokens per image and mean removals per image over a set of prompts' traces."""
    tokens, removed = [], []
    for tr in traces:
        rem = replay(cfg, tr)
        tokens.append(tokens_spent(rem, tr.shape[0], tr.shape[1]))
        removed.append(len(rem))
    return sum(tokens) / len(tokens), sum(removed) / len(removed)


def record_real(model_name: str, prompts: int, n: int, seed: int) -> list[torch.Tensor]:
    """C traces of ``n`` unpruned trajectories per builtin prompt (Best-of-N with the profile observing)."""
    from scalingar_core.engine.config import RunConfig
    from scalingar_core.engine.loop import generate
    from scalingar_core.models import registry
    from scalingar_core.models.toy.prompts import builtin_eval

    model = registry.load(model_name)
    pool = builtin_eval(max(1, -(-prompts // 5)))
    entries = sorted(pool, key=lambda e: int(e["id"].rsplit("-", 1)[1]))[:prompts]  # categories interleaved
    out = []
    for e in entries:
        cfg = RunConfig.from_dict({"strategy": "best_of_n", "sampling": {"num_trajectories": n, "seed": seed}})
        result = generate(model, model.encode(e["prompt"]), cfg, decode_all=False)
        out.append(torch.tensor([r.state["C"] for r in result.trace.trajectories]))
    return out


def table(title: str, rows: dict, columns: list[str], bon: int) -> list[str]:
    lines = [f"### {title}", "", "| probation | rebound from | " + " | ".join(columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for (probation, reference), cells in rows.items():
        lines.append(f"| {probation} | {reference} | " + " | ".join(
            f"{tok:.0f} ({tok / bon:.2f}) ⌀{rem:.1f}" for tok, rem in cells) + " |")
    lines += ["", f"Cells: tokens per image (÷ Best-of-N's {bon}) and removals per image. Paper (LlamaGen-512, "
                  f"T = 1024): {PAPER_TOKENS} ({PAPER_RATIO:.3f}); the same ratio here is {PAPER_RATIO * bon:.0f}.", ""]
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--lengths", default="256,576,1024")
    ap.add_argument("--noise", default="0,0.002,0.005,0.01,0.02", help="step-diff std of C, comma-separated")
    ap.add_argument("--prompts", type=int, default=10, help="synthetic prompts per length and noise level")
    ap.add_argument("--real", help="also record real C traces from this registry model (e.g. toy-shapes-256)")
    ap.add_argument("--real-prompts", type=int, default=40, help="builtin prompts recorded with --real")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write every figure to this JSON file")
    ap.add_argument("--markdown", help="write the tables to this markdown file")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    start = time.time()
    levels = [float(x) for x in args.noise.split(",")]
    results: dict = {"paper": {"tokens": PAPER_TOKENS, "best_of_n": PAPER_BON}, "synthetic": {}, "real": None}
    lines = [f"Command: `python benchmarks/gate_budget.py {' '.join(argv if argv is not None else sys.argv[1:])}`", ""]

    if args.real:
        traces = record_real(args.real, args.real_prompts, args.n, args.seed)
        steps = traces[0].shape[1]
        warm = round(GateConfig().warmup_fraction * steps)
        measured = sum(step_noise(tr, warm) for tr in traces) / len(traces)
        rows = {r: [budget(traces, GateConfig(probation=r[0], recovery_reference=r[1]))] for r in READINGS}
        results["real"] = {"model": args.real, "prompts": len(traces), "steps": steps, "step_noise": measured,
                           "readings": {f"{p}/{ref}": {"tokens": v[0][0], "removed": v[0][1]} for (p, ref), v in rows.items()}}
        lines += table(f"Real traces: {args.real}, T = {steps}, {len(traces)} prompts (measured step noise "
                       f"{measured:.4f})", rows, ["real traces"], args.n * steps)
        levels = sorted(set(levels + [round(measured, 4)]))
        print(f"measured step noise of {args.real}: {measured:.4f}", flush=True)

    for steps in (int(x) for x in args.lengths.split(",") if x):
        sets = {lv: [synthetic_traces(args.n, steps, lv, args.seed * 1000 + k) for k in range(args.prompts)]
                for lv in levels}
        rows = {r: [budget(sets[lv], GateConfig(probation=r[0], recovery_reference=r[1])) for lv in levels]
                for r in READINGS}
        results["synthetic"][str(steps)] = {f"{p}/{ref}": {str(lv): {"tokens": t, "removed": m}
                                                             for lv, (t, m) in zip(levels, cells)}
                                           for (p, ref), cells in rows.items()}
        lines += table(f"Synthetic traces, T = {steps}, N = {args.n}, {args.prompts} prompts", rows,
                       [f"noise {lv:g}" for lv in levels], args.n * steps)
        print(f"T = {steps} done ({time.time() - start:.0f} s)", flush=True)

    text = "\n".join(lines)
    print(text)
    if args.json:
        files.write_text(args.json, json.dumps(results, indent=1))
    if args.markdown:
        files.write_text(args.markdown, text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
