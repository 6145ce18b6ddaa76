"""Stage `distill`: fine-tune a policy on chosen (prompt, response) rows, e.g. its own
Best-of-n replies (one round of iterative AfD, afd/iterate.py). Token NLL with the model
options (dtype, LoRA, checkpointing) on the global batch, in worker processes when the
trainer is distributed, as SFT."""

from __future__ import annotations

from pathlib import Path

from afd.batching import Lengths
from afd.finetune import ModelOptions
from afd.modules.optim import OptimConfig
from afd.stages.sft import fine_tune
from afd.training import Schedule


def build(
    out_dir: Path,
    rows: list[tuple[str, str]],
    base_path: str,
    schedule: Schedule,
    optim: OptimConfig,
    lengths: Lengths,
    trainer_cfg,
    seed: int,
    logger=None,
    progress=True,
    options: ModelOptions | None = None,
) -> dict:
    # Every row trains: the rows are the policy's own chosen replies, none held out.
    return fine_tune(
        out_dir,
        rows,
        base_path,
        0.0,
        schedule,
        optim,
        lengths,
        trainer_cfg,
        seed,
        logger,
        progress,
        options or ModelOptions(),
    )
