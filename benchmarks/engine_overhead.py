"""Engine overhead on CPU with a GPT-B-sized random LlamaGen model (c2i, 256 px → 16×16 = 256 steps).

Prints, measured side by side in one run:
1. the decode step time with profile + gate + scheduler on, divided by plain guided sampling at the same
   batch (8 trajectories, 16 rows with CFG) — target ≤ 1.03; the gate runs in full (with its per-step
   read-back) but is set so it never prunes, so both runs decode the same number of rows;
2. the fraction of wall-clock saved divided by the fraction of tokens saved when half the trajectories are
   removed at step T/4 through the engine's real pruning path — target ≥ 0.9;
3. ScalingAR with N trajectories (paper defaults) against one plain sample, decode wall-clock — target ≤ 1.4
   at N = 8 (``--only-vs-plain`` runs just this).

    python benchmarks/engine_overhead.py [--preset B] [--steps 256] [--repeats 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scalingar_core.engine import loop as sampler_module  # noqa: E402
from scalingar_core.engine.config import (  # noqa: E402
    MAX_WINDOW,
    GateConfig,
    RunConfig,
    SamplingConfig,
    SchedulerConfig,
)
from scalingar_core.engine import step as step_module  # noqa: E402
from scalingar_core.engine.compiled import EAGER  # noqa: E402
from scalingar_core.engine.gate import BASIN  # noqa: E402
from scalingar_core.testing.random_llamagen import RandomLlamaGen  # noqa: E402


def timed_loop(model, config, observe=True, reward=None, stamps=None) -> tuple[float, int]:
    """Seconds from the first decoded token to the last (prefill and image decoding excluded)."""
    stamps = [] if stamps is None else stamps
    result = sampler_module.generate(model, model.encode("1"), config, observe=observe, reward=reward,
                                     decode_all=False, callback=lambda e: stamps.append(time.perf_counter()))
    return stamps[-1] - stamps[0], result.tokens_generated


def late_step_ms(stamps: list[float]) -> float:
    """Mean step time over the last three quarters of the decode (after the forced pruning point)."""
    q = len(stamps) // 4 + 1
    return 1000 * (stamps[-1] - stamps[q]) / (len(stamps) - 1 - q)


class HalfAtQuarter:
    """The eager engine step, then the upper half of the live trajectories leave at step T/4 as the gate's
    removals do (BASIN: their rows leave the batch through the engine's real pruning path)."""

    def __init__(self, total_steps: int):
        self.total = total_steps

    def advance(self, *args, at: int):
        state, out = EAGER.advance(*args, at=at)
        if at == self.total // 4:
            live = torch.nonzero(state.live).squeeze(1)
            out.leave[live[live.shape[0] // 2:]] = BASIN
        return state, out


@contextlib.contextmanager
def engine(math):
    """Groups made inside use ``math`` as their engine step."""
    original = step_module.engine_math
    step_module.engine_math = lambda *a, **k: math
    try:
        yield
    finally:
        step_module.engine_math = original


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="B")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only-vs-plain", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = RandomLlamaGen(args.preset, args.image_size)
    steps = model.grid[0] * model.grid[1]
    params = sum(p.numel() for p in model.gpt.parameters()) / 1e6
    print(f"model GPT-{args.preset} ({params:.1f}M params), {steps} steps, N={args.n} (batch {2 * args.n} with CFG), "
          f"{args.threads} threads")

    sampling = SamplingConfig(num_trajectories=args.n, seed=0)
    one = RunConfig(strategy="plain", sampling=SamplingConfig(num_trajectories=1, seed=0))
    scalingar = RunConfig(strategy="scalingar", sampling=sampling)
    timed_loop(model, one, observe=False)  # warm-up
    plain1, sar = [], []
    for _ in range(args.repeats):  # interleaved
        plain1.append(timed_loop(model, one, observe=False)[0])
        sar.append(timed_loop(model, scalingar))
    p1, s8, s8_tokens = statistics.median(plain1), statistics.median(t for t, _ in sar), sar[0][1]
    print(f"plain, 1 trajectory     : {p1:.2f} s decode")
    print(f"ScalingAR, {args.n} trajectories: {s8:.2f} s decode ({s8_tokens} tokens; paper defaults)")
    print(f"ScalingAR {args.n} / plain 1   : {s8 / p1:.2f}   (target <= 1.4 at N = 8)")
    if args.only_vs_plain:
        return
    never_prune = GateConfig(hard_fail=0.0, recovery_window=MAX_WINDOW)  # longer than the image: never
    full = RunConfig(strategy="scalingar", sampling=sampling, gate=never_prune, scheduler=SchedulerConfig())
    plain = RunConfig(strategy="best_of_n", sampling=sampling)
    const = lambda images: torch.zeros(images.shape[0])  # noqa: E731  (no intrinsic score: no profile)

    timed_loop(model, plain, observe=False, reward=const)  # warm up allocator and kernels
    plain_t, full_t = [], []
    for _ in range(args.repeats):  # interleaved so drift in machine load hits both alike
        plain_t.append(timed_loop(model, plain, observe=False, reward=const)[0])
        full_t.append(timed_loop(model, full)[0])
    p, f = statistics.median(plain_t), statistics.median(full_t)
    print(f"plain guided sampling   : {1000 * p / (steps - 1):7.2f} ms/step (median of {args.repeats})")
    print(f"profile+gate+scheduler  : {1000 * f / (steps - 1):7.2f} ms/step")
    print(f"step-time ratio         : {f / p:.3f}   (target <= 1.03)")

    keep_all = RunConfig(strategy="scalingar", sampling=sampling, gate=never_prune,
                         scheduler=SchedulerConfig(enabled=False))
    whole, pruned, rows16, rows8 = [], [], [], []
    for _ in range(args.repeats):
        stamps = []
        whole.append(timed_loop(model, keep_all, stamps=stamps))
        rows16.append(late_step_ms(stamps))
        stamps = []
        with engine(HalfAtQuarter(steps)):
            pruned.append(timed_loop(model, keep_all, stamps=stamps))
        rows8.append(late_step_ms(stamps))
    w_time = statistics.median(t for t, _ in whole)
    p_time = statistics.median(t for t, _ in pruned)
    w_tok, p_tok = whole[0][1], pruned[0][1]
    time_saved = (w_time - p_time) / w_time
    tokens_saved = (w_tok - p_tok) / w_tok
    print(f"all {args.n} trajectories : {w_time:.2f} s, {w_tok} tokens")
    print(f"half removed at T/4     : {p_time:.2f} s, {p_tok} tokens")
    print(f"wall-clock saved / tokens saved: {time_saved:.3f} / {tokens_saved:.3f} = {time_saved / tokens_saved:.3f}"
          f"   (target >= 0.9)")
    a, b = statistics.median(rows16), statistics.median(rows8)
    print(f"step time after T/4     : {a:.2f} ms with {2 * args.n} rows, {b:.2f} ms with {args.n} rows "
          f"(half the rows cost {b / a:.2f} of the time: the rest is per-step work that does not shrink with "
          f"the batch, e.g. streaming the weights)")


if __name__ == "__main__":
    main()
