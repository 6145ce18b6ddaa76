"""The worker side of a training stage run in its own processes (afd/runtime/launch.py).

`python -m afd.runtime.worker_start CALL` runs this process's rank of a pickled stage call;
Lightning re-runs that same command for the other local ranks. Only global rank 0 writes the
artifact and then, last, a result file (the stage's metrics and logged history) that the job
reads back and replays into its tracker.

A call that needs no process group (a shard of a sample pool or of its scores,
afd/runtime/sharding.py) runs in the task's own process instead: `run_call` picks the way.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from afd.core.context import StageContext
from afd.reporting.tracking import StageLogger, Tracker
from afd.runtime import ranks
from afd.runtime.deathsig import PARENT
from afd.runtime.logs import FORMAT, quiet_libraries

log = logging.getLogger(__name__)
# Distributed variables of an outer launch; each worker gets its own from Lightning or SLURM.
DIST_ENV = (
    "LOCAL_RANK",
    "RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "NODE_RANK",
    "GROUP_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
)


@dataclass(frozen=True)
class LoggerSlot:
    """Stands in for a StageLogger in a pickled call; the worker records into a fresh one."""

    prefix: str


@dataclass
class StageCall:
    """A stage's build call, pickled for its worker processes or for follower tasks.

    `fresh_processes`: training needs processes of its own (Lightning sets up a process group
    and the device in them); inference does not, and a worker's start-up (seconds of imports,
    per task, per pool) would cost more than a small shard itself.
    """

    fn: Callable[..., Any]
    out_dir: Path
    args: tuple
    kwargs: dict
    trainer: dict
    fresh_processes: bool = True


def swap_loggers(values, loggers: dict):
    """Replace StageLoggers by slots (parent side) or slots by recording loggers (worker side),
    also the logger a StageContext carries."""

    def swap(v):
        if isinstance(v, StageContext):
            return v.with_logger(swap(v.logger))
        if isinstance(v, StageLogger):
            loggers[v.prefix] = v
            return LoggerSlot(v.prefix)
        if isinstance(v, LoggerSlot):
            loggers[v.prefix] = StageLogger(Tracker(), v.prefix)
            return loggers[v.prefix]
        return v

    if isinstance(values, dict):
        return {k: swap(v) for k, v in values.items()}
    return tuple(swap(v) for v in values)


def worker_env(trainer: dict) -> dict[str, str]:
    """The environment of a stage's worker processes."""
    env = {k: v for k, v in os.environ.items() if k not in DIST_ENV}
    env[PARENT] = str(os.getpid())  # the worker dies with this process
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    # Share this node's cores between its ranks instead of oversubscribing them.
    local = max(1, int(trainer.get("devices", 1)))
    env.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // local)))
    if trainer.get("accelerator") == "cpu":
        env["DS_ACCELERATOR"] = "cpu"  # DeepSpeed picks its accelerator once, at import
    return env


def write_call(path: Path, call: StageCall) -> None:
    """Publish `call` at `path` whole: a reader (a worker, a follower task) never sees half."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(pickle.dumps(call))
    os.replace(tmp, path)


def remove_call_files(path: Path) -> None:
    """The call file and what its workers wrote beside it (result, errors)."""
    for done in path.parent.glob(f"{path.name}*"):
        done.unlink(missing_ok=True)


def leave_process_group() -> None:
    """Tear down the process group of a finished training, on every rank.

    Lightning leaves a gloo (CPU) or DeepSpeed process group for the interpreter's exit to
    destroy, where its native threads (and rank 0's rendezvous store server) can be torn down
    while still running: the process then aborts ("terminate called without an active
    exception") after all of its work is done. The barrier first keeps any rank from closing
    its connections while another still talks to it. Collective: every rank calls it.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def run_call(path: Path) -> None:
    """This task's part of the call in `path`: in fresh worker processes, or here."""
    call: StageCall = pickle.loads(path.read_bytes())
    if call.fresh_processes:
        run_worker(path)
    else:
        run_here(path, call)


def run_here(path: Path, call: StageCall) -> None:
    """This task's part of `call` in this process, its memory given back after it; an error is
    recorded beside the call, as a worker records it, for task 0 to name, and raised."""
    from afd.models.devices import release_memory

    args, kwargs = swap_loggers(call.args, {}), swap_loggers(call.kwargs, {})
    try:
        call.fn(call.out_dir, *args, **kwargs)
    except BaseException:
        rank = _this_rank()
        path.with_name(f"{path.name}.error.{rank}").write_text(traceback.format_exc())
        raise
    finally:
        release_memory()


def run_worker(path: Path) -> None:
    """Run this process's rank of the call in `path`; raise if any rank of it failed."""
    call = pickle.loads(path.read_bytes())
    cmd = [sys.executable, "-m", "afd.runtime.worker_start", str(path)]
    proc = subprocess.run(cmd, env=worker_env(call.trainer))
    errors = sorted(path.parent.glob(f"{path.name}.error.*"))
    finished = path.with_name(path.name + ".result").exists()
    if proc.returncode != 0 and finished and not errors:
        # Rank 0 wrote the artifact and then, last, its result, and no rank recorded an error:
        # a death after that (at interpreter exit) costs nothing, so the work is kept.
        log.warning(
            "worker processes of %s exited with code %d after finishing the stage; its "
            "artifact and result are complete and kept",
            call.fn.__qualname__,
            proc.returncode,
        )
    elif proc.returncode != 0:
        last = (
            errors[-1].read_text().strip().splitlines()[-1] if errors else "no traceback recorded"
        )
        raise RuntimeError(
            f"training stage {call.fn.__qualname__} failed in its worker processes (exit code "
            f"{proc.returncode}): {last}; full output above, tracebacks in {path.parent}"
        )


def _this_rank() -> int:
    """Global rank of this worker, known before Lightning sets anything up."""
    if ranks.external_ranks():
        return ranks.task_rank()
    return int(os.environ.get("LOCAL_RANK", "0"))  # single node: Lightning sets it in children


def main(path: Path) -> None:
    quiet_libraries()  # as in the job: the log keeps to afd's own lines
    call: StageCall = pickle.loads(path.read_bytes())
    rank = _this_rank()
    # Ranks other than 0 write into a scratch copy, so nothing they save can collide with rank
    # 0's artifact; the stages themselves only save on rank 0.
    out_dir = call.out_dir if rank == 0 else Path(tempfile.mkdtemp(prefix=f"afd-rank{rank}-"))
    loggers: dict[str, StageLogger] = {}
    args, kwargs = swap_loggers(call.args, loggers), swap_loggers(call.kwargs, loggers)
    try:
        metrics = call.fn(out_dir, *args, **kwargs)
    except BaseException:
        path.with_name(f"{path.name}.error.{rank}").write_text(traceback.format_exc())
        raise
    finally:
        if rank != 0:
            shutil.rmtree(out_dir, ignore_errors=True)
    if rank == 0:
        result = {"metrics": metrics, "history": {p: lg.history for p, lg in loggers.items()}}
        tmp = path.with_name(f".{path.name}.result.tmp")
        tmp.write_bytes(pickle.dumps(result))
        os.replace(tmp, path.with_name(path.name + ".result"))
    leave_process_group()


def start(path: Path) -> None:
    """A worker's whole life, once it is tied to its parent (afd/runtime/deathsig.py)."""
    logging.basicConfig(level=logging.INFO, format=FORMAT)
    main(path)
