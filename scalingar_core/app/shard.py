"""Benchmark-scale runs split over processes that a standard launcher starts, one GPU each:

    torchrun --nproc_per_node 8 -m scalingar_core bench --model ... --device cuda --out DIR
    accelerate launch --num_processes 8 -m scalingar_core generate --prompts prompts.jsonl --out DIR

The launcher sets RANK, WORLD_SIZE and LOCAL_RANK. Work item ``i`` goes to rank ``i mod WORLD_SIZE``; each
rank writes its records with their item index to a part file, the ranks meet at a barrier (torch.distributed,
gloo: it runs on CPUs and GPUs alike and needs nothing but the launcher's MASTER_ADDR/PORT), and rank 0
merges the parts in item order. Every item carries its own seed, so the merged records are the ones a
single process writes, in the same order. Without a launcher (WORLD_SIZE unset) this is a single shard.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .. import files


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "Shard":
        def number(name, default):
            value = os.environ.get(name, default)
            try:
                return int(value)
            except ValueError:
                raise ValueError(f"environment variable {name}={value!r} is not an integer (set by torchrun / "
                                 "accelerate launch)") from None
        shard = cls(number("RANK", 0), number("WORLD_SIZE", 1), number("LOCAL_RANK", 0))
        if not 0 <= shard.rank < shard.world_size:
            raise ValueError(f"RANK={shard.rank} is outside WORLD_SIZE={shard.world_size}")
        return shard

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def take(self, items: Iterable) -> list[tuple[int, object]]:
        """This rank's ``(index, item)`` pairs."""
        return [(i, item) for i, item in enumerate(items) if i % self.world_size == self.rank]

    def device(self, device: str | None) -> str | None:
        """One GPU per process: a bare ``cuda`` becomes ``cuda:LOCAL_RANK`` when sharded."""
        if self.world_size > 1 and device == "cuda":
            return f"cuda:{self.local_rank}"
        return device

    def barrier(self) -> None:
        """Wait for every rank (a no-op for a single shard)."""
        if self.world_size == 1:
            return
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo", rank=self.rank, world_size=self.world_size)
        dist.barrier()

    def close(self) -> None:
        import torch.distributed as dist

        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def part_path(out: Path, name: str, shard: Shard) -> Path:
    return Path(out) / f".{name}.part{shard.rank}-of-{shard.world_size}.jsonl"


def gather(records: list[tuple[int, dict]], out: Path, name: str, shard: Shard) -> list[dict] | None:
    """Every rank's ``(index, record)`` pairs, in index order, on rank 0 (``None`` on the other ranks)."""
    if shard.world_size == 1:
        return [r for _, r in sorted(records, key=lambda p: p[0])]
    part = part_path(Path(out), name, shard)
    files.write_text(part, "".join(json.dumps({"index": i, "record": r}) + "\n" for i, r in records))
    shard.barrier()  # every part is written
    if not shard.is_main:
        return None
    merged = []
    for rank in range(shard.world_size):
        path = part_path(out, name, Shard(rank, shard.world_size))
        merged += [json.loads(line) for line in path.read_text().splitlines()]
        path.unlink()
    return [m["record"] for m in sorted(merged, key=lambda m: m["index"])]
