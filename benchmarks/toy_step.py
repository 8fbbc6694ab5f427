"""Where a toy decode step goes: model vs engine (ops and time), and the compiled step against eager.

    python benchmarks/toy_step.py [--n 8] [--repeats 3] [--threads 1] [--no-compile]

On the bundled ``toy-shapes`` model (8×8 = 64 steps), ScalingAR with N trajectories (2N rows with CFG),
gate and scheduler on but set so nothing is pruned (every step does the same work):

1. aten ops per step inside the model's decode step and outside it (the engine: profile, gate,
   scheduler, sampling, bookkeeping), counted with a dispatch mode, eager and with the engine's math
   compiled (``--compile``) — target: engine <= 120;
2. the engine's share of the step time (model time measured around ``session.step``), eager and compiled
   — target <= 10 %;
3. the engine alone (step time minus model time), eager against compiled, interleaved — target >= 1.5x;
4. the model's decode step alone, eager against ``torch.compile`` (static shapes), ms per step, and the
   number of graphs dynamo compiled over all steps — targets: >= 1.5x, one graph (no recompilation).
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scalingar_core.engine.config import (  # noqa: E402
    MAX_WINDOW,
    GateConfig,
    RunConfig,
    SamplingConfig,
    SchedulerConfig,
)
from scalingar_core.engine.loop import generate  # noqa: E402
from scalingar_core.models import registry  # noqa: E402


class OpCounter(TorchDispatchMode):
    """Counts aten ops, split by whether the model's decode step is running."""

    def __init__(self):
        super().__init__()
        self.inside = False
        self.model, self.engine = Counter(), Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        (self.model if self.inside else self.engine)[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


class Spy:
    """Wraps the model's sessions: time spent in ``step`` and whether a step is running (for OpCounter)."""

    def __init__(self, model, counter=None):
        self.model, self.counter, self.step_s, self.steps = model, counter, 0.0, 0
        self.start_orig = model.start

    def start(self, condition, n, **kw):
        session = self.start_orig(condition, n, **kw)
        step = session.step

        def timed(tokens):
            if self.counter:
                self.counter.inside = True
            t0 = time.perf_counter()
            if self.counter and getattr(self.model, "compile_decode", False):
                from torch.utils._python_dispatch import _disable_current_modes

                self.counter.model["compiled_graph"] += 1  # a compiled step cannot run under a dispatch mode
                with _disable_current_modes():
                    out = step(tokens)
            else:
                out = step(tokens)
            self.step_s += time.perf_counter() - t0
            self.steps += 1
            if self.counter:
                self.counter.inside = False
            return out
        session.step = timed
        return session


@contextlib.contextmanager
def compiled_calls_counted(counter: OpCounter, compiled: bool):
    """torch.compile refuses to run under a dispatch mode: each compiled graph runs with the mode suspended
    and counts as one op ("compiled_graph"); everything around them is counted op by op."""
    if not compiled:
        yield
        return
    from torch.utils._python_dispatch import _disable_current_modes

    from scalingar_core.engine.compiled import engine_math

    math = engine_math(True, device="cpu")
    names = ("_advance",)  # the compiled engine step
    originals = {name: getattr(math, name) for name in names}

    def suspended(fn):
        def call(*args):
            (counter.model if counter.inside else counter.engine)["compiled_graph"] += 1
            with _disable_current_modes():
                return fn(*args)
        return call
    for name in names:
        setattr(math, name, suspended(originals[name]))
    try:
        yield
    finally:
        for name in names:
            setattr(math, name, originals[name])


def config(n: int) -> RunConfig:
    return RunConfig(strategy="scalingar", sampling=SamplingConfig(num_trajectories=n, seed=0),
                     gate=GateConfig(hard_fail=0.0, recovery_window=MAX_WINDOW), scheduler=SchedulerConfig())


def run(model, n, counter=None):
    spy = Spy(model, counter)
    model.start = spy.start
    stamps = []
    try:
        generate(model, model.encode("two red circles"), config(n), decode_all=False,
                 callback=lambda e: stamps.append(time.perf_counter()))
    finally:
        del model.start
    total = stamps[-1] - stamps[0]  # first token to last: prefill and image decoding excluded
    return total / (len(stamps) - 1), spy.step_s / spy.steps, spy.steps


def decode_only(model, n, steps, compiled):
    from scalingar_core.models.protocol import set_compile

    set_compile(model, compiled)
    session = model.start(model.encode("two red circles"), n)
    session.prefill()
    tokens = torch.zeros(n, dtype=torch.long)
    t0 = time.perf_counter()
    session.step(tokens)  # the first compiled step compiles
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps - 2):
        session.step(tokens)
    set_compile(model, False)
    return 1000 * (time.perf_counter() - t0) / (steps - 2), first


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = registry.load("toy-shapes")
    print(f"toy-shapes, N={args.n} ({2 * args.n} rows with CFG), 64 steps, {args.threads} thread(s)")

    with torch.inference_mode():
        modes = [False] if args.no_compile else [False, True]
        for compiled in modes:
            model.compile_decode = compiled
            run(model, args.n)  # warm-up (compiles the step's graphs when compiled)
            counter = OpCounter()
            with counter, compiled_calls_counted(counter, compiled):
                _, _, steps = run(model, args.n, counter)
            per_step_model = sum(counter.model.values()) / steps
            per_step_engine = sum(counter.engine.values()) / (steps + 1)  # the engine also runs after the last step
            top = ", ".join(f"{k} {v / (steps + 1):.1f}" for k, v in counter.engine.most_common(8))
            label = "compiled" if compiled else "eager"
            print(f"{label}: aten ops per step: model {per_step_model:.0f}, engine {per_step_engine:.0f} (target <= 120)")
            print(f"  engine's most frequent: {top}")
        engine_ms = {m: [] for m in modes}
        for _ in range(args.repeats):  # interleaved: load drift hits both alike
            for compiled in modes:
                model.compile_decode = compiled
                total, inside, _ = run(model, args.n)
                engine_ms[compiled].append((1000 * total, 1000 * inside))
        for compiled in modes:
            s = statistics.median(a for a, _ in engine_ms[compiled])
            m = statistics.median(b for _, b in engine_ms[compiled])
            print(f"{'compiled' if compiled else 'eager'}: step {s:.2f} ms = model {m:.2f} ms + engine {s - m:.2f} ms: "
                  f"engine share {(s - m) / s:.1%} (target <= 10 %; median of {args.repeats})")
        if len(modes) == 2:
            eng = {c: statistics.median(a - b for a, b in engine_ms[c]) for c in modes}
            print(f"engine alone: eager {eng[False]:.2f} ms, compiled {eng[True]:.2f} ms: {eng[False] / eng[True]:.2f}x "
                  f"(target >= 1.5x)")
        model.compile_decode = False

        if not args.no_compile:
            import torch._dynamo.utils as dynamo_utils

            dynamo_utils.counters.clear()
            _, first = decode_only(model, args.n, 64, True)  # compiles
            eager, compiled = [], []
            for _ in range(args.repeats + 2):  # interleaved pairs: load drift hits both alike
                eager.append(decode_only(model, args.n, 64, False)[0])
                compiled.append(decode_only(model, args.n, 64, True)[0])
            graphs = dynamo_utils.counters["stats"]["unique_graphs"]
            e, c = statistics.median(eager), statistics.median(compiled)
            print(f"decode step alone: eager {e:.3f} ms, compiled {c:.3f} ms: {e / c:.2f}x (target >= 1.5x; "
                  f"median of {len(eager)} interleaved pairs); first compiled step {first:.1f} s (compilation); "
                  f"graphs compiled over {len(compiled) + 1}x63 steps: {graphs} (target 1)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
