"""Progress a researcher can follow in a log file: with no terminal attached (a SLURM job, a
redirected run) progress bars draw nothing useful, so training and sampling log one line at a
steady interval instead: step, share done, the latest loss, time spent and time left."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("afd.progress")
EVERY_S = 30.0


def terminal_attached() -> bool:
    return sys.stderr.isatty()


class Ticker:
    """Logs `what: i/total (p%) ...` when `every_s` seconds have passed since the last line."""

    def __init__(self, what: str, total: int, every_s: float = EVERY_S):
        self.what, self.total, self.every_s = what, max(1, total), every_s
        self.start = self.last = time.monotonic()

    def tick(self, done: int, extra: str = "") -> None:
        now = time.monotonic()
        if now - self.last < self.every_s and done < self.total:
            return
        self.last = now
        spent = now - self.start
        left = spent / max(done, 1) * (self.total - done)
        log.info(
            "%s: %d/%d (%.0f%%)%s, %.0f s so far, about %.0f s left",
            self.what,
            done,
            self.total,
            100 * done / self.total,
            extra,
            spent,
            left,
        )
