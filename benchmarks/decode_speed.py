"""KV-cache decode speed of our LlamaGen GPT, and the analytic peak memory of the paper's setting.

    python benchmarks/decode_speed.py [--steps 32] [--ns 1 8] [--device cpu] [--dtype fp32]
    python benchmarks/decode_speed.py --upstream /path/to/LlamaGen [--repeats 3] [--threads 1]

Speed: GPT-B (t2i layout: 120-token caption prefix, 256 px = 256 image tokens) with random weights, a CFG
batch of 2N rows, ``--steps`` decode steps after the prefill. Reported: image tokens/s (N per step; the
uncond rows are the price of CFG and are not counted) and ms per step.
Memory: GPT-XL at 512 px (1024 tokens), N=8 (16 rows), bf16 weights and KV cache, fp32 VQ, bf16 T5-XL
encoder; peak = max(decoding, prompt encoding); see ``scalingar_core.models.llamagen.adapter.estimate_memory``.
Upstream (``--upstream``, a local checkout of FoundationVision/LlamaGen, not shipped here): its
``generate()`` and our sampler side by side, interleaved, on the same random GPT-B weights (c2i 256 px,
N = 8 class labels, CFG 4.0, top-k 2000 as ``sample_c2i.py``): image tokens/s of each (image decoding
excluded on both sides; ours is plain sampling of N trajectories through the engine).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scalingar_core.models.device import resolve_dtype  # noqa: E402
from scalingar_core.models.gpt import GPT, gpt_config  # noqa: E402
from scalingar_core.models.gpt_session import GPTSession  # noqa: E402
from scalingar_core.models.llamagen.adapter import preset_memory  # noqa: E402
from scalingar_core.models.llamagen.presets import PRESETS  # noqa: E402


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


class _NoImages:
    """Our c2i model around a GPT, without a VQ (images are not part of the comparison)."""

    def __init__(self, gpt):
        from scalingar_core.models.llamagen.presets import LLAMAGEN_C2I_DEFAULTS

        self.gpt, self.name, self.vocab_size = gpt, "random-GPT-B", gpt.config.vocab_size
        self.grid, self.defaults, self.device = (gpt.config.grid,) * 2, LLAMAGEN_C2I_DEFAULTS, torch.device("cpu")

    def start(self, label, n, guidance=True):
        return GPTSession(self.gpt, torch.tensor([label]), n, guidance=guidance)

    def decode(self, codes):
        return torch.zeros(codes.shape[0], 3, 16, 16)


def upstream_comparison(upstream_dir: str, n: int, repeats: int, device: torch.device) -> dict:
    import statistics

    from scalingar_core.engine.config import RunConfig, SamplingConfig
    from scalingar_core.engine.loop import generate as our_generate

    sys.path.insert(0, str(Path(upstream_dir).resolve()))
    from autoregressive.models.generate import generate as upstream_generate  # noqa: E402  (their code)
    from autoregressive.models.gpt import GPT_models  # noqa: E402

    torch.manual_seed(0)
    cfg = gpt_config("B", "c2i", 256)
    ours = GPT(cfg).eval()
    torch.nn.init.normal_(ours.output.weight, std=0.02)  # zero-initialised upstream: flat logits otherwise
    theirs = GPT_models["GPT-B"](block_size=cfg.block_size, cls_token_num=1, model_type="c2i").eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    ours, theirs = ours.to(device), theirs.to(device)
    model = _NoImages(ours)
    labels = torch.arange(n, device=device) * 97 % 1000
    config = RunConfig(strategy="best_of_n", sampling=SamplingConfig(num_trajectories=n, cfg_scale=4.0, top_k=2000))
    const = lambda images: torch.zeros(images.shape[0])  # noqa: E731  (no selection score needed)
    tokens = n * cfg.block_size
    times = {"upstream": [], "ours": []}
    for _ in range(repeats):  # interleaved, so load drift hits both alike
        t0 = time.perf_counter()
        upstream_generate(theirs, labels, cfg.block_size, cfg_scale=4.0, temperature=1.0, top_k=2000, top_p=1.0,
                          sample_logits=True)
        times["upstream"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with torch.inference_mode():
            our_generate(model, 207, config, reward=const, observe=False, decode_all=False)
        times["ours"].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"n": n, "repeats": repeats, "seconds": med, "tokens_per_s": {k: tokens / v for k, v in med.items()},
            "speedup": med["upstream"] / med["ours"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--ns", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ap.add_argument("--upstream", default=None, help="a local LlamaGen checkout: compare with its generate()")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    if args.upstream:
        r = upstream_comparison(args.upstream, 8, args.repeats, device)
        print(f"GPT-B c2i 256 px, N={r['n']} with CFG, {torch.get_num_threads()} thread(s), median of {r['repeats']}:")
        print(f"  upstream generate(): {r['seconds']['upstream']:.1f} s, {r['tokens_per_s']['upstream']:.1f} image tokens/s")
        print(f"  ours (plain sampling through the engine): {r['seconds']['ours']:.1f} s, "
              f"{r['tokens_per_s']['ours']:.1f} image tokens/s: {r['speedup']:.2f}x")
        return 0

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
