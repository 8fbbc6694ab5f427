"""Command line: ``python -m scalingar_core generate|list|convert|download|bench``."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .. import files
from ..engine.config import STRATEGIES, RunConfig, SamplingConfig, read_overrides
from ..errors import exit_status
from ..models.download import default_models_dir
from ..models.registry import DEFAULT_MODEL, model_help
from .help import COMPILE_HELP


def _dtype(name: str | None):
    if name in (None, "auto"):
        return None
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def _progress(label: str, done: int, total: int | None = None) -> None:
    if total:
        print(f"\r  {label}: {done / 2**20:.0f} / {total / 2**20:.0f} MiB", end="", file=sys.stderr, flush=True)


def _announce_download(args) -> None:
    """What ``--download`` would fetch and how big it is, before anything is fetched."""
    from ..models import registry
    from ..models.download import describe_plan, download_plan

    plan = download_plan(registry.entry(args.model).files, args.models_dir)
    if plan:
        print(describe_plan(plan, args.models_dir), file=sys.stderr, flush=True)


def _load(args):
    from ..models import registry

    if args.download:
        _announce_download(args)
    return registry.load(args.model, models_dir=args.models_dir, device=args.device, dtype=_dtype(args.dtype),
                         download=args.download, progress=_progress)


def _config(args) -> RunConfig:
    overrides = read_overrides(args.config)
    sampling = overrides.get("sampling", {})
    if not isinstance(sampling, dict):
        SamplingConfig.from_dict(sampling)  # raises the clear error
    flags = dict(num_trajectories=args.n, seed=args.seed, temperature=args.temperature, top_k=args.top_k,
                 top_p=args.top_p, cfg_scale=args.cfg)
    return RunConfig.from_dict({**overrides, "strategy": args.strategy, "sampling": {**flags, **sampling}})


def cmd_generate(args) -> int:
    from ..engine.images import grid_image, to_pil
    from ..engine.loop import generate
    from ..engine.trace import json_safe
    from ..models.device import check_device
    from ..models.protocol import set_compile
    from .candidates import candidate_panels
    from .entropy_map import entropy_panels
    from .plot import plot_trace
    from .verdict import check_candidates, verdict_lines

    # everything the user gave is checked before the model loads (minutes for LlamaGen)
    config = _config(args)
    if args.prompts:  # one image per prompt of a file, split over a launcher's ranks (see shard.py)
        from .shard import Shard, generate_batch, read_prompts

        read_prompts(args.prompts)
        out = files.check_output_dir(args.out, "--out")
        shard = Shard.from_env()
        args.device = shard.device(args.device)
        check_device(args.device)
        model = _load(args)
        set_compile(model, args.compile)
        return generate_batch(model, config, args.prompts, out, shard)
    out = files.check_output_dir(args.out, "--out")
    trace_path = files.check_output_file(args.trace or out / "trace.json", "--trace")
    check_device(args.device)
    model = _load(args)
    set_compile(model, args.compile)
    condition = model.encode(args.prompt)
    start = time.perf_counter()
    result = generate(model, condition, config)
    seconds = time.perf_counter() - start
    files.save_image(to_pil(result.image), out / "image.png")
    report = check_candidates(condition, result)  # the toy checker's verdicts, for prompts it can read
    # the trace before the pictures: a failure drawing them must not lose it
    if report is None:
        result.trace.save_json(trace_path)
    else:
        files.write_text(trace_path, json.dumps(json_safe({**result.trace.to_dict(), "checker": report}),
                                                allow_nan=False))
    # candidates.png's second caption line: the verdict's kind ("passes", "wrong object", ...)
    notes = {c["index"]: c["verdict"].split(":")[0] for c in report["candidates"] if c["checked"]} if report else None
    files.save_image(to_pil(grid_image(candidate_panels(result.images, result.trace, notes))),
                     out / "candidates.png")
    if args.all:
        for rec in result.trace.trajectories:
            if rec.removed_at is None:
                files.save_image(to_pil(result.images[rec.index]), out / f"candidate_{rec.index}.png")
    files.save_image(plot_trace(result.trace), out / "trace_plot.png")
    files.save_image(to_pil(grid_image(entropy_panels(result.decoded, result.trace))), out / "entropy.png")
    removed = [r for r in result.trace.trajectories if r.removed_at is not None]
    print(f"model {args.model}  strategy {config.strategy}  chosen #{result.selected}  "
          f"tokens {result.tokens_generated}  removed {len(removed)} of {len(result.trace.trajectories)}  "
          f"{seconds:.1f} s")
    if report is not None:
        print("\n".join(verdict_lines(report, result.trace.steps)))
    print(f"wrote {out / 'image.png'}, {out / 'candidates.png'}, {out / 'trace_plot.png'}, "
          f"{out / 'entropy.png'}, {trace_path}")
    return 0


def cmd_list(args) -> int:
    from ..models import registry

    for name in registry.names():
        e = registry.entry(name)
        files = ", ".join(f["filename"] for f in e.files) or "bundled"
        print(f"{name:28s} {e.info.description}  [{files}]")
    return 0


def cmd_download(args) -> int:
    from ..models import registry

    entry = registry.entry(args.model)
    if not entry.files:
        where = entry.info.extra.get("weights", "the package")
        print(f"{args.model} is bundled with the pack ({where}): nothing to download")
        return 0
    _announce_download(args)
    registry.load(args.model, models_dir=args.models_dir, device="cpu", download=True, progress=_progress)
    print(f"\n{args.model} is ready in {args.models_dir}")
    return 0


def cmd_convert(args) -> int:
    from ..models.checkpoints import convert_checkpoint

    path = convert_checkpoint(args.src, args.dst)
    print(f"wrote {path}")
    return 0


def cmd_bench(args) -> int:
    from .bench import main as bench_main

    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    return bench_main(rest)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scalingar_core", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def model_choice(sp):
        sp.add_argument("--model", default=DEFAULT_MODEL, help=model_help())
        sp.add_argument("--models-dir", type=Path, default=default_models_dir(),
                        help="where checkpoints live or are downloaded (default: $SCALINGAR_MODELS_DIR or "
                             "~/.cache/scalingar/models)")

    g = sub.add_parser("generate", help="generate an image from --prompt, or one per prompt of a --prompts file",
                       description="Generate with N trajectories and write the chosen image, every candidate, "
                                   "the trace plot, the entropy map and the trace to --out.")
    model_choice(g)
    g.add_argument("--device", default=None, help="torch device (default: the model's choice: cuda when available "
                                                  "for LlamaGen and Janus-Pro, cpu for the toy models)")
    g.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    g.add_argument("--download", action="store_true", help="download missing weights from Hugging Face (the "
                                                           "files and their sizes are listed first)")
    what = g.add_mutually_exclusive_group(required=True)
    what.add_argument("--prompt")
    what.add_argument("--prompts", help="a prompt file (.txt: one per line; .jsonl: {\"prompt\": ...} per line): one "
                                        "image each in OUT/<index>/, shardable with torchrun / accelerate launch")
    g.add_argument("--strategy", default="scalingar", choices=STRATEGIES,
                   help="one of %(choices)s (default %(default)s)")
    g.add_argument("--n", "--num-trajectories", dest="n", type=int, default=8,
                   help="number of trajectories N (under torchrun spell it --num-trajectories: torchrun reads --n as its own)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--temperature", type=float, default=None, help="default: the model's own")
    g.add_argument("--top-k", type=int, default=None, help="default: the model's own (0 = off)")
    g.add_argument("--top-p", type=float, default=None, help="default: the model's own")
    g.add_argument("--cfg", type=float, default=None, help="base CFG scale (default: the model's own)")
    g.add_argument("--config", default=None,
                   help='setting overrides as inline JSON, e.g. \'{"gate": {"quantile": 0.3}, "scheduler": '
                        '{"enabled": false}}\', or the path of a JSON file holding such an object')
    g.add_argument("--out", default="out", help="output folder")
    g.add_argument("--trace", default=None, help="trace JSON path (default: OUT/trace.json)")
    g.add_argument("--all", action="store_true", help="also write every surviving candidate as PNG")
    g.add_argument("--compile", action="store_true", help=COMPILE_HELP)
    g.set_defaults(func=cmd_generate)

    ls = sub.add_parser("list", help="list registered models")
    ls.set_defaults(func=cmd_list)

    dl = sub.add_parser("download", help="download a model's files (listed with their sizes first)")
    model_choice(dl)
    dl.set_defaults(func=cmd_download)

    cv = sub.add_parser("convert", help="write a safetensors copy of an upstream .pt checkpoint")
    cv.add_argument("src")
    cv.add_argument("dst")
    cv.set_defaults(func=cmd_convert)

    b = sub.add_parser("bench", help="benchmark strategies on a prompt set (see `bench --help`)", add_help=False)
    b.add_argument("rest", nargs=argparse.REMAINDER)
    b.set_defaults(func=cmd_bench)
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # the benchmark has its own parser (options pass through untouched)
        argv = ["bench", "--", *argv[1:]]
    args = build_parser().parse_args(argv)
    return exit_status(lambda: args.func(args))
