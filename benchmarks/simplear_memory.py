"""Analytic device memory of SimpleAR-0.5B / 1.5B text-to-image with ScalingAR, and of its Cosmos decoder.

    python benchmarks/simplear_memory.py [--ns 1 4 8] [--prompt-tokens 48] [--dtype bf16|fp32] [--json]

Everything is built on the meta device (nothing downloaded or allocated). First table: the Cosmos DV8x16x16
decoder alone (weights, ``activation_bytes`` of one image, images per call under its budget). Second: the
Qwen2 models from the published Qwen2.5 architectures with SimpleAR's vocabulary
(``scalingar_core.models.simplear.model.PUBLISHED``); KV cache of ``2N`` rows (prompt + negative prompt) x
(prompt + image tokens); decode: one chunk of images (``estimate_memory``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scalingar_core.models.cosmos.decoder import (  # noqa: E402
    DECODE_BUDGET, DV8x16x16, activation_bytes, decode_chunk, weight_bytes)
from scalingar_core.models.simplear.model import IMAGE_SIZES, PUBLISHED, estimate_memory, published_config  # noqa: E402

GB = ("weights", "activations_per_image", "one_image", "kv_cache", "activations", "decode", "total")


def decoder_table(itemsize: int) -> list[dict]:
    weights = weight_bytes(DV8x16x16, itemsize)
    return [{"image_size": px, "tokens": (px // 16) ** 2, "weights": weights,
             "activations_per_image": activation_bytes(DV8x16x16, px, 1, itemsize),
             "one_image": weights + activation_bytes(DV8x16x16, px, 1, itemsize),
             "images_per_call": decode_chunk(DV8x16x16, px, itemsize)} for px in IMAGE_SIZES]


def model_table(ns, prompt_tokens: int, itemsize: int) -> list[dict]:
    return [{"model": f"SimpleAR-{size}", "image_size": px, "n": n,
             **estimate_memory(published_config(size), n, px, itemsize, prompt_tokens)}
            for size in PUBLISHED for px in IMAGE_SIZES for n in ns]


def show(rows: list[dict]) -> None:
    """One line per row, byte counts in GB (1e9 bytes), columns as wide as their values."""
    cells = [[f"{v / 1e9:.2f}" if k in GB else str(v) for k, v in r.items()] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(rows[0])]
    print("  ".join(k.rjust(w) for k, w in zip(rows[0], widths)))
    for c in cells:
        print("  ".join(v.rjust(w) for v, w in zip(c, widths)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ns", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--prompt-tokens", type=int, default=48)
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    itemsize = 2 if args.dtype == "bf16" else 4
    decoder, models = decoder_table(itemsize), model_table(args.ns, args.prompt_tokens, itemsize)
    if args.json:
        print(json.dumps({"decoder": decoder, "models": models}))
        return 0
    print(f"Cosmos DV8x16x16 decoder, {args.dtype}, one frame, GB; activation budget per call "
          f"{DECODE_BUDGET / 2**30:.0f} GiB")
    show(decoder)
    print(f"\nSimpleAR text-to-image, {args.dtype}, prompt {args.prompt_tokens} + (px/16)^2 image tokens, GB")
    show(models)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
