"""Analytic device memory of SimpleAR-0.5B / 1.5B text-to-image with ScalingAR, bf16.

    python benchmarks/simplear_memory.py [--ns 1 4 8] [--prompt-tokens 48] [--json]

The Qwen2 models are built on the meta device from the published Qwen2.5 architectures with SimpleAR's
vocabulary (``scalingar_core.models.simplear.model.PUBLISHED``), so nothing is downloaded or allocated.
KV cache: ``2N`` rows (conditional + negative prompt) x (prompt + image tokens); decode: the Cosmos decoder
on one chunk of images. See ``scalingar_core.models.simplear.model.estimate_memory``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scalingar_core.models.simplear.model import IMAGE_SIZES, PUBLISHED, estimate_memory, published_config  # noqa: E402


def table(ns, prompt_tokens: int) -> list[dict]:
    rows = []
    for size in PUBLISHED:
        config = published_config(size)
        for px in IMAGE_SIZES:
            for n in ns:
                parts = estimate_memory(config, n, px, 2, prompt_tokens)
                rows.append({"model": f"SimpleAR-{size}", "image_size": px, "n": n, **parts})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ns", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--prompt-tokens", type=int, default=48)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = table(args.ns, args.prompt_tokens)
    if args.json:
        print(json.dumps(rows))
        return 0
    gb = lambda b: f"{b / 1e9:.2f}"  # noqa: E731
    print(f"SimpleAR text-to-image, bf16, prompt {args.prompt_tokens} tokens + (px/16)^2 image tokens, GB (1e9 bytes)")
    print(f"{'model':<13} {'px':>5} {'N':>3} {'weights':>8} {'KV cache':>9} {'activ.':>7} {'decode':>7} {'total':>7}")
    for r in rows:
        print(f"{r['model']:<13} {r['image_size']:>5} {r['n']:>3} {gb(r['weights']):>8} {gb(r['kv_cache']):>9} "
              f"{gb(r['activations']):>7} {gb(r['decode']):>7} {gb(r['total']):>7}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
