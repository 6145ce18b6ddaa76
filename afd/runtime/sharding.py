"""A stage split over the devices of a job, one shard each, joined into one artifact.

Two ways, one mechanism: in a multi-task SLURM job (one task per device, any number of nodes)
task 0 publishes the stage's shard call like a training stage's (afd/runtime/ranks.py) and every
task builds its shard in its own process (no worker to start: inference needs no process
group); in a job on one node with several GPUs (`trainer.devices=K`) the job starts one
process per GPU itself. Each builds its shard on its own device; the job waits for
all of them and joins them in order.

Used for sample pools and scores (afd/pipeline/stages/sample.py, score.py), the largest
inference work of a job: Best-of-n pools are sampled and scored on every device of the job.
`AFD_INFERENCE_DEVICES` (a comma-separated list: `cuda:0,cuda:2`; `cpu,cpu` in tests) names
the devices of one node explicitly.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from afd.core.protocols import ShardedStage
from afd.models.devices import visible_devices_value
from afd.runtime import ranks
from afd.runtime.workers import (
    StageCall,
    remove_call_files,
    run_here,
    swap_loggers,
    worker_env,
    write_call,
)

log = logging.getLogger(__name__)
DONE = ".done"


DEVICES = "AFD_INFERENCE_DEVICES"


def local_devices(trainer: dict) -> list[str]:
    """The devices of this node a job's inference spreads over, one shard process each:
    those `AFD_INFERENCE_DEVICES` lists; else the one `AFD_INFERENCE_DEVICE` names; else the
    job's GPUs (`trainer.devices` of those visible: an int, or -1/"auto" for all); else the CPU,
    which one process already computes on with every core."""
    listed = os.environ.get(DEVICES)
    if listed:
        return [d.strip() for d in listed.split(",") if d.strip()]
    if os.environ.get("AFD_INFERENCE_DEVICE"):
        return [os.environ["AFD_INFERENCE_DEVICE"]]
    import torch

    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if visible == 0:
        return ["cpu"]
    wanted = trainer.get("devices", 1)
    count = visible if wanted in (-1, "-1", "auto") else min(visible, int(wanted))
    return [f"cuda:{i}" for i in range(max(1, count))]


def stage_shards(trainer: dict, spans_devices: bool = False) -> int:
    """How many shards a shardable stage of this job splits into: its SLURM tasks when they
    follow task 0 (one per device); else one per local device, unless the stage's engine
    spreads over the devices itself (`spans_devices`: vLLM's data parallel)."""
    if ranks.leader() is not None:
        return ranks.slurm_tasks()
    return 1 if spans_devices else len(local_devices(trainer))


def contiguous_shard(items: list, shard: int, shards: int) -> tuple[int, list]:
    """Shard `shard` of `shards` contiguous, in-order parts of `items`: its first index and
    its items (the last parts may be short or empty)."""
    size = math.ceil(len(items) / shards)
    return shard * size, items[shard * size : (shard + 1) * size]


def shard_folder(shard_dir: Path, shard: int) -> Path:
    """Where shard `shard` of a stage is written."""
    return shard_dir / f"{shard:04d}"


@contextmanager
def task_device():
    """This task's node-local GPU for the inference in its block (SLURM may show every task all
    of a node's GPUs): `AFD_INFERENCE_DEVICE` names it unless it names a device already."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if os.environ.get("AFD_INFERENCE_DEVICE") or count < 2:
        yield
        return
    local = int(os.environ.get("SLURM_LOCALID", "0"))
    os.environ["AFD_INFERENCE_DEVICE"] = f"cuda:{local % count}"
    try:
        yield
    finally:
        os.environ.pop("AFD_INFERENCE_DEVICE", None)


def this_shard() -> int:
    """The shard this process builds: its SLURM task, or its local rank on one node."""
    if ranks.external_ranks():
        return ranks.task_rank()
    return int(os.environ.get("LOCAL_RANK", "0"))


def build_shard(out_dir: Path, stage: ShardedStage, shard_dir: Path, ctx, inputs) -> dict:
    """One task's part (in the task's own process, or in a process per device): its shard,
    then a marker that it is complete."""
    shard = this_shard()
    start = time.perf_counter()
    with task_device():
        stage.build_shard(shard_dir, ctx, inputs, shard)
    seconds = time.perf_counter() - start
    shard_folder(shard_dir, shard).with_suffix(DONE).write_text(f"{seconds:.3f}")
    log.info("task %d: built shard %d of %d in %s", shard, shard, stage.shards, shard_dir)
    return {}


def first_shard_error(call: Path) -> tuple[str, str] | None:
    """(shard, last line of its traceback) of the first shard that recorded an error beside
    the call file; None when none did."""
    errors = sorted(call.parent.glob(f"{call.name}.error.*"))
    if not errors:
        return None
    return errors[0].name.rsplit(".", 1)[-1], errors[0].read_text().strip().splitlines()[-1]


def wait_for_shards(shard_dir: Path, shards: int, call: Path, poll_s: float = 0.5) -> None:
    """Until every task marked its shard done; raises with the first task's error instead."""
    while True:
        error = first_shard_error(call)
        if error:
            raise RuntimeError(f"task {error[0]} failed its shard: {error[1]}")
        if all(shard_folder(shard_dir, i).with_suffix(DONE).exists() for i in range(shards)):
            return
        time.sleep(poll_s)


