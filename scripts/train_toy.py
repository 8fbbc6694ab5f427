"""Train a bundled toy model reproducibly on CPU and write its weights and model card.

    nice -n 5 .venv/bin/python scripts/train_toy.py --world toy-shapes-256   # the default model (see its card)
    nice -n 5 .venv/bin/python scripts/train_toy.py --world toy-shapes --steps 900 --batch 64   # the 64-token one
    .venv/bin/python scripts/train_toy.py --steps 20 --eval-per-category 4 --out /tmp/toy      # smoke run

Every training sample is a fresh render of a caption drawn by ``prompts.sample_train_spec`` (held-out
colour–shape pairs never appear in multi-object captions). 10 % of rows see the learned null caption, so
classifier-free guidance works. At the end the script measures plain-sampling accuracy on the builtin
evaluation prompts with the exact checker (first sample, mean, oracle best-of-n, most-confident pick) at a
few CFG scales, and writes ``NAME.safetensors`` and the card ``NAME.md`` into ``--out``.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scalingar_core.models.toy import evaluate, prompts, render, tokenizer  # noqa: E402
from scalingar_core.models.toy.model import (  # noqa: E402
    MODEL_DEFAULTS,
    WEIGHTS_DIR,
    ToyNet,
    default_config,
    save_weights,
)
from scalingar_core.models.toy.render import LARGE, WORLDS  # noqa: E402
from scalingar_core.models.toy.text import tokenize  # noqa: E402


def make_batch(rng: np.random.Generator, batch: int, world) -> tuple[torch.Tensor, torch.Tensor]:
    specs = [prompts.sample_train_spec(rng) for _ in range(batch)]
    images = np.stack([render.render(render.sample_scene(s, rng, world)) for s in specs])
    ids = tokenize([prompts.caption(s) for s in specs])
    return ids, torch.from_numpy(tokenizer.encode(images, world))


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))  # cosine down to 10 %


# Per-world training schedule (what produced the bundled weights). The 256-token world costs ~4.5× more per
# image, so it sees fewer images in smaller batches within the ~45 min budget on a 2-core machine.
SCHEDULES = {
    "toy-shapes": {"steps": 900, "batch": 64, "lr": 1e-3, "warmup": 100, "log_every": 50, "probe_every": 250,
                   "eval_per_category": 100, "val_images": 256},
    "toy-shapes-256": {"steps": 850, "batch": 32, "lr": 1.5e-3, "warmup": 60, "log_every": 50, "probe_every": 200,
                       "eval_per_category": 60, "val_images": 96},
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", default=LARGE.name, choices=sorted(WORLDS), help="which toy world/model to train")
    ap.add_argument("--steps", type=int, help="default: the world's schedule (SCHEDULES)")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--drop", type=float, default=0.1, help="condition dropout probability (CFG training)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a shared 2-core machine, OpenMP spin-waiting made 2 threads "
                         "several times slower per step than 1; 2 is faster only when the machine is idle)")
    ap.add_argument("--log-every", type=int)
    ap.add_argument("--probe-every", type=int,
                    help="steps between quick accuracy probes (20 prompts per category, 2 samples; 0 = off)")
    ap.add_argument("--eval-per-category", type=int)
    ap.add_argument("--val-images", type=int, help="size of the fixed validation batch")
    ap.add_argument("--eval-n", type=int, default=8, help="samples per eval prompt (oracle best-of-n)")
    ap.add_argument("--eval-cfg", default="1.0,1.5,2.5", help="CFG scales to measure (first is the default)")
    ap.add_argument("--eval-seed", type=int, default=0)
    ap.add_argument("--out", default=str(WEIGHTS_DIR), help="directory for the weights and the model card")
    args = ap.parse_args(argv)
    for key, value in SCHEDULES[args.world].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    world = WORLDS[args.world]
    defaults = MODEL_DEFAULTS[world.name]

    t_start = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(args.seed)

    config = default_config(world)
    net = ToyNet(config)
    n_params = sum(p.numel() for p in net.parameters())
    print(f"{world.name}: {n_params / 1e6:.2f}M parameters, vocab {tokenizer.vocab_size(world)}, "
          f"{args.steps} steps × batch {args.batch}, seed {args.seed}", flush=True)
    decay = [p for n, p in net.named_parameters() if p.dim() >= 2 and "null" not in n]
    no_decay = [p for n, p in net.named_parameters() if p.dim() < 2 or "null" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95))

    # A fixed validation batch (its own seed) to print a loss that is comparable across steps.
    val_ids, val_tokens = make_batch(np.random.default_rng(args.seed + 10_000), args.val_images, world)
    probe = prompts.builtin_eval(20, seed=99)
    losses, t0, c0, running = [], time.time(), time.process_time(), []
    net.train()
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        ids, tokens = make_batch(rng, args.batch, world)
        drop = torch.from_numpy(rng.random(args.batch) < args.drop)
        logits = net(ids, tokens, drop)
        loss = F.cross_entropy(logits.flatten(0, 1), tokens.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        running.append(loss.item())
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            with torch.no_grad():
                net.eval()
                val = F.cross_entropy(net(val_ids, val_tokens, torch.zeros(len(val_ids), dtype=torch.bool))
                                      .flatten(0, 1), val_tokens.flatten()).item()
                net.train()
            rec = {"step": step + 1, "train_loss": float(np.mean(running)), "val_loss": val,
                   "elapsed_s": round(time.time() - t0, 1), "cpu_s": round(time.process_time() - c0, 1)}
            losses.append(rec)
            running = []
            print(json.dumps(rec), flush=True)
        if args.probe_every and (step + 1) % args.probe_every == 0 and step + 1 < args.steps:
            net.eval()
            net.sync_null()
            codes, _ = evaluate.sample(net, [e["prompt"] for e in probe], 2, cfg_scale=defaults.cfg_scale,
                                       seed=args.eval_seed)
            res = evaluate.score(probe, codes)
            net.train()
            print(json.dumps({"step": step + 1, "probe_first_sample": res["first_sample"],
                              "probe_oracle_best_of_2": res["oracle_best_of_n"],
                              "per_group": {k: round(v, 2) for k, v in res["per_group_first_sample"].items()}}),
                  flush=True)
    train_s, train_cpu_s = time.time() - t0, time.process_time() - c0

    net.eval()
    net.sync_null()
    entries = prompts.builtin_eval(args.eval_per_category)
    texts = [e["prompt"] for e in entries]
    evals = {}
    for cfg in [float(c) for c in args.eval_cfg.split(",")]:
        t1 = time.time()
        codes, conf = evaluate.sample(net, texts, args.eval_n, cfg_scale=cfg, seed=args.eval_seed)
        res = evaluate.score(entries, codes, conf)
        res["wall_s"] = round(time.time() - t1, 1)
        evals[str(cfg)] = res
        print(json.dumps({"cfg": cfg, **{k: v for k, v in res.items() if not k.startswith("per_group")}}),
              flush=True)
        print("  first sample per group:", json.dumps({k: round(v, 3) for k, v in
                                                        res["per_group_first_sample"].items()}), flush=True)

    out = Path(args.out)
    command = " ".join(["python scripts/train_toy.py", *(argv if argv is not None else sys.argv[1:])]).strip()
    meta = {"train": {"command": command, "seed": args.seed, "steps": args.steps, "batch": args.batch,
                      "lr": args.lr, "drop": args.drop, "train_s": round(train_s, 1),
                      "final_val_loss": losses[-1]["val_loss"], "params": n_params},
            "eval": {cfg: {k: v for k, v in r.items()} for cfg, r in evals.items()}, "losses": losses}
    total_s = time.time() - t_start
    meta["train"]["total_s"] = round(total_s, 1)
    meta["train"]["train_cpu_s"] = round(train_cpu_s, 1)
    path = save_weights(net, out / f"{world.name}.safetensors", extra_meta=meta)
    card = out / f"{world.name}.md"
    card.write_text(model_card(args, world, command, n_params, meta["train"], losses, evals, entries))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) and {card}; training took "
          f"{train_s / 60:.1f} min, {total_s / 60:.1f} min in all", flush=True)
    return 0


def model_card(args, world, command, n_params, train, losses, evals, entries) -> str:
    cfg = default_config(world)
    g = cfg["gpt"]
    defaults = MODEL_DEFAULTS[world.name]
    lines = [
        f"# {world.name} — model card", "",
        "A tiny text-to-image LlamaGen GPT (`scalingar_core/models/gpt.py`, t2i caption-prefix path) over",
        f"the procedural {world.image_size}×{world.image_size} shapes world of `scalingar_core/models/toy/` (objects of "
        f"{'/'.join(map(str, world.sizes))} px). For testing and",
        "benchmarking ScalingAR offline; not a general image model. Captions: see `scalingar_core/models/toy/prompts.py`.",
        "",
        "## Architecture", "",
        f"- GPT: dim {g['dim']}, {g['n_layer']} layers, {g['n_head']} heads, prefix {g['cls_token_num']} caption "
        f"slots (caption_dim {g['caption_dim']}), {g['block_size']} image tokens ({world.grid}×{world.grid}, raster), vocab "
        f"{g['vocab_size']}; {n_params / 1e6:.2f}M parameters in total with the caption encoder.",
        f"- Caption encoder: word + slot embeddings, one transformer layer (width {cfg['caption']['width']}), "
        "learned null caption (copied into `uncond_embedding`).",
        "- Tokenizer: lossless 4×4 patch codebook enumerated from the renderer (no training).",
        f"- Sampling defaults: CFG {defaults.cfg_scale}, temperature {defaults.temperature}, top-k "
        f"{defaults.top_k} (off), top-p {defaults.top_p}.", "",
        "## Training", "",
        f"- Command: `nice -n 5 .venv/bin/python {command.removeprefix('python ')}` (seed {args.seed}, "
        f"{args.threads} thread{'s' if args.threads > 1 else ''}, deterministic algorithms)",
        f"- {args.steps} steps × batch {args.batch} fresh renders, AdamW lr {args.lr} (warm-up {args.warmup}, "
        f"cosine to 10 %), weight decay {args.weight_decay}, condition dropout {args.drop}",
        f"- Wall time: training {train['train_s'] / 60:.1f} min ({train['train_cpu_s'] / 60:.1f} CPU-min), "
        f"everything including the evaluation below {train['total_s'] / 60:.1f} min, on a shared 2-core "
        f"{platform.machine()} machine (other jobs were running), PyTorch {torch.__version__}", "",
        "| step | train loss | val loss (fixed batch) |", "|---|---|---|",
    ]
    keep = losses if len(losses) <= 12 else [losses[i] for i in np.linspace(0, len(losses) - 1, 12).astype(int)]
    lines += [f"| {r['step']} | {r['train_loss']:.4f} | {r['val_loss']:.4f} |" for r in keep]
    n_cat = {c: sum(e["category"] == c for e in entries) for c in prompts.CATEGORIES}
    lines += ["", "## Measured accuracy (exact checker, builtin evaluation prompts)", "",
              f"{len(entries)} prompts ({', '.join(f'{c} {k}' for c, k in n_cat.items())}; "
              f"{prompts.EVAL_HELD_OUT_PER_CATEGORY}% of each multi-object category uses held-out pairs), "
              f"{args.eval_n} plain samples each (temperature 1, no top-k/top-p), seed {args.eval_seed}. "
              "'most confident' picks the sample with the highest mean token confidence "
              "1 − (0.5·H/log V + 0.5·(1 − margin)); its AUROC is within prompts with mixed outcomes.", "",
              "| CFG | first sample | mean of n | oracle best-of-n | most confident | within-prompt AUROC |",
              "|---|---|---|---|---|---|"]
    for c, r in evals.items():
        au = r.get("within_prompt_auroc_mean_conf")
        lines.append(f"| {c} | {r['first_sample']:.3f} | {r['mean_of_n']:.3f} | {r['oracle_best_of_n']:.3f} | "
                     f"{r.get('most_confident_pick', float('nan')):.3f} | {'—' if au is None else f'{au:.3f}'} |")
    groups = list(next(iter(evals.values()))["per_group_first_sample"])
    lines += ["", "First sample / mean of n / oracle best-of-n accuracy per group (tier:held_out = multi-object "
              "prompts with a held-out colour–shape pair):", "",
              "| group | " + " | ".join(f"CFG {c}" for c in evals) + " |",
              "|---|" + "---|" * len(evals)]
    for gname in groups:
        lines.append(f"| {gname} | " + " | ".join(
            f"{r['per_group_first_sample'][gname]:.2f} / {r['per_group_mean_of_n'][gname]:.2f} / "
            f"{r['per_group_oracle'][gname]:.2f}"
            for r in evals.values()) + " |")
    lines += ["", "Regenerate: run the command above from the repository root; it rewrites this card and the",
              "weights (same seed and thread count → same weights on the same machine/PyTorch build).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
