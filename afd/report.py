"""`python -m afd.report SWEEP_DIR [--wandb ...]`: see afd/cli/report.py."""

import sys

from afd.cli.report import main

if __name__ == "__main__":
    sys.exit(main())
