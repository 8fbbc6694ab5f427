"""Prompt files at benchmark scale: ``generate --prompts FILE --samples K``.

One reader for every prompt file (``generate`` and the bench): JSON lines with a non-empty string
``prompt`` (GenEval's ``evaluation_metadata.jsonl``, our bench files) or plain text, one prompt per line.
Every problem of every line is collected and reported at once with ``file:line``.

The output is GenEval's layout, which its ``evaluate_images.py`` reads (every all-digit subfolder, its
``metadata.jsonl`` read whole with ``json.load``, and every file of ``samples/`` whose name starts with
digits and ``.png``)::

    <out>/<i:05d>/metadata.jsonl         the line's JSON object, one line
    <out>/<i:05d>/samples/<k:04d>.png    sample k of line i: nothing else lives in samples/
    <out>/<i:05d>/traces/<k:04d>.json    our trace of that sample (seed, removals, C)
    <out>/index.jsonl                    one summary line per item
    <out>/scalingar_run.json             the settings a resumed run must share
    <out>/.scalingar.lock                the one process writing into <out> (rank 0 of a launch)

An item folder is built as ``<out>/.<i:05d>.partial`` (not all digits: GenEval skips it) and renamed into
place once its K samples exist, so a folder that GenEval reads is always complete. A rerun skips complete
items and redoes the rest from scratch; it refuses when the recorded settings differ. Sample k of line i
is seeded from (seed, i, k) by :func:`sample_seed` unless the line carries its own ``seed``; the seed is in
the trace, and ``generate --prompt P --seed S`` with it reproduces the sample.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .. import files
from ..engine.config import RunConfig
from ..engine.sampling import stream_uniform
from ..errors import echo
from .output_set import folder_lock


class PromptFileError(ValueError):
    """Bad lines of a prompt file, every one of them, each as ``file:line: problem``."""


@dataclass(frozen=True)
class PromptLine:
    index: int  # the item's number: its folder name
    line: int  # 1-based line in the file, for messages
    entry: dict  # the line's JSON object ({"prompt": text} for plain text files)


def read_prompt_file(path: str | Path) -> list[PromptLine]:
    """Every prompt of ``path``; raises :class:`PromptFileError` listing every bad line."""
    path = Path(path)
    if not path.is_file():
        raise PromptFileError(f"prompt file {path} not found: give a .txt (one prompt per line) or .jsonl file "
                              '(one {"prompt": ...} object per line)')
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PromptFileError(f"{path}: not UTF-8 text: give a .txt or .jsonl prompt file") from None
    as_json = path.suffix in (".jsonl", ".json")
    lines, problems = [], []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        if not as_json:
            lines.append(PromptLine(len(lines), number, {"prompt": raw.strip()}))
            continue
        try:
            entry = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append(f"{path}:{number}: not valid JSON ({exc.msg})")
            continue
        problem = _entry_problem(entry)
        if problem:
            problems.append(f"{path}:{number}: {problem}")
        else:
            lines.append(PromptLine(len(lines) + len(problems), number, entry))
    if problems:
        raise PromptFileError(_listing(problems))
    if not lines:
        raise PromptFileError(f"{path} has no prompts: give one prompt per line (.txt) or one "
                              '{"prompt": ...} object per line (.jsonl)')
    return [PromptLine(i, p.line, p.entry) for i, p in enumerate(lines)]


def _entry_problem(entry) -> str | None:
    if not isinstance(entry, dict):
        return f"each line must be a JSON object with a 'prompt', got {echo(entry)}"
    prompt = entry.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return f"'prompt' must be a non-empty text, got {echo(prompt)}"
    seed = entry.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63):
        return f"'seed' must be a whole number >= 0, got {echo(seed)}"
    return None


def _listing(problems: list[str], most: int = 20) -> str:
    more = f"\n  ... and {len(problems) - most} more" if len(problems) > most else ""
    return (f"{len(problems)} bad line(s); fix them and run again:\n  " + "\n  ".join(problems[:most]) + more)


def encode_all(model, lines: list[PromptLine], path: str | Path) -> list:
    """Each line's condition, checked against the model before anything is decoded (a caption the model
    cannot read is reported with its ``file:line``, every one of them)."""
    conditions, problems = [], []
    for p in lines:
        try:
            conditions.append(model.encode(p.entry["prompt"]))
        except (ValueError, TypeError) as exc:
            problems.append(f"{path}:{p.line}: {exc}")
    if problems:
        raise PromptFileError(_listing(problems))
    return conditions


def sample_seed(seed: int, index: int, sample: int) -> int:
    """The sampling seed of sample ``sample`` of line ``index``: a counter hash of the three, 31 bits."""
    word = stream_uniform(seed, torch.tensor([index]), sample, salt=3)  # 24 random bits
    high = stream_uniform(seed, torch.tensor([index]), sample, salt=4)
    return (int(word.double().mul(1 << 24)) << 7) ^ int(high.double().mul(1 << 7))


def item_seed(line: PromptLine, seed: int, sample: int) -> int:
    own = line.entry.get("seed")
    return sample_seed(own, 0, sample) if own is not None else sample_seed(seed, line.index, sample)


# ---------------------------------------------------------------- the output folder

RUN_FILE = "scalingar_run.json"


def item_folder(out: Path, index: int) -> Path:
    return out / f"{index:05d}"


def partial_folder(out: Path, index: int) -> Path:
    return out / f".{index:05d}.partial"


def complete(out: Path, index: int, samples: int) -> bool:
    folder = item_folder(out, index)
    return (folder / "metadata.jsonl").is_file() and all(
        (folder / "samples" / f"{k:04d}.png").is_file() for k in range(samples))


def check_settings(out: Path, settings: dict) -> None:
    """Record the run's settings, or refuse when ``out`` holds a run with other ones."""
    path = out / RUN_FILE
    if path.is_file():
        try:
            recorded = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            raise PromptFileError(f"{path} is unreadable: it is not a record of ours; use another --out") from None
        differ = [f"{k}={recorded.get(k)!r} (this run: {v!r})" for k, v in settings.items() if recorded.get(k) != v]
        if differ:
            raise PromptFileError(f"{out} holds a run with other settings: {', '.join(differ)}. Resume it with the "
                                  f"same settings, or use another --out")
        return
    files.write_text(path, json.dumps(settings, indent=1) + "\n")


