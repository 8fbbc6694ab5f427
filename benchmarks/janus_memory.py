"""Analytic device memory of Janus-Pro-1B / 7B text-to-image with ScalingAR, bf16.

    python benchmarks/janus_memory.py [--ns 1 4 8] [--prompt-tokens 64] [--json]

The models are built on the meta device from the published configurations
(``scalingar_core.models.janus.configs``), so nothing is downloaded or allocated. Weights: the language model,
the generation embedding/aligner/head and the VQ decoder (the SigLIP tower, its aligner, the text head and
the VQ encoder are never loaded). KV cache: transformers' static cache of 2N rows (conditional +
unconditional) x (prompt + 576 image tokens). See ``scalingar_core.models.janus.model.estimate_memory``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scalingar_core.models.janus import configs  # noqa: E402
from scalingar_core.models.janus.model import estimate_memory  # noqa: E402


def table(ns, prompt_tokens: int) -> list[dict]:
    rows = []
    for size in configs.PUBLISHED:
        counts = configs.part_params(size)
        used = {k: v for k, v in counts.items() if k != "not_loaded"}
        for n in ns:
            parts = estimate_memory(configs.janus_config(size), n, 2, prompt_tokens, params=used)
            rows.append({"model": f"Janus-Pro-{size}", "n": n, "rows": 2 * n, **parts,
                         "not_loaded_bytes": counts["not_loaded"] * 2})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ns", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = table(args.ns, args.prompt_tokens)
    if args.json:
        print(json.dumps(rows))
        return 0
    gb = lambda b: f"{b / 1e9:.2f}"  # noqa: E731
    print(f"Janus-Pro text-to-image, bf16, prompt {args.prompt_tokens} + 576 image tokens, GB (1e9 bytes)")
    print(f"{'model':<14} {'N':>3} {'weights':>8} {'KV cache':>9} {'activ.':>7} {'VQ dec.':>8} {'total':>7}")
    for r in rows:
        print(f"{r['model']:<14} {r['n']:>3} {gb(r['weights']):>8} {gb(r['kv_cache']):>9} {gb(r['activations']):>7} "
              f"{gb(r['vq_decode']):>8} {gb(r['total']):>7}")
    for size in configs.PUBLISHED:
        skipped = next(r for r in rows if r["model"] == f"Janus-Pro-{size}")["not_loaded_bytes"]
        print(f"Janus-Pro-{size}: {gb(skipped)} GB of understanding-only weights (SigLIP tower, aligner) and VQ "
              f"encoder never loaded")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
