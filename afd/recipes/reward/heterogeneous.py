"""`reward=irl_bt`: different reward models combined, e.g. the IRL reward from demonstrations
with a Bradley-Terry reward from preference pairs where those exist, as a weighted sum of
their scores, each standardised by its mean and spread on the same reference rows (the IRL
classifier's positives and negatives), so neither dominates by its scale alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from afd.core.errors import ConfigError
from afd.models.scoring import load_scorer, save_scorer_spec
from afd.recipes.reward.common import accuracy, held_out_labelled, labelled_rows
from afd.recipes.reward.ensemble import parts_of

STATS = "standardisation.json"


@dataclass
class Heterogeneous:
    stage: ClassVar[str] = "reward"
    reads: ClassVar[tuple[str, ...]] = ("seed",)
    trains: ClassVar[bool] = False  # its parts train, as their own reward artifacts

    name: str
    components: dict  # part name -> reward recipe config
    weights: dict  # part name -> weight of its standardised score
    reference: str  # the part whose positives/negatives standardise every part

    def __post_init__(self):
        self.components = dict(self.components)
        self.weights = {k: float(v) for k, v in dict(self.weights).items()}
        if set(self.weights) != set(self.components) or not self.components:
            raise ConfigError(
                f"reward.weights must name exactly the parts {sorted(self.components)}, "
                f"got {sorted(self.weights)}"
            )
        if (
            self.reference not in self.components
            or "positive" not in self.components[self.reference]
        ):
            raise ConfigError(
                f"reward.reference must name a discriminator part, got {self.reference!r}"
            )

    def parts(self) -> dict:
        return self.components

    def sources(self) -> dict[str, str]:
        ref = self.components[self.reference]
        return {"positive": ref["positive"], "negative": ref["negative"]}

    def policies(self) -> dict[str, str]:
        return {}

    def rows_per_source(self) -> tuple[int | None, int]:
        ref = self.components[self.reference]
        return ref.get("num_prompts"), ref.get("samples_per_prompt", 1)

    def build(self, out_dir: Path, ctx, inputs: dict[str, Path]) -> dict:
        reference = [{"prompt": p, "response": r} for p, r, _ in labelled_rows(self, inputs)]
        stats = {}
        for name, path in parts_of(inputs).items():
            s = load_scorer(path).score(reference)
            stats[name] = {
                "path": path,
                "mean": float(s.mean()),
                "std": float(s.std() or 1.0),
                "weight": self.weights[name],
            }
        (Path(out_dir) / STATS).write_text(json.dumps(stats, indent=2))
        save_scorer_spec(
            out_dir,
            {"_target_": "afd.recipes.reward.heterogeneous.WeightedScorer", "parts": stats},
        )
        val_fraction = self.components[self.reference].get("val_fraction", 0.1)
        rows, targets = held_out_labelled(self, inputs, val_fraction, ctx.seed)
        combined = WeightedScorer(stats).score(rows)
        return {
            "accuracy": accuracy(combined, targets),
            "reference_rows": len(reference),
            "val_rows": len(rows),
            **{
                f"part_{n}_accuracy": accuracy(
                    load_scorer(p["path"]).score(rows) - p["mean"], targets
                )
                for n, p in stats.items()
            },
        }


class WeightedScorer:
    """sum over parts of weight * (score - mean) / std."""

    def __init__(self, parts: dict):
        self.parts = {
            name: (load_scorer(p["path"]), p["mean"], p["std"], p["weight"])
            for name, p in parts.items()
        }

    def score(self, rows) -> np.ndarray:
        return sum(
            w * (scorer.score(rows) - mean) / std for scorer, mean, std, w in self.parts.values()
        )
