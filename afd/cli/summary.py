"""`python -m afd.summary SWEEP_DIR`: rebuild a sweep's summary table and plot."""

from __future__ import annotations

import sys

from afd.reporting.summary import write_summary


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m afd.summary SWEEP_DIR", file=sys.stderr)
        return 2
    print(write_summary(argv[0]) or "no results found")
    return 0


if __name__ == "__main__":
    sys.exit(main())
