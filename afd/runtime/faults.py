"""Deliberate hard failures, for testing that sweeps survive jobs that die without a word.

A Hydra callback:
    +hydra.callbacks.crash._target_=afd.runtime.faults.CrashJob +hydra.callbacks.crash.when.n=4
kills the process of every job whose config matches `when` as the job starts. No exception, no
cleanup, no result file: what an OOM kill or a segfault leaves behind. Test-only; with Hydra's
basic launcher the jobs run inside the sweep's own process, which it would kill.

And inside a stage: with AFD_FAULT_KILL=STAGE (e.g. `sft`), the process SIGKILLs itself the
first time a STAGE artifact has been built in its temporary directory and is not yet
published: the worst moment for a torn artifact (`kill_inside`, called by the graph).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
HOW = ("sigkill", "exit")


class CrashJob(Callback):
    def __init__(self, when: dict[str, Any], how: str = "sigkill", exit_code: int = 3):
        if how not in HOW:
            raise ValueError(f"hydra.callbacks.crash.how must be one of {HOW}, got {how!r}")
        self.when = dict(OmegaConf.to_container(when) if isinstance(when, DictConfig) else when)
        self.how, self.exit_code = how, exit_code

    def matches(self, config: DictConfig) -> bool:
        return all(OmegaConf.select(config, key) == value for key, value in self.when.items())

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.matches(config):
            return
        log.error(
            "afd.runtime.faults.CrashJob: killing this job (%s) as asked by %s", self.how, self.when
        )
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        if self.how == "exit":
            os._exit(self.exit_code)
        os.kill(os.getpid(), signal.SIGKILL)


KILL_INSIDE = "AFD_FAULT_KILL"


def kill_inside(stage: str) -> None:
    """SIGKILL this process if AFD_FAULT_KILL names `stage` (test-only; see the module)."""
    if os.environ.get(KILL_INSIDE) == stage:
        log.error("afd fault injection: killing this job inside stage %s", stage)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os.kill(os.getpid(), signal.SIGKILL)
