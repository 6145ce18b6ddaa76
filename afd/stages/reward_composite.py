"""Composite reward models (`reward=ensemble`, `ensemble_conservative`, `irl_bt`): several
reward models, each its own cached `reward` node (a part), combined into one scorer.

`Ensemble` trains K copies of a member recipe (the IRL discriminator by default) over
seeds or bootstrap resamples and scores mean - penalty * std across members: penalty 0 is
the plain ensemble mean, penalty > 0 a conservative (pessimistic) reward. Since members
are parts, a sweep over the penalty trains them once.

`Heterogeneous` combines different reward models, e.g. the IRL reward from demonstrations
with a Bradley-Terry reward from preference pairs where those exist, as a weighted sum of
their scores, each standardised by its mean and spread on the same reference rows (the
IRL classifier's positives and negatives), so neither dominates by its scale alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from afd.scoring import load_scorer, save_scorer_spec
from afd.stages.reward import accuracy, labelled_rows, split_by_prompt

STATS = "standardisation.json"


def _labelled(inputs, val_fraction: float, seed: int) -> tuple[list[dict], np.ndarray]:
    """Held-out positives and negatives of the reference rows, as scorer rows and targets."""
    _, val = split_by_prompt(labelled_rows(inputs), val_fraction, seed)
    return [{"prompt": p, "response": r} for p, r, _ in val], np.array([t for _, _, t in val])


@dataclass
class Ensemble:
    trains: ClassVar[bool] = False  # its members train, as their own reward nodes

    name: str = "ensemble"
    member: DictConfig | dict = field(default_factory=dict)  # a reward recipe config
    size: int = 4
    resample: str = (
        "seed"  # seed: new initialisation and data order; bootstrap: also resampled rows
    )
    penalty: float = 0.0  # score = mean - penalty * std over members

    def __post_init__(self):
        if self.resample not in ("seed", "bootstrap"):
            raise ValueError(
                f"reward.resample must be 'seed' or 'bootstrap', got {self.resample!r}"
            )
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 2:
            raise ValueError(f"reward.size must be an integer >= 2, got {self.size!r}")
        if not self.penalty >= 0:
            raise ValueError(f"reward.penalty must be >= 0, got {self.penalty}")
        if "_target_" not in self.member:
            raise ValueError("reward.member must be a reward recipe with a _target_")
        self.member = (
            OmegaConf.create(self.member) if isinstance(self.member, dict) else self.member
        )
        self.num_prompts = self.member.get("num_prompts")
        self.samples_per_prompt = self.member.get("samples_per_prompt", 1)
        self.val_fraction = self.member.get("val_fraction", 0.1)

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

    def build(
        self, out_dir: Path, inputs, lengths, trainer_cfg, seed: int, logger=None, progress=True
    ) -> dict:
        members = [inputs.parts[name] for name in sorted(inputs.parts, key=lambda n: int(n[6:]))]
        save_scorer_spec(
            out_dir,
            {
                "_target_": "afd.stages.reward_composite.EnsembleScorer",
                "members": members,
                "penalty": self.penalty,
            },
        )
        rows, targets = _labelled(inputs, self.val_fraction, seed)
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


@dataclass
class Heterogeneous:
    trains: ClassVar[bool] = False  # its parts train, as their own reward nodes

    name: str = "irl_bt"
    components: dict = field(default_factory=dict)  # part name -> reward recipe config
    weights: dict = field(default_factory=dict)  # part name -> weight of its standardised score
    reference: str = "irl"  # the part whose positives/negatives standardise every part

    def __post_init__(self):
        self.components = dict(self.components)
        self.weights = {k: float(v) for k, v in dict(self.weights).items()}
        if set(self.weights) != set(self.components) or not self.components:
            raise ValueError(
                f"reward.weights must name exactly the parts {sorted(self.components)}, "
                f"got {sorted(self.weights)}"
            )
        if (
            self.reference not in self.components
            or "positive" not in self.components[self.reference]
        ):
            raise ValueError(
                f"reward.reference must name a discriminator part, got {self.reference!r}"
            )
        ref = self.components[self.reference]
        self.num_prompts = ref.get("num_prompts")
        self.samples_per_prompt = ref.get("samples_per_prompt", 1)
        self.val_fraction = ref.get("val_fraction", 0.1)

    def parts(self) -> dict:
        return self.components

    def sources(self) -> dict[str, str]:
        ref = self.components[self.reference]
        return {"positive": ref["positive"], "negative": ref["negative"]}

    def policies(self) -> dict[str, str]:
        return {}

    def build(
        self, out_dir: Path, inputs, lengths, trainer_cfg, seed: int, logger=None, progress=True
    ) -> dict:
        reference = [
            {"prompt": r["prompt"], "response": r["response"]}
            for role in ("positive", "negative")
            for r in inputs.rows[role]
        ]
        stats = {}
        for name, path in inputs.parts.items():
            s = load_scorer(path).score(reference)
            stats[name] = {
                "path": path,
                "mean": float(s.mean()),
                "std": float(s.std() or 1.0),
                "weight": self.weights[name],
            }
        (Path(out_dir) / STATS).write_text(json.dumps(stats, indent=2))
        save_scorer_spec(
            out_dir, {"_target_": "afd.stages.reward_composite.WeightedScorer", "parts": stats}
        )
        rows, targets = _labelled(inputs, self.val_fraction, seed)
        combined = WeightedScorer(stats).score(rows)
        return {
            "accuracy": accuracy(combined, targets),
            "reference_rows": len(reference),
            "val_rows": len(rows),
            **{
                f"part_{n}_accuracy": accuracy(
                    load_scorer(p).score(rows) - stats[n]["mean"], targets
                )
                for n, p in inputs.parts.items()
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
