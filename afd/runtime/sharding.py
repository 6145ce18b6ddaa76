"""A stage split over the tasks of a multi-task SLURM job (one task per device): task 0
publishes the stage's shard call like a training stage's (afd/runtime/ranks.py), every task
builds its shard on its own device, and task 0 waits for all of them and joins them.

Used for sample pools (afd/pipeline/stages/sample.py), the largest inference work of a job: a
job on K nodes samples its Best-of-n pools on all of their devices, into one artifact.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import time
from pathlib import Path

from afd.core.protocols import ShardedStage
from afd.runtime import ranks
from afd.runtime.workers import StageCall, run_worker, swap_loggers

log = logging.getLogger(__name__)
DONE = ".done"


def task_shards() -> int:
    """How many shards a shardable stage of this job splits into: its SLURM tasks when they
    follow task 0 (one per device), else 1."""
    return ranks.slurm_tasks() if ranks.leader() is not None else 1


def own_device() -> None:
    """Give this task its node-local device: SLURM may show every task all of a node's GPUs."""
    local = int(os.environ.get("SLURM_LOCALID", "0"))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        devices = visible.split(",")
    else:
        import torch

        devices = [str(i) for i in range(torch.cuda.device_count())]
    if len(devices) > 1:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices[local % len(devices)]


def build_shard(out_dir: Path, stage: ShardedStage, shard_dir: Path, ctx, inputs) -> dict:
    """One task's part (run in its worker): its shard, then a marker that it is complete."""
    shard = ranks.task_rank()
    own_device()
    start = time.perf_counter()
    stage.build_shard(shard_dir, ctx, inputs, shard)
    (shard_dir / f"{shard:04d}{DONE}").write_text(f"{time.perf_counter() - start:.3f}")
    log.info("task %d: built shard %d of %d in %s", shard, shard, stage.shards, shard_dir)
    return {}


def wait_for_shards(shard_dir: Path, shards: int, call: Path, poll_s: float = 0.5) -> None:
    """Until every task marked its shard done; raises with the first task's error instead."""
    while True:
        errors = sorted(call.parent.glob(f"{call.name}.error.*"))
        if errors:
            last = errors[0].read_text().strip().splitlines()[-1]
            raise RuntimeError(f"task {errors[0].name.rsplit('.', 1)[-1]} failed its shard: {last}")
        if all((shard_dir / f"{i:04d}{DONE}").exists() for i in range(shards)):
            return
        time.sleep(poll_s)


def run_sharded(stage: ShardedStage, out_dir: Path, ctx, inputs: dict[str, Path], trainer: dict):
    """Build `stage` over all tasks of the job (task 0's side); returns its metrics."""
    leader = ranks.leader()
    if leader is None:
        raise RuntimeError("a sharded stage runs only in task 0 of a multi-task job")
    shard_dir = Path(f"{out_dir}.shards")
    shutil.rmtree(shard_dir, ignore_errors=True)
    shard_dir.mkdir(parents=True)
    loggers: dict = {}
    args = swap_loggers((stage, shard_dir, ctx, inputs), loggers)
    call = StageCall(build_shard, Path(out_dir), args, {}, trainer)
    path = leader.next_call()
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(pickle.dumps(call))
    os.replace(tmp, path)
    log.info("%s: one shard on each of %d tasks: %s", type(stage).__name__, stage.shards, path)
    try:
        run_worker(path)  # task 0's own shard
        wait_for_shards(shard_dir, stage.shards, path)
        seconds = [float((shard_dir / f"{i:04d}{DONE}").read_text()) for i in range(stage.shards)]
        metrics = stage.gather(out_dir, shard_dir)
    finally:
        shutil.rmtree(shard_dir, ignore_errors=True)
        for done in path.parent.glob(f"{path.name}*"):
            done.unlink(missing_ok=True)
    return {**metrics, "shard_seconds": seconds}
