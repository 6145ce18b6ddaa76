"""`python -m afd.runtime.worker_start CALL`: a stage's worker process, tied to its parent
(afd/runtime/deathsig.py) before the training stack is imported (afd/runtime/workers.py)."""

from __future__ import annotations

import os
import sys

from afd.runtime.deathsig import PARENT, die_with_parent

if __name__ == "__main__":
    die_with_parent()
    os.environ[PARENT] = str(os.getpid())  # the ranks Lightning starts from here die with it
    from pathlib import Path

    from afd.runtime import workers

    workers.start(Path(sys.argv[1]))
