"""Best-of-N distillation, BOND (Sessa et al. 2024, arXiv 2407.14622): keep Best-of-n's gain
without paying n samples at inference, by training a policy towards the Best-of-n
distribution pi_BoN of the reference policy under the job's reward model (Init-SFT by
default).

Forward KL(pi_BoN || pi), mass-covering, is SFT on Best-of-n replies: each training prompt's
`n` reference samples are scored by the reward model and the policy is fine-tuned from the
reference on the best of them. The reverse KL and the Jeffreys mixture train on-policy:
online.py (`divergence=bond_reverse|bond_jeffreys`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from afd.core.config import check_count
from afd.core.errors import ConfigError
from afd.recipes.distill import best_of_n_rows
from afd.recipes.sft import fine_tune
from afd.runtime.optim import OptimConfig
from afd.runtime.trainer import Schedule, training_config

DIVERGENCES = ("forward",)
REFERENCES = ("sft", "init")


@dataclass
class BoND:
    """The `_target_` of conf/divergence/bond_*.yaml."""

    stage: ClassVar[str] = "bond"
    reads: ClassVar[tuple[str, ...]] = ("lengths", "trainer", "seed", "model")
    trains: ClassVar[bool] = True

    name: str
    level: str
    divergence: str  # forward: KL(pi_BoN || pi)
    n: int  # the Best-of-n distilled
    reference: str  # the policy whose Best-of-n is the target, and the starting point
    num_prompts: int | None  # training prompts (None: all)
    schedule: Schedule
    optim: OptimConfig

    def __post_init__(self):
        training_config(self, "divergence")
        if self.divergence not in DIVERGENCES:
            raise ConfigError(
                f"divergence.divergence must be one of {DIVERGENCES}, got {self.divergence!r}"
            )
        if self.reference not in REFERENCES:
            raise ConfigError(
                f"divergence.reference must be one of {REFERENCES}, got {self.reference!r}"
            )
        check_count(self.n, "divergence.n")
        check_count(self.num_prompts, "divergence.num_prompts", optional=True)

    def policy(self, graph):
        reference = graph.policy(self.reference)
        pool = graph.samples(self.reference, "train", self.n, self.num_prompts, f"best_of_{self.n}")
        label = f"{graph.label_of(reference)}/train/best_of_{self.n}"
        scores = graph.scores(pool, graph.reward(), label)
        upstream = {"reference": reference, "samples": pool, "scores": scores}
        return graph.build("policy", self, upstream)

    def build(self, out_dir: Path, ctx, inputs: dict[str, Path]) -> dict:
        """inputs: `reference`, its `samples` (n per training prompt) and their `scores`."""
        rows = best_of_n_rows(inputs["samples"], inputs["scores"], self.n)
        base = str(inputs["reference"])
        what = f"{self.name}: SFT on Best-of-{self.n} replies"
        return fine_tune(out_dir, rows, base, 0.0, self.schedule, self.optim, ctx, ctx.seed, what)
