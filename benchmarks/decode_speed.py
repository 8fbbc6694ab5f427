"""KV-cache decode speed of our LlamaGen GPT, and the analytic peak memory of the paper's setting.

    python benchmarks/decode_speed.py [--steps 32] [--ns 1 8] [--device cpu] [--dtype fp32]

Speed: GPT-B (t2i layout: 120-token caption prefix, 256 px = 256 image tokens) with random weights, a CFG
batch of 2N rows, ``--steps`` decode steps after the prefill. Reported: image tokens/s (N per step; the
uncond rows are the price of CFG and are not counted) and ms per step.
Memory: GPT-XL at 512 px (1024 tokens), N=8 (16 rows), bf16 weights and KV cache, fp32 VQ, bf16 T5-XL
encoder; peak = max(decoding, prompt encoding); see ``scalingar_core.llamagen.adapter.estimate_memory``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scalingar_core.llamagen.adapter import preset_memory, resolve_dtype  # noqa: E402
from scalingar_core.llamagen.gpt import GPT, gpt_config  # noqa: E402
from scalingar_core.llamagen.presets import PRESETS  # noqa: E402
from scalingar_core.llamagen.session import GPTSession  # noqa: E402


def decode_speed(n: int, steps: int, device: torch.device, dtype: torch.dtype, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    cfg = gpt_config("B", "t2i", 256)
    model = GPT(cfg).to(device=device, dtype=dtype).eval()
    feats = torch.randn(1, cfg.cls_token_num, cfg.caption_dim, device=device)
    mask = torch.ones(1, cfg.cls_token_num, dtype=torch.bool, device=device)
    mask[:, :100] = False  # a 20-token prompt, left-padded
    session = GPTSession(model, feats, n, cond_mask=mask)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    logits = session.prefill()
    sync()
    t1 = time.perf_counter()
    tokens = torch.randint(0, cfg.vocab_size, (n,), device=device)
    session.step(tokens)  # one warm-up step
    sync()
    t2 = time.perf_counter()
    for _ in range(steps):
        logits = session.step(tokens)
    sync()
    t3 = time.perf_counter()
    assert logits.shape == (2 * n, cfg.vocab_size)
    per_step = (t3 - t2) / steps
    return {"n": n, "rows": 2 * n, "steps": steps, "prefill_ms": 1e3 * (t1 - t0), "ms_per_step": 1e3 * per_step,
            "image_tokens_per_s": n / per_step, "row_tokens_per_s": 2 * n / per_step}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--ns", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = resolve_dtype(args.dtype, device)

    speed = [decode_speed(n, args.steps, device, dtype) for n in args.ns]
    mem = {off: preset_memory(PRESETS["llamagen-t2i-xl-512"], 8, dtype_bytes=2, offload_text_encoder=off)
           for off in (True, False)}
    if args.json:
        print(json.dumps({"decode": speed, "memory_xl512_n8_bf16": {str(k): v for k, v in mem.items()},
                          "device": str(device), "dtype": str(dtype), "threads": torch.get_num_threads()}))
        return 0
    print(f"GPT-B t2i 256 px decode, {device}, {dtype}, {torch.get_num_threads()} threads, {args.steps} steps")
    print(f"{'N':>3} {'rows':>5} {'prefill ms':>11} {'ms/step':>9} {'img tok/s':>10} {'row tok/s':>10}")
    for r in speed:
        print(f"{r['n']:>3} {r['rows']:>5} {r['prefill_ms']:>11.1f} {r['ms_per_step']:>9.2f} "
              f"{r['image_tokens_per_s']:>10.1f} {r['row_tokens_per_s']:>10.1f}")
    print("\nAnalytic peak memory, llamagen-t2i-xl-512, N=8 (16 rows), bf16 GPT + KV, fp32 VQ, bf16 T5-XL encoder")
    for off, parts in mem.items():
        detail = ", ".join(f"{k} {v / 1e9:.2f}" for k, v in parts.items() if k != "total")
        print(f"  T5 {'offloaded after encoding' if off else 'kept on the device'}: {parts['total'] / 1e9:.2f} GB "
              f"(GB: {detail})")
    print("  target <= 8 GB; the paper reports 18.16 GB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
