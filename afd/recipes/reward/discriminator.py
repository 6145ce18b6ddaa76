"""The IRL reward model (`reward=init_sft|demo_init|demo_sft`): a classifier of positive vs
negative replies whose logit is the reward.

Init-SFT (pi_SFT samples vs pi0 samples) is the paper's choice: both sides come from the
policy's own action space, so no surface feature of the demonstrations can separate them.
Demo-Init and Demo-SFT use the demonstrations themselves as positives. At the optimum of the
cross-entropy the logit is log p_pos(y|x) - log p_neg(y|x).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from afd.core.config import check_count
from afd.core.errors import ConfigError
from afd.models.batching import ClassifierCollator, training_rows
from afd.models.tokenizers import load_tokenizer
from afd.recipes.reward.common import (
    POLICIES,
    SOURCES,
    check_choice,
    labelled_accuracy,
    labelled_rows,
    split_by_prompt,
    train_classifier,
)
from afd.runtime.optim import OptimConfig
from afd.runtime.trainer import Schedule, final_metrics, training_config


@dataclass
class Discriminator:
    stage: ClassVar[str] = "reward"
    reads: ClassVar[tuple[str, ...]] = ("lengths", "trainer", "seed", "model")
    trains: ClassVar[bool] = True

    name: str
    positive: str
    negative: str
    backbone: str  # the classifier's initial weights: sft | init
    num_prompts: int | None  # training prompts whose samples (or demonstrations) it sees
    samples_per_prompt: int
    val_fraction: float
    schedule: Schedule
    optim: OptimConfig
    seed_offset: int = 0  # ensemble members: a different initialisation and data order ...
    bootstrap: bool = False  # ... and optionally a bootstrap resample of the training rows

    def __post_init__(self):
        training_config(self, "reward")
        check_choice("positive", self.positive, SOURCES)
        check_choice("negative", self.negative, SOURCES)
        if self.positive == self.negative:
            raise ConfigError(f"reward.positive and reward.negative are both {self.positive!r}")
        check_choice("backbone", self.backbone, POLICIES)
        check_count(self.num_prompts, "reward.num_prompts", optional=True)
        check_count(self.samples_per_prompt, "reward.samples_per_prompt")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"reward.val_fraction must be in [0, 1), got {self.val_fraction}")

    def sources(self) -> dict[str, str]:
        return {"positive": self.positive, "negative": self.negative}

    def policies(self) -> dict[str, str]:
        return {"backbone": self.backbone}

    def rows_per_source(self) -> tuple[int | None, int]:
        return self.num_prompts, self.samples_per_prompt

    def build(self, out_dir: Path, ctx, inputs: dict[str, Path]) -> dict:
        backbone = str(inputs["backbone"])
        tokenizer = load_tokenizer(backbone, ctx.model.trust_remote_code)
        rows, dropped = training_rows(labelled_rows(self, inputs), tokenizer, ctx.lengths)
        train, val = split_by_prompt(rows, self.val_fraction, ctx.seed)
        seed = ctx.seed + self.seed_offset  # the split stays shared: members agree on held-out
        if self.bootstrap:
            rng = random.Random(seed)
            train = [train[rng.randrange(len(train))] for _ in train]
        scorer = train_classifier(
            out_dir, self, backbone, train, val, ClassifierCollator, "bce", ctx, seed
        )
        if scorer is None:  # not global rank 0 of a multi-process run
            return {}
        return {
            "accuracy": labelled_accuracy(scorer, val),
            "train_rows": len(train),
            "val_rows": len(val),
            "dropped_long": dropped,
            **final_metrics(ctx.logger),
        }
