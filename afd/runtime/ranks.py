"""Ranks started by SLURM: with one task per device, every task of a job runs the same Hydra job.

Task 0 leads: it runs the pipeline and, for each multi-process training stage (and each sample
pool, one shard per task: afd/runtime/sharding.py), publishes the
stage's call in a rendezvous directory on shared storage (under `cache_dir`). Every other task
follows: it runs its own rank of each published call, in order, and nothing else. Outside SLURM,
or with one task, there are no followers and Lightning starts each stage's local ranks itself
(afd/runtime/launch.py). `cluster_environment` tells Lightning which of the two it is in.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)
HEARTBEAT_S = 5.0  # how often the leader proves it is alive
STALE_S = 300.0  # a follower gives up after this long without a heartbeat
POLL_S = 0.5
DONE, ALIVE = "done", "alive"


def slurm_tasks() -> int:
    """Tasks SLURM started for this job step (1 outside SLURM or in an interactive shell)."""
    interactive = os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive")
    if "SLURM_NTASKS" not in os.environ or interactive:
        return 1
    return int(os.environ["SLURM_NTASKS"])


def external_ranks() -> bool:
    """True when SLURM, not Lightning, starts one process per device."""
    return slurm_tasks() > 1


def task_rank() -> int:
    return int(os.environ.get("SLURM_PROCID", "0")) if external_ranks() else 0


def is_follower() -> bool:
    return external_ranks() and task_rank() > 0


def cluster_environment():
    """Lightning's view of who starts the processes. Requeueing is left to submitit (USR2), so
    Lightning's own SLURM auto-requeue (USR1) stays off."""
    from lightning.fabric.plugins.environments import LightningEnvironment, SLURMEnvironment

    return SLURMEnvironment(auto_requeue=False) if external_ranks() else LightningEnvironment()


def rendezvous_dir(cache_dir: str | os.PathLike) -> Path:
    """One directory per job step and restart, on the storage every node shares with the cache."""
    job = os.environ.get("SLURM_JOB_ID", "nojob")
    step = os.environ.get("SLURM_STEP_ID", "0")
    restart = os.environ.get("SLURM_RESTART_COUNT", "0")
    return Path(cache_dir).expanduser().resolve() / ".ranks" / f"{job}.{step}.{restart}"


def call_path(directory: Path, index: int) -> Path:
    return directory / f"{index:04d}.call"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


class Leader:
    """Task 0's side: numbers the calls it publishes, beats a heartbeat, says when it is done."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.published = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="afd-ranks-heartbeat", daemon=True)

    def _beat(self) -> None:
        count = 0
        while not self._stop.is_set():
            _write_atomic(self.directory / ALIVE, str(count))
            count += 1
            self._stop.wait(HEARTBEAT_S)

    def next_call(self) -> Path:
        path = call_path(self.directory, self.published)
        self.published += 1
        return path

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def finish(self) -> None:
        self._stop.set()
        # The count, not the file alone, ends the followers: on a network file system they may
        # see `done` before the last call appears.
        _write_atomic(self.directory / DONE, str(self.published))


_leader: Leader | None = None


def leader() -> Leader | None:
    """The running leader of this process (None unless task 0 of a multi-task job)."""
    return _leader


@contextlib.contextmanager
def leading(cache_dir):
    """Around task 0's job: followers run the calls published inside, and stop at its end."""
    global _leader
    if not external_ranks():
        yield None
        return
    _leader = Leader(rendezvous_dir(cache_dir))
    _leader.start()
    log.info("task 0 of %d: publishing stage calls in %s", slurm_tasks(), _leader.directory)
    try:
        yield _leader
    finally:
        _leader.finish()
        _leader = None
