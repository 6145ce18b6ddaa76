"""Round distillation (`iterate:`, iterative AfD): a policy fine-tuned on its own Best-of-n
replies to training prompts under a round's reward model (policy improvement by
distillation). Token NLL with the model options, on the global batch, as SFT."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from afd.core.artifacts import read_samples, read_scores
from afd.core.config import check_count
from afd.recipes.sft import fine_tune
from afd.runtime.optim import OptimConfig
from afd.runtime.trainer import Schedule, training_config


def best_of_n_rows(samples: Path, scores: Path, n: int) -> list[tuple[str, str]]:
    """(prompt, reply) of the highest-scored of each prompt's `n` consecutive samples."""
    rows = read_samples(samples)
    by_prompt = read_scores(scores).reshape(-1, n)
    best = [rows[i * n + int(np.argmax(s))] for i, s in enumerate(by_prompt)]
    return [(r["prompt"], r["response"]) for r in best]


@dataclass
class Distill:
    stage: ClassVar[str] = "distill"
    reads: ClassVar[tuple[str, ...]] = ("lengths", "trainer", "seed", "model")
    trains: ClassVar[bool] = True

    n: int  # Best-of-n per training prompt
    num_prompts: int | None  # training prompts per round (None: all)
    schedule: Schedule
    optim: OptimConfig

    def __post_init__(self):
        training_config(self, "iterate")
        check_count(self.n, "iterate.n")
        check_count(self.num_prompts, "iterate.num_prompts", optional=True)

    def build(self, out_dir: Path, ctx, inputs: dict[str, Path]) -> dict:
        """inputs: `base` (the policy), `samples` (its `n` replies per prompt) and `scores`
        (their proxy rewards). Every row trains: none is held out."""
        pairs = best_of_n_rows(inputs["samples"], inputs["scores"], self.n)
        base = str(inputs["base"])
        what = "round distillation on Best-of-n replies"
        return fine_tune(out_dir, pairs, base, 0.0, self.schedule, self.optim, ctx, ctx.seed, what)
