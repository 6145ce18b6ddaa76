"""`python -m afd.summary SWEEP_DIR`: see afd/cli/summary.py."""

import sys

from afd.cli.summary import main

if __name__ == "__main__":
    sys.exit(main())
