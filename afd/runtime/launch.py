"""Runs a training stage in fresh worker processes when it trains on several processes or with a
distributed strategy (DDP, DeepSpeed).

A stage cannot spawn ranks inside a Hydra job: Lightning's launcher re-runs the command line in
each child (which would re-enter the whole pipeline), and the stage cache holds a lock while an
artifact is built. So the job pickles the stage's call (build function and arguments) to a file
and starts `python -m afd.runtime.worker_start FILE` (afd/runtime/workers.py); Lightning re-runs
*that* command for the other local ranks. Under SLURM with one task per device, task 0
publishes the file and every task runs its own rank of it (afd/runtime/ranks.py). Single-process
plain training stays in the job's process.
"""

from __future__ import annotations

import logging
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from afd.core.config import plain
from afd.reporting.tracking import StageLogger
from afd.runtime import ranks
from afd.runtime.workers import StageCall, remove_call_files, run_worker, swap_loggers, write_call

log = logging.getLogger(__name__)


def _plain(trainer_cfg) -> dict:
    return dict(plain(trainer_cfg))


def processes(trainer_cfg) -> int:
    """Training processes of one stage: devices per node x nodes."""
    cfg = _plain(trainer_cfg)
    return int(cfg.get("devices", 1)) * int(cfg.get("num_nodes", 1))


def needs_workers(trainer_cfg) -> bool:
    """Several processes, or a strategy that sets up a process group (which must not leak into
    the job's process and its later jobs): train in workers."""
    strategy = _plain(trainer_cfg).get("strategy", "auto")
    return processes(trainer_cfg) > 1 or strategy not in ("auto", None)


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
            swap_loggers(args, loggers),
            swap_loggers(kwargs, loggers),
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
        write_call(path, call)
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
            remove_call_files(path)
        return result["metrics"]
