"""`python -m afd.report SWEEP_DIR [--wandb ...]`: a sweep's report offline, and on W&B.

python -m afd.report SWEEP_DIR                  # tables and plots in SWEEP_DIR/report/
python -m afd.report SWEEP_DIR --wandb [--entity E] [--project P]   # and a W&B report
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from afd.reporting.report import write_report
from afd.reporting.summary import collect
from afd.reporting.wandb_report import build_report, project_of


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m afd.report", description="A sweep's report, offline and on W&B."
    )
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--wandb", action="store_true", help="also build and save a W&B report")
    parser.add_argument("--entity", default=None, help="W&B entity (default: your default entity)")
    parser.add_argument(
        "--project", default=None, help="W&B project (default: the jobs' logger.project)"
    )
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = write_report(args.sweep_dir)
    if report is None:
        print(f"no results.json under {args.sweep_dir}", file=sys.stderr)
        return 1
    print(report)
    if args.wandb:
        _, raw = collect(args.sweep_dir)
        project = args.project or project_of(args.sweep_dir) or "afd"
        built = build_report(raw, project=project, entity=args.entity, title=args.title)
        built.save()
        print(built.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
