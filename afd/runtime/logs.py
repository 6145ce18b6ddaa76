"""What a job's log shows: afd's own lines, not the libraries' banners and progress bars."""

from __future__ import annotations

import logging

FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"


def quiet_libraries() -> None:
    """Keep the job log to afd's own lines: hardware banners, load reports and weight
    loading bars from Lightning and transformers say nothing a researcher needs."""
    import transformers

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
