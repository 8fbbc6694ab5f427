"""Command line: ``python -m scalingar_core generate|list|convert|download|bench``."""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from .. import files
from ..engine.config import STRATEGIES, RunConfig, SamplingConfig, read_overrides
from ..errors import echo, exit_status
from ..models.download import default_models_dir
from ..models.registry import DEFAULT_MODEL, model_help
from .help import COMPILE_HELP
from .output_set import MANIFEST, OutputSet, folder_lock


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
                         download=args.download, progress=_progress, image_size=getattr(args, "image_size", None))


FLAG_DEFAULTS = {"num_trajectories": 8, "seed": 0}  # what --n and --seed mean when neither they nor --config say


def _config(args) -> RunConfig:
    overrides = read_overrides(args.config)
    sampling = overrides.get("sampling", {})
    if not isinstance(sampling, dict):
        SamplingConfig.from_dict(sampling)  # raises the clear error
    flags = {"--n": ("num_trajectories", args.n), "--seed": ("seed", args.seed),
             "--temperature": ("temperature", args.temperature), "--top-k": ("top_k", args.top_k),
             "--top-p": ("top_p", args.top_p), "--cfg": ("cfg_scale", args.cfg)}
    merged = {**FLAG_DEFAULTS, **sampling}
    for flag, (name, value) in flags.items():
        if value is None:  # not given: --config's value, else the default
            continue
        if name in sampling and sampling[name] != value:
            raise ValueError(f"{flag} {value} conflicts with --config sampling.{name}={echo(sampling[name])}: give "
                             f"the setting once")
        merged[name] = value
    return RunConfig.from_dict({**overrides, "strategy": args.strategy, "sampling": merged})


# what one generate writes into --out besides the trace (candidate_<i>.png too with --all)
OUTPUTS = ("image.png", "candidates.png", "trace_plot.png", "entropy.png", MANIFEST)


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
    if args.prompts:  # K images per line of a file, many per batch, split over a launcher's ranks
        from .prompt_files import read_prompt_file, run_prompt_file
        from .shard import Shard

        read_prompt_file(args.prompts)  # the file's own problems, before the model loads
        out = files.check_output_dir(args.out, "--out")
        shard = Shard.from_env()
        args.device = shard.device(args.device)
        check_device(args.device)
        model = _load(args)
        set_compile(model, args.compile)
        return run_prompt_file(model, config, args.prompts, out, samples=args.samples, max_rows=args.max_rows,
                               shard=shard, model_name=args.model)
    out = files.check_output_dir(args.out, "--out")
    trace_path = files.check_output_file(args.trace or out / "trace.json", "--trace")
    for name in OUTPUTS:  # a device or FIFO where an output goes is refused before the model loads
        files.check_target(out / name)
    check_device(args.device)
    with folder_lock(out), OutputSet(out, "generate", command=args.command_line) as outputs:
        model = _load(args)
        set_compile(model, args.compile)
        condition = model.encode(args.prompt)
        start = time.perf_counter()
        result = generate(model, condition, config)
        seconds = time.perf_counter() - start
        report = check_candidates(condition, result)  # the toy checker's verdicts, for prompts it can read
        # every file is staged, then all are moved into place together (see output_set.py)
        outputs.save_image(to_pil(result.image), "image.png")
        trace = result.trace.to_dict() if report is None else {**result.trace.to_dict(), "checker": report}
        outputs.write_json(trace_path, json_safe(trace))
        # candidates.png's second caption line: the verdict's kind ("passes", "wrong object", ...)
        notes = {c["index"]: c["verdict"].split(":")[0] for c in report["candidates"] if c["checked"]} if report else None
        outputs.save_image(to_pil(grid_image(candidate_panels(result.images, result.trace, notes))), "candidates.png")
        if args.all:
            for rec in result.trace.trajectories:
                if rec.removed_at is None:
                    outputs.save_image(to_pil(result.images[rec.index]), f"candidate_{rec.index}.png")
        outputs.save_image(plot_trace(result.trace), "trace_plot.png")
        outputs.save_image(to_pil(grid_image(entropy_panels(result.decoded, result.trace))), "entropy.png")
        outputs.commit()
    removed = [r for r in result.trace.trajectories if r.removed_at is not None]
    print(f"model {args.model}  strategy {config.strategy}  chosen #{result.selected}  "
          f"tokens {result.tokens_generated}  removed {len(removed)} of {len(result.trace.trajectories)}  "
          f"{seconds:.1f} s  run {outputs.run_id}")
    if report is not None:
        print("\n".join(verdict_lines(report, result.trace.steps)))
    print(f"wrote {out / 'image.png'}, {out / 'candidates.png'}, {out / 'trace_plot.png'}, "
          f"{out / 'entropy.png'}, {trace_path}, {out / MANIFEST}")
    return 0


