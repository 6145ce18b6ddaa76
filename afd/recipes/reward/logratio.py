"""`reward=logratio`: log pi_SFT(y|x) - log pi0(y|x), the closed-form optimum of the Init-SFT
classifier, with no training. Its held-out accuracy is measured on the same positives and
negatives an Init-SFT classifier would see."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from afd.core.config import check_count
from afd.core.errors import ConfigError
from afd.models.scoring import load_scorer, save_scorer_spec
from afd.recipes.reward.common import (
    POLICIES,
    check_choice,
    labelled_accuracy,
    labelled_rows,
    scorer_spec,
    split_by_prompt,
)


@dataclass
class LogRatio:
    stage: ClassVar[str] = "reward"
    reads: ClassVar[tuple[str, ...]] = ("lengths", "seed", "load")
    trains: ClassVar[bool] = False

    name: str
    numerator: str
    denominator: str
    num_prompts: int | None
    samples_per_prompt: int
    val_fraction: float

    def __post_init__(self):
        check_choice("numerator", self.numerator, POLICIES)
        check_choice("denominator", self.denominator, POLICIES)
        check_count(self.num_prompts, "reward.num_prompts", optional=True)
        check_count(self.samples_per_prompt, "reward.samples_per_prompt")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"reward.val_fraction must be in [0, 1), got {self.val_fraction}")

    def sources(self) -> dict[str, str]:
        return {"positive": self.numerator, "negative": self.denominator}

    def policies(self) -> dict[str, str]:
        return {"numerator": self.numerator, "denominator": self.denominator}

    def rows_per_source(self) -> tuple[int | None, int]:
        return self.num_prompts, self.samples_per_prompt

    def build(self, out_dir: Path, ctx, inputs: dict[str, Path]) -> dict:
        spec = scorer_spec(
            "afd.models.scoring.LogRatioScorer",
            ctx.lengths,
            ctx.load,
            numerator=str(inputs["numerator"]),
            denominator=str(inputs["denominator"]),
        )
        save_scorer_spec(out_dir, spec)
        _, val = split_by_prompt(labelled_rows(self, inputs), self.val_fraction, ctx.seed)
        return {"accuracy": labelled_accuracy(load_scorer(out_dir), val), "val_rows": len(val)}
