"""Self-Play Fine-Tuning, SPIN (Chen et al. 2024, arXiv 2401.01335): `divergence=spin`.

pi_0 is the starting policy (pi_SFT, or pi0 with `start: init`). Iteration t = 1..T samples
pi_{t-1} once on each training prompt and trains pi_t, from pi_{t-1}, to prefer the prompt's
demonstration y over that sample y' with pi_{t-1} as the reference (the paper's L_SPIN,
Section 4; afd/objectives/preference.py):
    L(pi_t) = E_{x, y ~ p_data, y' ~ pi_{t-1}} [ ell( beta * [log pi_t(y|x)/pi_{t-1}(y|x)
                                                       - log pi_t(y'|x)/pi_{t-1}(y'|x)] ) ],
ell(t) = log(1 + exp(-t)). Its fixed point is pi = p_data (the paper's Section 5): the
policy stops moving once its samples look like the demonstrations.

Each iteration is its own cached node: "spin/1", ..., "spin/{T-1}", and the last is the job's
"policy"; their samples are "sample/<previous>/train/spin<t>" and their reference
log-probabilities "spin/<t>/reference". An iteration's key holds t and the training settings
but not T, so raising `iterations` trains only the new iterations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from afd.core.config import check_count, check_number
from afd.core.errors import ConfigError
from afd.recipes.spin.stages import SPINIteration, SPINReference
from afd.runtime.optim import OptimConfig
from afd.runtime.trainer import Schedule, training_config

STARTS = ("sft", "init")


@dataclass
class SPIN:
    """The `_target_` of conf/divergence/spin.yaml."""

    name: str
    level: str
    iterations: int  # T: self-play iterations, each a cached training stage
    beta: float  # the implicit reward's scale (the paper's lambda)
    start: str  # pi_0: sft | init
    num_prompts: int | None  # training prompts (demonstrations) per iteration; None: all
    schedule: Schedule  # of each iteration
    optim: OptimConfig  # of each iteration

    def __post_init__(self):
        training_config(self, "divergence")
        check_count(self.iterations, "divergence.iterations")
        check_number(self.beta, "divergence.beta", 0, above=True)
        if not math.isfinite(self.beta):
            raise ConfigError(f"divergence.beta must be finite, got {self.beta}")
        if self.start not in STARTS:
            raise ConfigError(f"divergence.start must be one of {STARTS}, got {self.start!r}")
        check_count(self.num_prompts, "divergence.num_prompts", optional=True)

    def iteration(self, t: int) -> SPINIteration:
        return SPINIteration(t, self.beta, self.schedule, self.optim)

    def policy(self, graph):
        current = graph.policy(self.start)
        for t in range(1, self.iterations + 1):
            current = self.next_iterate(graph, current, t)
        return current

    def next_iterate(self, graph, previous, t: int):
        """pi_t from pi_{t-1} (`previous`): sample it, score the pairs under it, train."""
        data = graph.data()
        samples = graph.samples_of(previous, "train", 1, self.num_prompts, tag=f"spin{t}")
        upstream = {"data": data, "samples": samples}
        reference = graph.build(
            f"spin/{t}/reference", SPINReference(), {**upstream, "reference": previous}
        )
        upstream |= {"previous": previous, "reference": reference}
        label = "policy" if t == self.iterations else f"spin/{t}"
        return graph.build(label, self.iteration(t), upstream, log_as=f"spin{t}")
