"""Runs a training stage in fresh worker processes when it trains on several processes or with a
distributed strategy (DDP, DeepSpeed).

A stage cannot spawn ranks inside a Hydra job: Lightning's launcher re-runs the command line in
each child (which would re-enter the whole pipeline), and the stage cache holds a lock while an
artifact is built. So the job pickles the stage's call (build function and arguments) to a file
and starts `python -m afd.launch FILE`; Lightning re-runs *that* command for the other local
ranks. Under SLURM with one task per device, task 0 publishes the file and every task runs its
own rank of it (afd/ranks.py). Only global rank 0 writes the artifact and a result file (the
stage's metrics and logged history), which the job reads back and replays into its tracker.
Single-process plain training stays in the job's process.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from afd import ranks
from afd.tracking import StageLogger, Tracker

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


def _plain(trainer_cfg) -> dict:
    if isinstance(trainer_cfg, DictConfig):
        return OmegaConf.to_container(trainer_cfg, resolve=True)
    return dict(trainer_cfg)


def processes(trainer_cfg) -> int:
    """Training processes of one stage: devices per node x nodes."""
    cfg = _plain(trainer_cfg)
    return int(cfg.get("devices", 1)) * int(cfg.get("num_nodes", 1))


def needs_workers(trainer_cfg) -> bool:
    """Several processes, or a strategy that sets up a process group (which must not leak into
    the job's process and its later jobs): train in workers."""
    strategy = _plain(trainer_cfg).get("strategy", "auto")
    return processes(trainer_cfg) > 1 or strategy not in ("auto", None)


@dataclass(frozen=True)
class LoggerSlot:
    """Stands in for a StageLogger in a pickled call; the worker records into a fresh one."""

    prefix: str


@dataclass
class StageCall:
    fn: Callable[..., Any]
    out_dir: Path
    args: tuple
    kwargs: dict
    trainer: dict = field(default_factory=dict)


def _swap_loggers(values, loggers: dict):
    """Replace StageLoggers by slots (parent side) or slots by recording loggers (worker side)."""

    def swap(v):
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
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    # Share this node's cores between its ranks instead of oversubscribing them.
    local = max(1, int(trainer.get("devices", 1)))
    env.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // local)))
    if trainer.get("accelerator") == "cpu":
        env["DS_ACCELERATOR"] = "cpu"  # DeepSpeed picks its accelerator once, at import
    return env


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


def run_worker(path: Path) -> None:
    """Run this process's rank of the call in `path`; raise if any rank of it failed."""
    call = pickle.loads(path.read_bytes())
    cmd = [sys.executable, "-m", "afd.launch", str(path)]
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


class StageLauncher:
    """The pipeline's way to run a training stage's build function, here or in workers."""

    def __init__(self, trainer_cfg):
        self.trainer = _plain(trainer_cfg)

    @property
    def in_workers(self) -> bool:
        """Whether training stages run in worker processes (their arguments are pickled)."""
        return needs_workers(self.trainer)

    def run(self, fn: Callable[..., Any], out_dir: Path, *args, **kwargs):
        """`fn(out_dir, *args, **kwargs)`, in this process or in worker processes."""
        if not self.in_workers:
            return fn(out_dir, *args, **kwargs)
        loggers: dict[str, StageLogger] = {}
        call = StageCall(
            fn,
            Path(out_dir),
            _swap_loggers(args, loggers),
            _swap_loggers(kwargs, loggers),
            self.trainer,
        )
        leader = ranks.leader()
        if leader is not None:
            path = leader.next_call()
        else:
            if ranks.external_ranks():
                raise RuntimeError(
                    "a multi-task SLURM job must run its pipeline inside ranks.leading()"
                )
            path = Path(f"{out_dir}.launch") / "0000.call"
            path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(pickle.dumps(call))
        os.replace(tmp, path)
        log.info(
            "training %s in %d worker process(es): %s",
            fn.__qualname__,
            processes(self.trainer),
            path,
        )
        try:
            run_worker(path)
            result = pickle.loads(path.with_name(path.name + ".result").read_bytes())
        finally:
            if leader is None:
                shutil.rmtree(path.parent, ignore_errors=True)
        for prefix, history in result["history"].items():
            loggers[prefix].replay(history)
        if leader is not None:  # every rank has read it: training is collective
            for done in path.parent.glob(f"{path.name}*"):
                done.unlink(missing_ok=True)
        return result["metrics"]


def _this_rank() -> int:
    """Global rank of this worker, known before Lightning sets anything up."""
    if ranks.external_ranks():
        return ranks.task_rank()
    return int(os.environ.get("LOCAL_RANK", "0"))  # single node: Lightning sets it in children


def main(path: Path) -> None:
    from afd.job import quiet_libraries

    quiet_libraries()  # as in the job: the log keeps to afd's own lines
    call: StageCall = pickle.loads(path.read_bytes())
    rank = _this_rank()
    # Ranks other than 0 write into a scratch copy, so nothing they save can collide with rank
    # 0's artifact; the stages themselves only save on rank 0.
    out_dir = call.out_dir if rank == 0 else Path(tempfile.mkdtemp(prefix=f"afd-rank{rank}-"))
    loggers: dict[str, StageLogger] = {}
    args, kwargs = _swap_loggers(call.args, loggers), _swap_loggers(call.kwargs, loggers)
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


if __name__ == "__main__":
    # The call was pickled against `afd.launch`, not `__main__`: run that module's main.
    from afd import launch

    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"
    )
    launch.main(Path(sys.argv[1]))
