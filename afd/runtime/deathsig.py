"""A worker process dies with the process that started it (the job, or rank 0 for the ranks
Lightning starts): that parent writes its pid in AFD_WORKER_PARENT, and the worker asks Linux
for SIGKILL when it dies (PR_SET_PDEATHSIG), then checks it is still alive. Imports nothing
slow: it runs before the training stack is imported."""

from __future__ import annotations

import os
import sys

PARENT = "AFD_WORKER_PARENT"
PR_SET_PDEATHSIG = 1  # prctl(2)


def die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    expected = os.environ.get(PARENT)
    if expected and os.getppid() != int(expected):  # it died before the request took effect
        os._exit(1)
