"""Pretraining (`pretrain:`, the synthetic task only): a model built from scratch by the model
spec, language-modelled on the task's base corpus.

The result is the initial policy pi0: fluent in the task's format, not aligned. Its tokenizer
is built here and saved with it in HF format.

`seed` holds pi0 fixed across a sweep over the job's `seed`, as a pretrained checkpoint is:
a seed study then varies everything downstream of the base model (SFT's data order, samples,
reward models, policy training) without paying for a new pi0 per seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import lightning as L

from afd.core.config import check_number, fingerprint, qualified_name
from afd.models.batching import LMCollator
from afd.recipes.sft import SFTModule
from afd.runtime.optim import OptimConfig
from afd.runtime.trainer import Schedule, export_trained, final_metrics, fit, training_config
from afd.tasks.data_dir import DataDir


@dataclass
class Pretrain:
    stage: ClassVar[str] = "pretrain"
    reads: ClassVar[tuple[str, ...]] = ("lengths", "trainer", "seed", "spec")
    trains: ClassVar[bool] = True

    schedule: Schedule
    optim: OptimConfig
    seed: int | None = None  # pi0's seed; None: the job's seed

    def __post_init__(self):
        training_config(self, "pretrain")
        if self.seed is not None:
            check_number(self.seed, "pretrain.seed", low=0, integer=True)

    def fingerprint(self) -> dict:
        """Its fields but `seed`: the seed pi0 is built with is the stage context's, which
        the key holds already (so pi0 keeps its key whether `seed` names it or not)."""
        return {
            "_target_": qualified_name(self),
            "schedule": fingerprint(self.schedule),
            "optim": fingerprint(self.optim),
        }

    def build(self, out_dir: Path, ctx, inputs: dict[str, Path]) -> dict:
        """inputs: `corpus`. The model comes from `ctx.spec` (a BuiltFromScratch spec)."""
        data = DataDir(inputs["corpus"])
        rows = [(e.prompt, e.response) for e in data.examples("corpus")]
        L.seed_everything(ctx.seed, workers=True, verbose=False)
        tokenizer = ctx.spec.build_tokenizer(
            data.info.get("vocabulary"), [f"{p} {r}" for p, r in rows]
        )
        model = ctx.spec.build(tokenizer)
        random.Random(ctx.seed).shuffle(rows)
        num_val = max(1, len(rows) // 50)
        val, train = rows[:num_val], rows[num_val:]
        module = SFTModule(model, self.optim, self.schedule.total_steps(len(train)))
        collate = LMCollator(tokenizer, ctx.lengths, train_on_prompt=True)
        trainer = fit(
            module,
            train,
            val,
            collate,
            self.schedule,
            ctx.trainer,
            ctx.logger,
            ctx.seed,
            ctx.progress,
            "pretraining pi0",
        )
        export_trained(trainer, module, tokenizer, out_dir)
        return {
            "parameters": sum(p.numel() for p in model.parameters()),
            **final_metrics(ctx.logger),
        }
