"""How the jobs of a command ended. A failed job does not stop a sweep: its task returns a
JobFailure (recorded here when it ran in this process, or by the launcher that collected it
from another), the remaining jobs run, the sweep is summarised, and the command then exits
non-zero naming each failure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class JobFailure:
    overrides: list[str]
    error: str  # one line
    kind: str  # input (config or data), error (a bug or a crash)
    output_dir: str


_failures: list[JobFailure] = []


def record(failure: JobFailure) -> JobFailure:
    if failure not in _failures:
        _failures.append(failure)
    return failure


def failures() -> list[JobFailure]:
    return list(_failures)


def clear() -> None:
    _failures.clear()
