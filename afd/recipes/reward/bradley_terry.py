"""`reward=bt`, the preference baseline: a Bradley-Terry reward model on (chosen, rejected)
pairs, -log sigma(r(x, y_w) - r(x, y_l)). Held-out accuracy is the share of held-out pairs
it orders correctly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from afd.core.config import check_count
from afd.core.errors import ConfigError
from afd.models.batching import PairCollator, training_rows
from afd.models.tokenizers import load_tokenizer
from afd.recipes.reward.common import (
    POLICIES,
    as_rows,
    check_choice,
    source_rows,
    split_by_prompt,
    train_classifier,
)
from afd.runtime.optim import OptimConfig
from afd.runtime.trainer import Schedule, final_metrics, training_config


@dataclass
class BradleyTerry:
    stage: ClassVar[str] = "reward"
    reads: ClassVar[tuple[str, ...]] = ("lengths", "trainer", "seed", "model")
    trains: ClassVar[bool] = True

    name: str
    backbone: str
    num_pairs: int | None  # None: every pair of the task
    val_fraction: float
    schedule: Schedule
    optim: OptimConfig

    def __post_init__(self):
        training_config(self, "reward")
        check_choice("backbone", self.backbone, POLICIES)
        check_count(self.num_pairs, "reward.num_pairs", optional=True)
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"reward.val_fraction must be in [0, 1), got {self.val_fraction}")

    def sources(self) -> dict[str, str]:
        return {"pairs": "pairs"}

    def policies(self) -> dict[str, str]:
        return {"backbone": self.backbone}

    def rows_per_source(self) -> tuple[int | None, int]:
        return None, 1  # no sampled source

    def build(self, out_dir: Path, ctx, inputs: dict[str, Path]) -> dict:
        pairs = source_rows("pairs", inputs["pairs"], None)[: self.num_pairs]
        backbone = str(inputs["backbone"])
        rows, dropped = training_rows(
            [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs],
            load_tokenizer(backbone, ctx.model.trust_remote_code),
            ctx.lengths,
            (1, 2),
        )
        train, val = split_by_prompt(rows, self.val_fraction, ctx.seed)
        scorer = train_classifier(
            out_dir, self, backbone, train, val, PairCollator, "bt", ctx, ctx.seed
        )
        if scorer is None:  # not global rank 0 of a multi-process run
            return {}
        chosen = scorer.score(as_rows(val, ("prompt", "response")))
        rejected = scorer.score(as_rows([(p, r) for p, _, r in val], ("prompt", "response")))
        return {
            "accuracy": float((chosen > rejected).mean()) if len(val) else float("nan"),
            "train_pairs": len(train),
            "val_pairs": len(val),
            "dropped_long": dropped,
            **final_metrics(ctx.logger),
        }
