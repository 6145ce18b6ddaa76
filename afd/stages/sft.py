"""Stage `sft`: forward-KL trajectory matching from pi0 to pi_SFT.

Token NLL on demonstration responses, prompt tokens masked. Demonstrations are trained
on as the policy can produce them (demonstrator-only tokens removed). The model options
(dtype, LoRA, gradient checkpointing) come from the model config; LoRA adapters are merged
into the saved model.
"""

from __future__ import annotations

import random
from pathlib import Path

import lightning as L

from afd.batching import Lengths, LMCollator, training_rows
from afd.finetune import ModelOptions, prepare_for_training, trainable_parameters
from afd.models import load_policy, load_tokenizer
from afd.modules.optim import OptimConfig
from afd.modules.sft import SFTModule
from afd.stages.data import DataDir
from afd.training import Schedule, export_trained, final_metrics, fit


def fine_tune(
    out_dir: Path,
    rows: list[tuple[str, str]],
    base_path: str,
    val_fraction: float,
    schedule: Schedule,
    optim: OptimConfig,
    lengths: Lengths,
    trainer_cfg,
    seed: int,
    logger,
    progress: bool,
    options: ModelOptions,
) -> dict:
    """Token NLL on (prompt, response) rows from the policy at `base_path`, saved to `out_dir`:
    the training of SFT and of the distillation of iterative rounds. A `val_fraction` of the
    shuffled rows is held out for validation. Returns the number of training rows (`rows`),
    rows dropped as too long, trainable parameters and the trainer's final metrics."""
    tokenizer = load_tokenizer(base_path, options.trust_remote_code)
    rows, dropped = training_rows(list(rows), tokenizer, lengths)
    random.Random(seed).shuffle(rows)
    num_val = int(len(rows) * val_fraction)
    val, train = rows[:num_val], rows[num_val:]
    L.seed_everything(seed, workers=True, verbose=False)
    model = load_policy(base_path, tokenizer, options.dtype, options.trust_remote_code)
    model = prepare_for_training(model, options, "causal_lm")
    trainable = trainable_parameters(model)  # before ZeRO-3 partitions the parameters
    module = SFTModule(model, optim, schedule.total_steps(len(train)))
    trainer = fit(
        module,
        train,
        val,
        LMCollator(tokenizer, lengths),
        schedule,
        trainer_cfg,
        logger,
        seed,
        progress,
    )
    export_trained(trainer, module, tokenizer, out_dir, options.dtype)
    return {
        "rows": len(train),
        "dropped_long": dropped,
        "trainable_parameters": trainable,
        **final_metrics(logger),
    }


def build(
    out_dir: Path,
    data_dir: Path,
    init_path: str,
    schedule: Schedule,
    optim: OptimConfig,
    lengths: Lengths,
    trainer_cfg,
    seed: int,
    val_fraction: float = 0.05,
    num_demos: int | None = None,
    logger=None,
    progress=True,
    options: ModelOptions | None = None,
) -> dict:
    data = DataDir(data_dir)
    demos = data.examples("train")[:num_demos] if num_demos else data.examples("train")
    rows = [(e.prompt, data.policy_view(e.response)) for e in demos]
    metrics = fine_tune(
        out_dir,
        rows,
        init_path,
        val_fraction,
        schedule,
        optim,
        lengths,
        trainer_cfg,
        seed,
        logger,
        progress,
        options or ModelOptions(),
    )
    return {"demonstrations": metrics.pop("rows"), **metrics}
