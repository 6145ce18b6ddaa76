"""Signals that end a job: SIGTERM (a kill, or SLURM at a time limit) and SIGUSR1 (SLURM's
conventional warning before one). Each raises JobTerminated in the main thread, so the job
writes its failure record, keeps every stage it finished in the cache (a rerun resumes from
there) and the command exits with 128 + the signal's number. SIGUSR2 is left to submitit,
which requeues on it."""

from __future__ import annotations

import logging
import signal

from afd.core.errors import JobTerminated

log = logging.getLogger(__name__)
SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


def _raise(signum, frame) -> None:
    log.error("received %s: stopping; finished stages stay cached", signal.Signals(signum).name)
    raise JobTerminated(signum)


def install() -> None:
    """Make SIGTERM and SIGUSR1 raise JobTerminated (Lightning keeps calling this handler from
    its own while it trains)."""
    for signum in SIGNALS:
        signal.signal(signum, _raise)


def terminated_from(error: BaseException) -> JobTerminated | None:
    """The JobTerminated behind `error`: itself, or Lightning's SIGTERMException (a SystemExit
    it raises after a SIGTERM, which would otherwise end the process with exit code 0)."""
    if isinstance(error, JobTerminated):
        return error
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    if isinstance(error, SIGTERMException):
        return JobTerminated(signal.SIGTERM)
    return None
