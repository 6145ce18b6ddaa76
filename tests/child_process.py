"""Runs a test's training in a fresh Python process.

Lightning and DeepSpeed set distributed environment variables and a process group that would
leak into the rest of the test session, so trainings with a strategy run in a child.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

from afd.runtime.workers import DIST_ENV

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def run_in_child(module: str, call: str, cwd: Path, finished: Path, **env: str) -> None:
    """Run `from <module> import *; <call>` in a child started in `cwd`, without the session's
    distributed variables and with `env` added.

    The child must create `finished` as its last act. As the pipeline's launcher does, a death
    at interpreter exit after that (a native thread aborting at teardown, seen on a loaded
    machine) keeps the run, with a warning; a child that never got there fails the test.
    """
    script = cwd / "run.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.path[:0] = [{str(REPO)!r}, {str(TESTS)!r}]
        from {module} import *
        {call}
    """)
    )
    child_env = {k: v for k, v in os.environ.items() if k not in DIST_ENV} | env
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = proc.stdout[-3000:] + proc.stderr[-5000:]
    assert finished.exists(), output
    if proc.returncode != 0:
        warnings.warn(
            f"{call} exited with {proc.returncode} after finishing: {output}", stacklevel=2
        )
