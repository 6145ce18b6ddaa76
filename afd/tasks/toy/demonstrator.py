"""The known demonstrator beta(y|x) of the synthetic task.

A mixture: with probability 1 - noise a good response in one of several phrasings (the
modes, with fixed probabilities), with probability `noise` a bad one drawn uniformly from
a finite set. Its support is enumerable, so log beta(y|x) and divergences are exact.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from afd.core.errors import ConfigError
from afd.tasks.toy.grammar import REQUEST_TYPES

SIGNATURE = "*"  # the heterogeneous demonstrator's mark, outside the policy's action space


@dataclass(frozen=True)
class Demonstrator:
    noise: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.noise <= 1.0:
            raise ConfigError(f"data.task.noise must lie in [0, 1], got {self.noise}")

    def good_support(self, meta: dict) -> dict[str, float]:
        rtype = REQUEST_TYPES[meta["type"]]
        support: dict[str, float] = {}
        for mode in rtype.modes:
            text = rtype.render(mode, meta["args"])
            support[text] = support.get(text, 0.0) + mode.prob
        return support

    def bad_support(self, meta: dict) -> dict[str, float]:
        rtype = REQUEST_TYPES[meta["type"]]
        if not rtype.slotted:
            wrong = rtype.wrong_answers(meta["args"])
            return {text: 1.0 / len(wrong) for text in wrong}
        support: dict[str, float] = {}
        wrong = rtype.wrong_answers(meta["args"])
        for mode in rtype.modes:
            for ans in wrong:
                text = rtype.render(mode, meta["args"], ans)
                support[text] = support.get(text, 0.0) + mode.prob / len(wrong)
        return support

    def support(self, meta: dict) -> dict[str, float]:
        """Every response with positive probability, mapped to beta(y|x)."""
        dist = {y: (1.0 - self.noise) * p for y, p in self.good_support(meta).items()}
        if self.noise > 0:
            for y, p in self.bad_support(meta).items():
                dist[y] = dist.get(y, 0.0) + self.noise * p
        return {y: p for y, p in dist.items() if p > 0}

    def log_prob(self, meta: dict, response: str) -> float:
        p = self.support(meta).get(strip_signature(response), 0.0)
        return math.log(p) if p > 0 else -math.inf

    def modes(self, meta: dict) -> dict[str, float]:
        """The good phrasings with their probabilities: what mode coverage counts."""
        return self.good_support(meta)

    def sample(self, meta: dict, rng: random.Random) -> str:
        dist = self.good_support(meta) if rng.random() >= self.noise else self.bad_support(meta)
        texts = list(dist)
        return rng.choices(texts, weights=[dist[t] for t in texts])[0]


def add_signature(response: str) -> str:
    return f"{SIGNATURE} {response}"


def strip_signature(response: str) -> str:
    words = response.split(" ")
    return " ".join(w for w in words if w != SIGNATURE)
