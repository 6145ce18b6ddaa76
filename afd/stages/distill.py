"""Stage `distill`: fine-tune a policy on chosen (prompt, response) rows, e.g. its own
Best-of-n replies (one round of iterative AfD, afd/iterate.py). Token NLL with the model
options (dtype, LoRA, checkpointing) on the global batch, in worker processes when the
trainer is distributed, as SFT."""

from __future__ import annotations

import random
from pathlib import Path

import lightning as L

from afd.batching import Lengths, LMCollator, training_rows
from afd.finetune import ModelOptions, prepare_for_training
from afd.models import load_policy, load_tokenizer
from afd.modules.optim import OptimConfig
from afd.modules.sft import SFTModule
from afd.training import Schedule, export_trained, final_metrics, fit


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
    options = options or ModelOptions()
    tokenizer = load_tokenizer(base_path, options.trust_remote_code)
    rows, dropped = training_rows(list(rows), tokenizer, lengths)
    random.Random(seed).shuffle(rows)
    L.seed_everything(seed, workers=True, verbose=False)
    model = load_policy(base_path, tokenizer, options.dtype, options.trust_remote_code)
    module = SFTModule(
        prepare_for_training(model, options, "causal_lm"), optim, schedule.total_steps(len(rows))
    )
    trainer = fit(
        module,
        rows,
        [],
        LMCollator(tokenizer, lengths),
        schedule,
        trainer_cfg,
        logger,
        seed,
        progress,
    )
    export_trained(trainer, module, tokenizer, out_dir, options.dtype)
    return {"rows": len(rows), "dropped_long": dropped, **final_metrics(logger)}
