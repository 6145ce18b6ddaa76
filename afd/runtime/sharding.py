"""A stage split over the tasks of a multi-task SLURM job (one task per device): task 0
publishes the stage's shard call like a training stage's (afd/runtime/ranks.py), every task
builds its shard on its own device, and task 0 waits for all of them and joins them.

Used for sample pools and scores (afd/pipeline/stages/sample.py, score.py), the largest
inference work of a job: a job on K nodes samples and scores its Best-of-n pools on all of
their devices, into one artifact each.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from pathlib import Path

from afd.core.protocols import ShardedStage
from afd.runtime import ranks
from afd.runtime.workers import (
    StageCall,
    remove_call_files,
    run_worker,
    swap_loggers,
    write_call,
)

log = logging.getLogger(__name__)
DONE = ".done"


def task_shards() -> int:
    """How many shards a shardable stage of this job splits into: its SLURM tasks when they
    follow task 0 (one per device), else 1."""
    return ranks.slurm_tasks() if ranks.leader() is not None else 1


def contiguous_shard(items: list, shard: int, shards: int) -> tuple[int, list]:
    """Shard `shard` of `shards` contiguous, in-order parts of `items`: its first index and
    its items (the last parts may be short or empty)."""
    size = math.ceil(len(items) / shards)
    return shard * size, items[shard * size : (shard + 1) * size]


def shard_folder(shard_dir: Path, shard: int) -> Path:
    """Where shard `shard` of a stage is written."""
    return shard_dir / f"{shard:04d}"


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
    seconds = time.perf_counter() - start
    shard_folder(shard_dir, shard).with_suffix(DONE).write_text(f"{seconds:.3f}")
    log.info("task %d: built shard %d of %d in %s", shard, shard, stage.shards, shard_dir)
    return {}


def wait_for_shards(shard_dir: Path, shards: int, call: Path, poll_s: float = 0.5) -> None:
    """Until every task marked its shard done; raises with the first task's error instead."""
    while True:
        errors = sorted(call.parent.glob(f"{call.name}.error.*"))
        if errors:
            last = errors[0].read_text().strip().splitlines()[-1]
            raise RuntimeError(f"task {errors[0].name.rsplit('.', 1)[-1]} failed its shard: {last}")
        if all(shard_folder(shard_dir, i).with_suffix(DONE).exists() for i in range(shards)):
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
    write_call(path, call)
    log.info("%s: one shard on each of %d tasks: %s", type(stage).__name__, stage.shards, path)
    try:
        run_worker(path)  # task 0's own shard
        wait_for_shards(shard_dir, stage.shards, path)
        done = [shard_folder(shard_dir, i).with_suffix(DONE) for i in range(stage.shards)]
        seconds = [float(marker.read_text()) for marker in done]
        metrics = stage.gather(out_dir, shard_dir)
    finally:
        shutil.rmtree(shard_dir, ignore_errors=True)
        remove_call_files(path)
    return {**metrics, "shard_seconds": seconds}
