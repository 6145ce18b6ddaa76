"""Self-check of the local SLURM cluster through submitit.

Usage (after ``up.sh``, with ``env.sh`` sourced, inside the project venv)::

    python slurm/localcluster/selfcheck.py [--folder DIR]

Checks that a submitit job returns its result, and that jobs whose Python
process dies hard (``os._exit`` or SIGKILL) make ``job.result()`` raise
instead of hanging. Prints one line per check with its duration; exits
non-zero if a check fails.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time

import submitit


def add(a: int, b: int) -> int:
    return a + b


def hard_exit() -> int:
    os._exit(3)


def sigkill_self() -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", default=None)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument(
        "--results-timeout",
        type=float,
        default=None,
        help="override submitit's Job._results_timeout_s "
        "(seconds it waits for a missing result file)",
    )
    args = parser.parse_args()
    if "SLURM_CONF" not in os.environ:
        print("SLURM_CONF is not set: source the cluster's env.sh first", file=sys.stderr)
        return 2
    folder = args.folder or tempfile.mkdtemp(prefix="afd-submitit-")
    partition = os.environ.get("AFD_SLURM_PARTITION", "debug")
    executor = submitit.AutoExecutor(folder=os.path.join(folder, "%j"))
    executor.update_parameters(slurm_partition=partition, timeout_min=5, cpus_per_task=1)
    if executor.cluster != "slurm":
        print(f"submitit picked cluster {executor.cluster!r}, not slurm", file=sys.stderr)
        return 1

    if args.results_timeout is not None:
        submitit.core.core.Job._results_timeout_s = args.results_timeout
    failures = 0

    t0 = time.monotonic()
    job = executor.submit(add, 2, 3)
    result = job.result()
    dt = time.monotonic() - t0
    ok = result == 5
    failures += not ok
    status = "ok  " if ok else "FAIL"
    print(f"{status} result job {job.job_id}: {result!r} in {dt:.1f}s", flush=True)

    for fn in (hard_exit, sigkill_self):
        t0 = time.monotonic()
        job = executor.submit(fn)
        try:
            value = job.result()
        except Exception as exc:  # submitit raises UncompletedJobError (or FailedJobError)
            dt = time.monotonic() - t0
            ok = dt < args.timeout
            failures += not ok
            state = job.watcher.get_state(job.job_id, mode="cache")
            print(
                f"{'ok  ' if ok else 'FAIL'} {fn.__name__} job {job.job_id}: raised "
                f"{type(exc).__name__} after {dt:.1f}s (sacct state {state})",
                flush=True,
            )
        else:
            failures += 1
            print(
                f"FAIL {fn.__name__} job {job.job_id}: returned {value!r} instead of raising",
                flush=True,
            )

    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