# ---------------------------------------------------------------- the run


def default_max_rows(model, n: int) -> int:
    """Trajectories live at once: on a GPU as many as the model's memory estimate lets fit in 90 % of the
    device's free memory (whole images of N); elsewhere 4 × N."""
    estimate = getattr(model, "memory_estimate", None)
    device = torch.device(model.device)
    if device.type != "cuda" or not callable(estimate):
        return 4 * n
    free, _ = torch.cuda.mem_get_info(device)
    rows = n
    while rows < 64 * n and estimate(rows + n) <= 0.9 * free:
        rows += n
    return rows


def run_prompt_file(model, config: RunConfig, path: str | Path, out: str | Path, samples: int = 1,
                    max_rows: int | None = None, shard=None, model_name: str | None = None, progress: bool = True) -> int:
    """Generate ``samples`` images per line of ``path`` into ``out`` in GenEval's layout, many groups per
    batch (continuous batching), this rank's items only; rank 0 writes ``index.jsonl``."""
    from ..engine.images import to_pil
    from ..engine.loop import decoded, run
    from ..engine.parts import compose
    from ..engine.step import Group
    from .shard import Shard, gather

    shard = shard or Shard.from_env()
    lines = read_prompt_file(path)
    if samples < 1:
        raise PromptFileError(f"--samples must be >= 1, got {samples}")
    n = 1 if compose(config, None, True, tuple(model.grid)).single else config.sampling.num_trajectories
    max_rows = max_rows or default_max_rows(model, n)
    if max_rows < n:
        raise PromptFileError(f"--max-rows {max_rows} is smaller than one image's {n} trajectories: use "
                              f"--max-rows >= {n}")
    settings = {"model": model_name or getattr(model, "name", None), "strategy": config.strategy,
                "num_trajectories": config.sampling.num_trajectories, "samples": samples,
                "seed": config.sampling.seed}
    mine = [p for i, p in shard.take(lines)]
    conditions = encode_all(model, mine, path)  # every caption checked before the first decode
    out = files.check_output_dir(out, "--out")
    with (folder_lock(out) if shard.is_main else contextlib.nullcontext()):
        if shard.is_main:
            check_settings(out, settings)
        shard.barrier()
        todo = [(p, c) for p, c in zip(mine, conditions) if not complete(out, p.index, samples)]
        for p, _ in todo:
            shutil.rmtree(partial_folder(out, p.index), ignore_errors=True)  # incomplete: redo from scratch
        groups = []
        for p, c in todo:
            for k in range(samples):
                seed = item_seed(p, config.sampling.seed, k)
                groups.append(Group(model, c, replace(config, sampling=replace(config.sampling, seed=seed)),
                                    key=(p, k)))
        left = {p.index: samples for p, _ in todo}
        summaries: dict[int, list] = {p.index: [None] * samples for p, _ in todo}
        bar = _bar(len(groups), progress)
        try:
            with torch.inference_mode():
                for group, result in run(model, groups, max_rows=max_rows):
                    p, k = group.key
                    result = decoded(model, result, decode_all=False)
                    work = partial_folder(out, p.index)
                    files.save_image(to_pil(result.image), work / "samples" / f"{k:04d}.png")
                    result.trace.save_json(work / "traces" / f"{k:04d}.json")
                    removed = sum(1 for r in result.trace.trajectories if r.removed_at is not None)
                    summaries[p.index][k] = {"sample": k, "seed": group.config.sampling.seed,
                                             "selected": result.selected, "tokens": result.tokens_generated,
                                             "removed": removed}
                    left[p.index] -= 1
                    if left[p.index] == 0:
                        files.write_text(work / "metadata.jsonl", json.dumps(p.entry) + "\n")
                        files.write_text(work / "summary.json", json.dumps(summaries[p.index]) + "\n")
                        publish(work, item_folder(out, p.index))
                    bar.update(1)
        finally:
            bar.close()
            for p, _ in todo:  # a stopped run leaves its complete items, never a partial folder
                shutil.rmtree(partial_folder(out, p.index), ignore_errors=True)
        records = [(p.index, _index_record(out, p)) for p in mine]
        index = gather(records, out, "index", shard)
        if index is not None:
            files.write_text(out / "index.jsonl", "".join(json.dumps(r) + "\n" for r in index))
            print(f"{len(index)} item(s) × {samples} sample(s) complete under {out} (GenEval's layout); "
                  f"summary in {out / 'index.jsonl'}")
    shard.close()
    return 0


def publish(work: Path, final: Path) -> None:
    """The item appears whole: one rename of its finished folder."""
    os.replace(work, final)


def _index_record(out: Path, p: PromptLine) -> dict:
    folder = item_folder(out, p.index)
    try:
        samples = json.loads((folder / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        samples = None
    return {"index": p.index, "line": p.line, "prompt": p.entry["prompt"], "folder": folder.name,
            "samples": samples}


def _bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="image", disable=not enabled, dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} images [{elapsed}<{remaining}, {rate_fmt}]")
