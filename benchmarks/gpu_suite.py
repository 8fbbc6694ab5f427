"""One prepared GPU check of the decode path: LlamaGen-XL text-to-image at 512 px (1024 steps), random
full-size weights in bf16, eager against compiled (CUDA graphs), for plain N = 1, Best-of-N 8, ScalingAR 8.

    python benchmarks/gpu_suite.py                  # one GPU, about 5 minutes (--budget-s caps it)
    python benchmarks/gpu_suite.py --smoke          # CPU, GPT-B at 64 px (16 steps), fp32: checks the script runs
    python benchmarks/gpu_suite.py --throughput     # then images/min, one group at a time vs continuous batching

Per run: end-to-end seconds (prefill, 1024 steps, VQ decode of every candidate), ms per decode step, peak
device memory (T5 is not loaded: the caption is random features, as if T5 had been offloaded after
encoding), and the achieved weight bandwidth (GPT weight bytes, all read once per step, × steps/s). The
compiled runs pay their compilation in a warm-up run of the same seed (reported apart); the timed run then
meets the same batch sizes. The project's targets: ScalingAR 8 <= 5 s end to end on an H200, <= 1.3x plain
N = 1, peak <= 8 GB. Writes JSON to --out (default: $OUT/gpu_suite.json when $OUT is set).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scalingar_core import files  # noqa: E402
from scalingar_core.engine.config import (  # noqa: E402
    GateConfig,
    RunConfig,
    SamplingConfig,
    SchedulerConfig,
)
from scalingar_core.engine.loop import generate  # noqa: E402
from scalingar_core.models.gpt import GPT, gpt_config  # noqa: E402
from scalingar_core.models.llamagen.adapter import (  # noqa: E402
    LlamaGenCondition,
    LlamaGenModel,
    preset_memory,
)
from scalingar_core.models.llamagen.presets import LLAMAGEN_T2I_DEFAULTS, PRESETS  # noqa: E402
from scalingar_core.models.protocol import set_compile  # noqa: E402
from scalingar_core.models.vq16 import VQConfig, VQModel  # noqa: E402

STRATEGIES = [("plain", 1), ("best_of_n", 8), ("scalingar", 8)]


def build(preset: str, image_size: int, device: torch.device, dtype: torch.dtype, valid_tokens: int = 24):
    """A random LlamaGen t2i model of full size and a left-padded random caption of ``valid_tokens``."""
    torch.manual_seed(0)
    cfg = gpt_config(preset, "t2i", image_size)
    with torch.device(device):  # initialise on the device: seconds, not minutes, for 775M parameters
        gpt = GPT(cfg)
        torch.nn.init.normal_(gpt.output.weight, std=0.02)  # upstream zero-inits it: logits would be flat
        vq = VQModel(VQConfig())
    model = LlamaGenModel(f"random-GPT-{preset}-{image_size}", gpt.to(dtype), vq, None, LLAMAGEN_T2I_DEFAULTS)
    mask = (torch.arange(cfg.cls_token_num, device=device) >= cfg.cls_token_num - valid_tokens)[None]
    feats = torch.randn(1, cfg.cls_token_num, cfg.caption_dim, device=device, dtype=dtype) * mask[..., None]
    return model, LlamaGenCondition(prompt="random caption", features=feats, mask=mask)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def one_run(model, condition, strategy: str, n: int, device) -> dict:
    steps = model.grid[0] * model.grid[1]
    stamps = []

    def on_step(event):
        if event.step in (0, event.total - 1):  # the two ends of the decode, with the device caught up
            sync(device)
            stamps.append(time.perf_counter())
    config = RunConfig(strategy=strategy, sampling=SamplingConfig(num_trajectories=n, seed=0),
                       gate=GateConfig(), scheduler=SchedulerConfig())
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        result = generate(model, condition, config, callback=on_step, observe=strategy != "plain")
    sync(device)
    wall = time.perf_counter() - start
    removed = sum(1 for r in result.trace.trajectories if r.removed_at is not None)
    return {"strategy": strategy, "n": n, "seconds": wall, "ms_per_step": 1000 * (stamps[-1] - stamps[0]) / (steps - 1),
            "tokens": result.tokens_generated, "removed": removed,
            "peak_gb": torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="CPU smoke test: GPT-B, 64 px, fp32")
    ap.add_argument("--preset", default=None, help="GPT preset (default XL; B with --smoke)")
    ap.add_argument("--image-size", type=int, default=None, help="default 512 (64 with --smoke)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--modes", default="eager,compiled")
    ap.add_argument("--budget-s", type=float, default=290, help="skip runs that would start after this")
    ap.add_argument("--out", default=None)
    ap.add_argument("--throughput", action="store_true",
                    help="then benchmarks/throughput.py on this device (random GPT-B c2i 256 px, 16 prompts): "
                         "images per minute one group at a time against continuous batching")
    args = ap.parse_args(argv)
    preset = args.preset or ("B" if args.smoke else "XL")
    size = args.image_size or (64 if args.smoke else 512)
    device = torch.device(args.device or ("cpu" if args.smoke or not torch.cuda.is_available() else "cuda"))
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    if device.type == "cpu":
        torch.set_num_threads(1)  # a smoke test on a shared machine: more threads only contend
    else:
        torch.backends.cuda.matmul.allow_tf32 = True  # as the upstream sample scripts
    began = time.perf_counter()
    model, condition = build(preset, size, device, dtype)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.gpt.parameters())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{model.name} ({weight_bytes / 1e9:.2f} GB of GPT weights, {dtype}) on {name}; built in "
          f"{time.perf_counter() - began:.1f} s")
    rows, skipped = [], []
    for mode in args.modes.split(","):
        set_compile(model, mode == "compiled")
        for strategy, n in STRATEGIES:
            if time.perf_counter() - began > args.budget_s:
                skipped.append(f"{mode} {strategy}")
                continue
            compile_s = None
            if mode == "compiled":  # warm-up of the same seed: compiles every batch size the timed run meets
                warm = one_run(model, condition, strategy, n, device)
                compile_s = warm["seconds"]
            row = one_run(model, condition, strategy, n, device)
            row.update(mode=mode, first_run_s=compile_s,
                       weight_gb_per_s=weight_bytes / 1e9 / (row["ms_per_step"] / 1000))
            rows.append(row)
            peak = "-" if row["peak_gb"] is None else f"{row['peak_gb']:.2f} GB"
            first = "" if compile_s is None else f", first run {compile_s:.1f} s"
            print(f"{mode:8s} {strategy:10s} N={n}: {row['seconds']:6.2f} s, {row['ms_per_step']:6.2f} ms/step, "
                  f"peak {peak}, {row['weight_gb_per_s']:7.1f} GB/s of weights, {row['removed']} removed{first}",
                  flush=True)
    for mode in args.modes.split(","):
        by = {r["strategy"]: r for r in rows if r["mode"] == mode}
        if "plain" in by and "scalingar" in by:
            print(f"{mode}: ScalingAR 8 / plain 1 = {by['scalingar']['seconds'] / by['plain']['seconds']:.2f} "
                  f"(target <= 1.3); ScalingAR 8 {by['scalingar']['seconds']:.2f} s (target <= 5 s on an H200)")
    if preset == "XL" and size == 512:
        analytic = preset_memory(PRESETS["llamagen-t2i-xl-512"], 8, dtype_bytes=2)["total"] / 1e9
        print(f"analytic peak, N = 8, T5 offloaded: {analytic:.2f} GB (target <= 8 GB)")
    if skipped:
        print(f"skipped (over --budget-s {args.budget_s:.0f}): {', '.join(skipped)}")
    if args.throughput:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import throughput

        throughput.main(["--device", str(device), "--prompts", "4" if args.smoke else "16"]
                        + (["--model", "random-GPT-B"] if not args.smoke else ["--model", "toy-shapes"]))
    out = args.out or (os.path.join(os.environ["OUT"], "gpu_suite.json") if os.environ.get("OUT") else None)
    if out:
        files.write_text(out, json.dumps({"model": model.name, "device": name, "dtype": str(dtype), "runs": rows,
                                         "skipped": skipped, "total_s": time.perf_counter() - began}, indent=1))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