def run_sharded(stage: ShardedStage, out_dir: Path, ctx, inputs: dict[str, Path], trainer: dict):
    """Build `stage` over all tasks of a multi-task job (from task 0), or over the devices of
    this node; returns its metrics."""
    shard_dir = Path(f"{out_dir}.shards")
    shutil.rmtree(shard_dir, ignore_errors=True)
    shard_dir.mkdir(parents=True)
    loggers: dict = {}
    args = swap_loggers((stage, shard_dir, ctx, inputs), loggers)
    call = StageCall(build_shard, Path(out_dir), args, {}, trainer, fresh_processes=False)
    leader = ranks.leader()
    if leader is not None:
        path = leader.next_call()
    else:
        path = Path(f"{out_dir}.launch") / "shards.call"
        path.parent.mkdir(parents=True, exist_ok=True)
    write_call(path, call)
    where = f"{stage.shards} tasks" if leader is not None else f"{stage.shards} local devices"
    log.info("%s: one shard on each of %s: %s", type(stage).__name__, where, path)
    try:
        if leader is not None:
            run_here(path, call)  # task 0's own shard
            wait_for_shards(shard_dir, stage.shards, path)
        else:
            run_on_devices(path, local_devices(trainer)[: stage.shards], trainer)
        done = [shard_folder(shard_dir, i).with_suffix(DONE) for i in range(stage.shards)]
        seconds = [float(marker.read_text()) for marker in done]
        metrics = stage.gather(out_dir, shard_dir)
    finally:
        shutil.rmtree(shard_dir, ignore_errors=True)
        remove_call_files(path)
        if leader is None:
            shutil.rmtree(path.parent, ignore_errors=True)
    return {**metrics, "shard_seconds": seconds}


def device_env(device: str) -> dict[str, str]:
    """The environment that gives a shard process `device` alone: one visible GPU (of those
    this process sees) as its `cuda`, or the CPU."""
    if not device.startswith("cuda"):
        return {"AFD_INFERENCE_DEVICE": device}
    return {"CUDA_VISIBLE_DEVICES": visible_devices_value(device), "AFD_INFERENCE_DEVICE": "cuda"}


def run_on_devices(path: Path, devices: list[str], trainer: dict) -> None:
    """The call at `path` in one process per device, side by side; raises with the first
    shard's error once all have ended."""
    base = worker_env({**trainer, "devices": len(devices)})
    base.pop(DEVICES, None)
    procs = []
    for shard, device in enumerate(devices):
        env = {**base, **device_env(device), "LOCAL_RANK": str(shard)}
        cmd = [sys.executable, "-m", "afd.runtime.worker_start", str(path)]
        procs.append(subprocess.Popen(cmd, env=env))
    codes = [proc.wait() for proc in procs]
    error = first_shard_error(path)
    if error or any(codes):
        shard, last = error or (codes.index(max(codes)), "no traceback")
        raise RuntimeError(
            f"the process of shard {shard} failed (exit codes {codes}): {last}; full output "
            f"above, tracebacks in {path.parent}"
        )
