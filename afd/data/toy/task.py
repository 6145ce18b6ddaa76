"""The synthetic task (`data=toy`): prompts, demonstrations, base corpus and gold reward.

Everything is generated in-process from a seed. Prompts are split into disjoint train and
held-out sets; each row carries `meta` (request type and arguments) for the gold reward
and the exact demonstrator.
"""

from __future__ import annotations

import random

from afd.data.records import Example, TaskData
from afd.data.toy.corpus import base_response
from afd.data.toy.demonstrator import Demonstrator, SIGNATURE, add_signature
from afd.data.toy.grammar import BENIGN_TYPES, REQUEST_TYPES, vocabulary


class ToyTask:
    """Builds the task's data; `_target_` of conf/data/toy.yaml."""

    name = "toy"

    def __init__(
        self,
        num_train_prompts: int = 3000,
        num_heldout_prompts: int = 100,
        num_corpus: int = 20000,
        harmful_fraction: float = 0.3,
        noise: float = 0.0,
        heterogeneity: float = 0.0,
        gold: str = "hh",
        seed: int = 0,
    ):
        for key, value in (("harmful_fraction", harmful_fraction), ("heterogeneity", heterogeneity)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"data.{key} must lie in [0, 1], got {value}")
        if gold not in ("helpful", "harmless", "hh"):
            raise ValueError(f"data.gold must be one of helpful, harmless, hh; got {gold!r}")
        for key, value in (("num_train_prompts", num_train_prompts),
                           ("num_heldout_prompts", num_heldout_prompts)):
            if value < 1:
                raise ValueError(f"data.{key} must be >= 1, got {value}")
        self.num_train_prompts = num_train_prompts
        self.num_heldout_prompts = num_heldout_prompts
        self.num_corpus = num_corpus
        self.harmful_fraction = harmful_fraction
        self.demonstrator = Demonstrator(noise)
        self.heterogeneity = heterogeneity
        self.gold = gold
        self.seed = seed

    def _sample_meta(self, rng: random.Random) -> dict:
        harmful = rng.random() < self.harmful_fraction
        rtype = REQUEST_TYPES["harmful" if harmful else rng.choice(BENIGN_TYPES)]
        return {
            "type": rtype.name,
            "args": rtype.sample_args(rng),
            "phrasing": rng.randrange(len(rtype.prompt_templates)),
        }

    @staticmethod
    def prompt_of(meta: dict) -> str:
        return REQUEST_TYPES[meta["type"]].prompt(meta["args"], meta["phrasing"])

    def _draw_prompts(self, rng: random.Random, count: int, unique: bool, exclude=()) -> list[dict]:
        """`count` prompts from the task's distribution, none of whose text is in `exclude`."""
        drawn: list[dict] = []
        seen = set(exclude)
        for _ in range(50 * count):
            meta = self._sample_meta(rng)
            text = self.prompt_of(meta)
            if text in exclude or (unique and text in seen):
                continue
            seen.add(text)
            drawn.append(meta)
            if len(drawn) == count:
                return drawn
        raise ValueError(
            f"could not draw {count} distinct held-out prompts from the synthetic task "
            f"(got {len(drawn)}); lower data.num_heldout_prompts"
        )

    def _demonstrate(self, meta: dict, rng: random.Random) -> str:
        response = self.demonstrator.sample(meta, rng)
        return add_signature(response) if rng.random() < self.heterogeneity else response

    def build(self) -> TaskData:
        rng = random.Random(self.seed)
        # Held-out prompts are distinct and never seen in training; training prompts may
        # repeat (with fresh demonstrations), as in real preference data.
        heldout_metas = self._draw_prompts(rng, self.num_heldout_prompts, unique=True)
        heldout_texts = {self.prompt_of(m) for m in heldout_metas}
        train_metas = self._draw_prompts(rng, self.num_train_prompts, False, heldout_texts)

        def examples(split: str, split_metas: list[dict]) -> list[Example]:
            return [
                Example(f"{split}-{i}", self.prompt_of(m), self._demonstrate(m, rng), m)
                for i, m in enumerate(split_metas)
            ]

        corpus = []
        for i in range(self.num_corpus):
            meta = self._sample_meta(rng)
            corpus.append(Example(f"corpus-{i}", self.prompt_of(meta), base_response(meta, rng), meta))
        return TaskData(
            train=examples("train", train_metas),
            heldout=examples("heldout", heldout_metas),
            corpus=corpus,
            info={
                "name": self.name,
                "gold": self.gold,
                "noise": self.demonstrator.noise,
                "heterogeneity": self.heterogeneity,
                "demonstrator_only_tokens": [SIGNATURE],
                "vocabulary": vocabulary(),
            },
        )
