"""Sharding over a launcher's ranks: bench and generate --prompts under torchrun (2 CPU processes, gloo)
write the same results as one process."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scalingar_core.app import bench, cli
from scalingar_core.app.shard import Shard, gather

ROOT = Path(__file__).resolve().parents[1]
TIMING = {"wall_s", "elapsed_s", "seconds", "command", "run_id"}  # times, the command line and the run id differ by nature


def torchrun(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "scalingar_core", *args]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def strip(value):
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def test_take_deals_items_round_robin_and_env_errors(monkeypatch):
    assert Shard(1, 3).take("abcdefg") == [(1, "b"), (4, "e")]
    assert Shard(0, 1).take("ab") == [(0, "a"), (1, "b")]
    assert Shard(1, 2, local_rank=1).device("cuda") == "cuda:1" and Shard().device("cuda") == "cuda"
    assert gather([(2, {"x": 2}), (0, {"x": 0})], Path("."), "r", Shard()) == [{"x": 0}, {"x": 2}]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK=2 is outside WORLD_SIZE=2"):
        Shard.from_env()
    monkeypatch.setenv("RANK", "one")
    with pytest.raises(ValueError, match="RANK='one' is not an integer"):
        Shard.from_env()


@pytest.mark.slow
def test_bench_under_torchrun_merges_to_the_single_process_results(tmp_path):
    args = ["--model", "toy-shapes", "--prompts", "builtin", "--per-category", "1", "--limit", "3",
            "--methods", "plain,scalingar", "--num-trajectories", "2", "--seeds", "1"]
    torchrun("bench", *args, "--out", str(tmp_path / "two"), cwd=tmp_path)
    assert bench.main([*args, "--workers", "1", "--out", str(tmp_path / "one")]) == 0
    two, one = tmp_path / "two", tmp_path / "one"
    assert sorted(p.name for p in two.iterdir()) == ["records.jsonl", "results.json", "results.md", "run.json",
                                                     "tradeoff.png"]
    rec = [[strip(json.loads(line)) for line in (d / "records.jsonl").read_text().splitlines()] for d in (two, one)]
    assert len(rec[0]) == 6 and rec[0] == rec[1]  # same generations, same order
    res = [strip(json.loads((d / "results.json").read_text())) for d in (two, one)]
    assert res[0]["meta"].pop("workers") == 2 and res[1]["meta"].pop("workers") == 1
    assert res[0] == res[1]


@pytest.mark.slow
def test_generate_prompt_file_under_torchrun_writes_what_one_process_writes(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("two red circles\na blue square\nthree green triangles\n")
    args = ["--prompts", str(prompts), "--num-trajectories", "2", "--samples", "2", "--model", "toy-shapes"]
    torchrun("generate", *args, "--out", str(tmp_path / "two"), cwd=tmp_path)
    assert cli.main(["generate", *args, "--out", str(tmp_path / "one")]) == 0
    index = [[strip(json.loads(line)) for line in (tmp_path / d / "index.jsonl").read_text().splitlines()]
             for d in ("two", "one")]
    assert [r["prompt"] for r in index[0]] == ["two red circles", "a blue square", "three green triangles"]
    assert index[0] == index[1]
    for i in range(3):
        for name in ("samples/0000.png", "samples/0001.png", "metadata.jsonl"):
            assert (tmp_path / "two" / f"{i:05d}" / name).read_bytes() == \
                (tmp_path / "one" / f"{i:05d}" / name).read_bytes()
        # other batches round the floats of C differently in the last bits; the decisions are the same
        fates = [[(r["removed_at"], r["selected"]) for r in json.loads(
            (tmp_path / d / f"{i:05d}" / "traces" / "0001.json").read_text())["trajectories"]] for d in ("two", "one")]
        assert fates[0] == fates[1]
    assert not list((tmp_path / "two").glob(".*part*"))  # the parts were merged and removed
