"""A follower task's whole job under SLURM (one task per device): run its rank of every
training stage (in worker processes), and its shard of every sharded stage (sample pools and
their scores, in this process), that task 0 publishes, in order, and nothing else
(afd/runtime/ranks.py, afd/runtime/sharding.py)."""

from __future__ import annotations

import logging
import time

from afd.runtime.ranks import (
    ALIVE,
    DONE,
    POLL_S,
    STALE_S,
    call_path,
    rendezvous_dir,
    slurm_tasks,
    task_rank,
)
from afd.runtime.workers import run_call

log = logging.getLogger(__name__)


def follow(cache_dir, stale_s: float = STALE_S) -> int:
    """A follower task's whole job: run its rank of every call task 0 publishes, until done.

    Returns the number of calls run. Raises if task 0 stops beating before it is done (it died
    without cleaning up), so the follower does not hold its allocation forever.
    """
    directory = rendezvous_dir(cache_dir)
    log.info("task %d of %d: following %s", task_rank(), slurm_tasks(), directory)
    index, beat, last_change = 0, None, time.monotonic()
    while True:
        call = call_path(directory, index)
        if call.exists():
            run_call(call)
            index += 1
            beat, last_change = None, time.monotonic()
            continue
        done = directory / DONE
        if done.exists() and int(done.read_text() or 0) <= index:
            log.info("task %d: task 0 is done after %d published calls", task_rank(), index)
            return index
        alive = directory / ALIVE
        current = alive.read_text() if alive.exists() else None
        if current != beat:
            beat, last_change = current, time.monotonic()
        elif time.monotonic() - last_change > stale_s:
            raise RuntimeError(
                f"task {task_rank()}: task 0 stopped its heartbeat in {directory} "
                f"{stale_s:.0f} s ago without finishing; giving up"
            )
        time.sleep(POLL_S)
