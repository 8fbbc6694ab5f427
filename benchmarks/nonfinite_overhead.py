"""Cost of the non-finite guard per decode step, as a fraction of the confidence profile's own step.

The sampler reads back one boolean per step (are all rows' C finite?) and the rolling pools store non-finite
values as "not recorded". Both act on ``[n]`` vectors; the profile makes several passes over ``[n, V]``
logits. Measured interleaved in one process (1 thread), medians of 5 rounds:

    python benchmarks/nonfinite_overhead.py [--n 8] [--vocab 16384]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scalingar_core.engine.confidence import ProfileState, block_schedule, profile_step, read_logits  # noqa: E402
from scalingar_core.engine.config import ProfileConfig  # noqa: E402
from scalingar_core.engine.history import ring_push  # noqa: E402
from scalingar_core.engine.loop import finite_rows  # noqa: E402


def per_call_us(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--vocab", type=int, default=16384)
    args = p.parse_args()
    torch.set_num_threads(1)
    n, steps = args.n, 256
    cond, uncond = torch.randn(n, args.vocab), torch.randn(n, args.vocab)
    settings = ProfileConfig()
    blocks = block_schedule((16, 16), settings.block_size, settings.min_fill, settings.worst_fraction, "cpu")
    state = [ProfileState.empty(n, blocks.count.shape[1], settings.roll_window, "cpu")]
    live, clock = torch.ones(n, dtype=torch.bool), torch.arange(steps)
    ring, values = torch.full((64, n), float("nan")), torch.rand(n)
    cfg = torch.full((n,), 4.0)
    t = [0]

    def one_step():
        at = t[0] % steps
        signals = read_logits(settings, cond, uncond, cfg, 1.0)
        state[0], _ = profile_step(settings, blocks, state[0], clock[at], at, signals, live)
        t[0] += 1

    def guard():
        bool(finite_rows(state[0].c, cond).all())  # the sampler's per-step check and read-back
        slot = clock[t[0] % 64]
        ring_push(ring, slot, values, live)  # twice per step in the sampler (worst-block and KL pools)
        ring_push(ring, slot, values, live)

    rounds = {"profile": [], "guard": []}
    for _ in range(5):
        rounds["profile"].append(per_call_us(one_step, 100))
        rounds["guard"].append(per_call_us(guard, 1000))
    prof, guard_us = statistics.median(rounds["profile"]), statistics.median(rounds["guard"])
    print(f"N={n}, |V|={args.vocab}, 1 thread")
    print(f"confidence profile step     : {prof:9.1f} us (median of 5)")
    print(f"non-finite guard per step   : {guard_us:9.1f} us (check + read-back + two pool pushes, pushes "
          f"included whole)")
    print(f"guard / profile step        : {guard_us / prof:.4f}")


if __name__ == "__main__":
    main()