def cmd_list(args) -> int:
    from ..models import registry

    for name in registry.names():
        e = registry.entry(name)
        files = ", ".join(f"{f['repo_id']} snapshot" if f.get("patterns") else f["filename"] for f in e.files)
        files = files or "bundled"
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
    if Path(args.src).suffix == ".jit":  # a Cosmos decoder.jit (SimpleAR): read safely, never torch.jit.load
        from ..models.cosmos.decoder import convert_decoder as convert
    else:
        from ..models.checkpoints import convert_checkpoint as convert
    path = convert(args.src, args.dst)
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

    g = sub.add_parser("generate", help="generate an image from --prompt, or K images per line of a --prompts file",
                       description="Generate with N trajectories and write the chosen image, every candidate, "
                                   "the trace plot, the entropy map and the trace to --out; or, with --prompts, "
                                   "K images per prompt line in GenEval's layout.")
    model_choice(g)
    g.add_argument("--device", default=None, help="torch device (default: the model's choice: cuda when available "
                                                  "for LlamaGen, Janus-Pro and SimpleAR, cpu for the toy models)")
    g.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    g.add_argument("--download", action="store_true", help="download missing weights from Hugging Face (the "
                                                           "files and their sizes are listed first)")
    g.add_argument("--image-size", type=int, default=None,
                   help="image size in px for models that decode several (SimpleAR: 256, 512, 768, 1024; "
                        "default 1024); others have their own fixed size")
    what = g.add_mutually_exclusive_group(required=True)
    what.add_argument("--prompt")
    what.add_argument("--prompts", help="a prompt file (.txt: one per line; .jsonl: {\"prompt\": ...} per line, e.g. "
                                        "GenEval's metadata): --samples images per line in GenEval's layout "
                                        "OUT/<i:05d>/samples/<k:04d>.png; resumable; shardable with torchrun")
    g.add_argument("--samples", type=int, default=1, help="images per prompt line with --prompts (GenEval: 4)")
    g.add_argument("--max-rows", type=int, default=None,
                   help="with --prompts: trajectories decoded at once, across images (default: 4 x N on a CPU, "
                        "what fits in memory on a GPU); pruned rows are refilled by the next images")
    g.add_argument("--strategy", default="scalingar", choices=STRATEGIES,
                   help="one of %(choices)s (default %(default)s)")
    g.add_argument("--n", "--num-trajectories", dest="n", type=int, default=None,
                   help="number of trajectories N (default 8; under torchrun spell it --num-trajectories: torchrun "
                        "reads --n as its own)")
    g.add_argument("--seed", type=int, default=None, help="default 0")
    g.add_argument("--temperature", type=float, default=None, help="default: the model's own")
    g.add_argument("--top-k", type=int, default=None, help="default: the model's own (0 = off)")
    g.add_argument("--top-p", type=float, default=None, help="default: the model's own")
    g.add_argument("--cfg", type=float, default=None, help="base CFG scale (default: the model's own)")
    g.add_argument("--config", default=None,
                   help='setting overrides as inline JSON, e.g. \'{"gate": {"quantile": 0.3}, "scheduler": '
                        '{"enabled": false}}\', or the path of a JSON file holding such an object; a flag such as '
                        '--seed that disagrees with it is an error')
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

    cv = sub.add_parser("convert", help="write a safetensors copy of an upstream .pt checkpoint or Cosmos decoder.jit")
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
    args.command_line = "python -m scalingar_core " + shlex.join(argv)
    return exit_status(lambda: args.func(args))
