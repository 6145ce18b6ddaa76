"""`reward=ensemble|ensemble_conservative`: K reward models of one member recipe (the IRL
discriminator by default) over seeds or bootstrap resamples, scored as mean - penalty * std
across members: penalty 0 is the plain ensemble mean, penalty > 0 a conservative
(pessimistic) reward. Members are parts, each its own cached reward artifact, so a sweep over
the penalty trains them once; member 0 is the plain recipe's model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from afd.core.errors import ConfigError
from afd.models.scoring import load_scorer, save_scorer_spec
from afd.recipes.reward.common import accuracy, held_out_labelled

RESAMPLE = ("seed", "bootstrap")


def parts_of(inputs: dict[str, Path]) -> dict[str, str]:
    """Part name -> artifact path, from the `part/<name>` inputs."""
    return {k.split("/", 1)[1]: str(v) for k, v in inputs.items() if k.startswith("part/")}


@dataclass
class Ensemble:
    stage: ClassVar[str] = "reward"
    reads: ClassVar[tuple[str, ...]] = ("seed",)
    trains: ClassVar[bool] = False  # its members train, as their own reward artifacts

    name: str
    member: DictConfig  # a reward recipe config
    size: int
    resample: str  # seed: new initialisation and data order; bootstrap: also resampled rows
    penalty: float  # score = mean - penalty * std over members

    def __post_init__(self):
        if self.resample not in RESAMPLE:
            raise ConfigError(f"reward.resample must be one of {RESAMPLE}, got {self.resample!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 2:
            raise ConfigError(f"reward.size must be an integer >= 2, got {self.size!r}")
        if not self.penalty >= 0:
            raise ConfigError(f"reward.penalty must be >= 0, got {self.penalty}")
        if "_target_" not in self.member:
            raise ConfigError("reward.member must be a reward recipe with a _target_")
        if isinstance(self.member, dict):
            self.member = OmegaConf.create(self.member)

    def parts(self) -> dict:
        out = {}
        for i in range(self.size):
            member = self.member.copy()
            with open_dict(member):  # member0 of a seed ensemble is the plain recipe: one node
                if i:
                    member.seed_offset = i
                if self.resample == "bootstrap":
                    member.bootstrap = True
            out[f"member{i}"] = member
        return out

    def sources(self) -> dict[str, str]:  # reference rows for the ensemble's own accuracy
        return {"positive": self.member.positive, "negative": self.member.negative}

    def policies(self) -> dict[str, str]:
        return {}

    def rows_per_source(self) -> tuple[int | None, int]:
        return self.member.get("num_prompts"), self.member.get("samples_per_prompt", 1)

    def build(self, out_dir: Path, ctx, inputs: dict[str, Path]) -> dict:
        parts = parts_of(inputs)
        members = [parts[name] for name in sorted(parts, key=lambda n: int(n[6:]))]
        save_scorer_spec(
            out_dir,
            {
                "_target_": "afd.recipes.reward.ensemble.EnsembleScorer",
                "members": members,
                "penalty": self.penalty,
            },
        )
        val_fraction = self.member.get("val_fraction", 0.1)
        rows, targets = held_out_labelled(self, inputs, val_fraction, ctx.seed)
        each = np.stack([load_scorer(m).score(rows) for m in members])
        score = each.mean(0) - self.penalty * each.std(0)
        return {
            "accuracy": accuracy(score, targets),
            "member_accuracy": [accuracy(s, targets) for s in each],
            "member_std": float(each.std(0).mean()),
            "val_rows": len(rows),
        }


class EnsembleScorer:
    def __init__(self, members: list[str], penalty: float):
        self.members = [load_scorer(m) for m in members]
        self.penalty = penalty

    def score(self, rows) -> np.ndarray:
        each = np.stack([m.score(rows) for m in self.members])
        return each.mean(0) - self.penalty * each.std(0)
