"""Analytic device memory of decoding SimpleAR images with the Cosmos DV8x16x16 decoder.

    python benchmarks/cosmos_memory.py [--dtype bf16|fp32] [--json]

The decoder is built on the meta device (nothing downloaded or allocated). Weights: every parameter of
``post_quant_conv`` + the factorized decoder. Activations: ``activation_bytes`` (about eight maps of the widest
level's size alive at once), and the images per decoder call that ``decode_chunk`` picks under its budget.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scalingar_core.models.cosmos.decoder import (  # noqa: E402
    DECODE_BUDGET, DV8x16x16, activation_bytes, decode_chunk, weight_bytes)

SIZES = (256, 512, 768, 1024)


def table(itemsize: int) -> list[dict]:
    weights = weight_bytes(DV8x16x16, itemsize)
    return [{"image_size": s, "tokens": (s // 16) ** 2, "weights": weights,
             "activations_per_image": activation_bytes(DV8x16x16, s, 1, itemsize),
             "images_per_call": decode_chunk(DV8x16x16, s, itemsize),
             "total_one_image": weights + activation_bytes(DV8x16x16, s, 1, itemsize)} for s in SIZES]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = table(2 if args.dtype == "bf16" else 4)
    if args.json:
        print(json.dumps(rows))
        return 0
    gb = lambda b: f"{b / 1e9:.2f}"  # noqa: E731
    print(f"Cosmos DV8x16x16 decoder, {args.dtype}, one frame, GB (1e9 bytes); "
          f"activation budget per call {DECODE_BUDGET / 2**30:.0f} GiB")
    print(f"{'px':>5} {'tokens':>7} {'weights':>8} {'activ./image':>13} {'1 image':>8} {'images/call':>12}")
    for r in rows:
        print(f"{r['image_size']:>5} {r['tokens']:>7} {gb(r['weights']):>8} {gb(r['activations_per_image']):>13} "
              f"{gb(r['total_one_image']):>8} {r['images_per_call']:>12}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
