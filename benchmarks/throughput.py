"""Images per minute: plain-1, Best-of-N and ScalingAR, one group at a time against continuous batching.

    python benchmarks/throughput.py [--prompts 16] [--n 8] [--max-rows 32] [--repeats 1] [--threads 1]
                                    [--model random-GPT-B | toy-shapes-256]

Every configuration decodes the same prompts (class ids, or toy captions) in the same order, interleaved in
one process (load drift hits all alike): "one at a time" admits a group only when the batch is empty
(``max_rows`` = N), "continuous" keeps up to ``max_rows`` trajectories live and admits the next image as
soon as pruning or a finished image frees N of them. Images are chosen but not decoded to pixels (the same
single VQ decode for every method). Prints images/min, tokens/image, steps/s, and the ratios:
ScalingAR continuous ÷ Best-of-N continuous, ScalingAR continuous ÷ ScalingAR one at a time, and wall
saving ÷ token saving of ScalingAR against Best-of-N at the same ``max_rows``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scalingar_core.engine.config import RunConfig  # noqa: E402
from scalingar_core.engine.loop import run  # noqa: E402
from scalingar_core.engine.step import Group  # noqa: E402

TOY_PROMPTS = ["a yellow circle and a blue square", "two red triangles", "a green square", "a blue circle",
               "a red square above a green circle", "three yellow triangles", "a red circle below a blue square", "two blue squares"]


def load(name: str, device: str = "cpu"):
    if name.startswith("random-GPT-"):
        from scalingar_core.testing.random_llamagen import RandomLlamaGen

        dtype = torch.float32 if device == "cpu" else torch.bfloat16
        return RandomLlamaGen(name.removeprefix("random-GPT-"), device=device, dtype=dtype), [str(i) for i in range(1000)]
    from scalingar_core.models import registry

    return registry.load(name, device=device), TOY_PROMPTS


def _sync(model) -> None:
    if torch.device(model.device).type == "cuda":
        torch.cuda.synchronize(model.device)


def step_cost(model, condition, rows: int, repeats: int = 3) -> float:
    """Seconds of one decode step with ``rows`` trajectories (2 × rows model rows with CFG)."""
    with torch.inference_mode():
        session = model.start(condition, rows)
        session.prefill()
        tokens = torch.zeros(rows, dtype=torch.long, device=model.device)
        session.step(tokens)
        _sync(model)
        start = time.perf_counter()
        for _ in range(repeats):
            session.step(tokens)
        _sync(model)
    return (time.perf_counter() - start) / repeats


def static_estimate(model, condition, live: list[int], max_rows: int) -> tuple[float, float]:
    """Decode seconds of the continuous run's steps as measured per batch size (compaction: each step costs
    its live rows) and as a static batch of ``max_rows`` slots would cost them (every step costs max_rows)."""
    sizes = sorted(set(live) | {max_rows})
    cost = {r: step_cost(model, condition, r) for r in sizes}
    return sum(cost[r] for r in live), cost[max_rows] * len(live)


def measure(model, conditions, strategy: str, n: int, max_rows: int, live: list | None = None) -> dict:
    configs = [RunConfig.from_dict({"strategy": strategy, "sampling": {"seed": i, "num_trajectories": n}})
               for i in range(len(conditions))]
    groups = [Group(model, c, k) for c, k in zip(conditions, configs)]
    starts = [name for name in ("start", "start_batch") if getattr(model, name, None) is not None]
    if live is not None:  # record the live trajectories of every decode step
        def spying(start):
            def begin(*args, **kwargs):
                session = start(*args, **kwargs)
                step = session.step
                session.step = lambda tokens: live.append(tokens.numel()) or step(tokens)
                return session
            return begin
        for name in starts:
            setattr(model, name, spying(getattr(model, name)))
    _sync(model)
    start = time.perf_counter()
    tokens = 0
    with torch.inference_mode():
        for _, result in run(model, groups, max_rows=max_rows):
            tokens += result.tokens_generated
    _sync(model)
    wall = time.perf_counter() - start
    if live is not None:
        for name in starts:
            delattr(model, name)
    return {"wall": wall, "images_per_min": 60 * len(groups) / wall, "tokens_per_image": tokens / len(groups)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="random-GPT-B")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-rows", type=int, default=None, help="trajectories live at once (default 4 × N)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--methods", default="plain,best_of_n,scalingar", help="which of plain, best_of_n, scalingar")
    ap.add_argument("--static-estimate", action="store_true",
                    help="also price ScalingAR's continuous run as a static batch of max_rows slots (every step "
                         "decodes max_rows, dead ones masked) from measured step costs per batch size")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    max_rows = args.max_rows or 4 * args.n
    if max_rows < args.n:
        print(f"--max-rows {max_rows} is smaller than one image's {args.n} trajectories: use --max-rows >= --n")
        return 2
    model, prompts = load(args.model, args.device)
    conditions = [model.encode(prompts[i % len(prompts)]) for i in range(args.prompts)]
    steps = model.grid[0] * model.grid[1]
    print(f"{args.model}: {steps} tokens per image, {args.prompts} prompts, N={args.n}, max_rows={max_rows} "
          f"trajectories, {args.device}, {args.threads} thread(s), {args.repeats} interleaved repeat(s)")
    plan = [("plain-1", "plain", 1), (f"best_of_n-{args.n}", "best_of_n", args.n),
            (f"scalingar-{args.n}", "scalingar", args.n)]
    plan = [p for p in plan if p[1] in args.methods.split(",")]
    modes = [("one at a time", None), ("continuous", max_rows)]
    figures: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.repeats):
        for label, strategy, n in plan:
            for mode, rows in modes:
                figure = measure(model, conditions, strategy, n, rows if rows is not None else n)
                figures.setdefault((label, mode), []).append(figure)
                print(f"  ran {label} {mode}: {figure['wall']:.1f} s", flush=True)
    table = {}
    for (label, mode), runs in figures.items():
        wall = statistics.median(r["wall"] for r in runs)
        tokens = runs[0]["tokens_per_image"]
        table[label, mode] = (60 * args.prompts / wall, tokens)
        print(f"{label:>14} {mode:>14}: {60 * args.prompts / wall:7.2f} images/min, {tokens:7.1f} tokens/image, "
              f"{wall:7.1f} s")
    s, b = f"scalingar-{args.n}", f"best_of_n-{args.n}"
    ipm = {k: v[0] for k, v in table.items()}
    tok = {k: v[1] for k, v in table.items()}
    if args.static_estimate and (s, "continuous") in ipm:
        live: list[int] = []
        measure(model, conditions, "scalingar", args.n, max_rows, live)
        compacted, static = static_estimate(model, conditions[0], live, max_rows)
        print(f"ScalingAR continuous, {len(live)} steps, {sum(live) / len(live):.1f} live trajectories per step of "
              f"{max_rows}: compaction {compacted:.1f} s of decode steps, a static {max_rows}-slot batch {static:.1f} s "
              f"({static / compacted:.2f}x)")
    if (b, "continuous") not in ipm or (s, "continuous") not in ipm:
        return 0
    wall_saving = 1 - ipm[b, "continuous"] / ipm[s, "continuous"]
    token_saving = 1 - tok[s, "continuous"] / tok[b, "continuous"]
    print(f"ScalingAR continuous / Best-of-N continuous: {ipm[s, 'continuous'] / ipm[b, 'continuous']:.2f} images/min "
          f"(target >= 2.0 on random GPT-B)")
    print(f"ScalingAR continuous / ScalingAR one at a time: {ipm[s, 'continuous'] / ipm[s, 'one at a time']:.2f} "
          f"(target >= 1.6)")
    print(f"wall saving / token saving against Best-of-N at max_rows={max_rows}: {wall_saving:.2f} / "
          f"{token_saving:.2f} = {wall_saving / token_saving if token_saving else float('nan'):.2f} (target >= 0.8)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
