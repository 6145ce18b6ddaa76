"""The synthetic task (`data=toy`): prompts, demonstrations, base corpus and gold reward.

Everything is generated in-process from a seed. Prompts are split into disjoint train and
held-out sets; each row carries `meta` (request type and arguments) for the gold reward
and the exact demonstrator.
"""

from __future__ import annotations

import random

from afd.core.errors import ConfigError
from afd.tasks.records import Example, Pair, TaskData
from afd.tasks.toy.corpus import base_response
from afd.tasks.toy.demonstrator import SIGNATURE, Demonstrator, add_signature
from afd.tasks.toy.gold import GOLD_REWARDS
from afd.tasks.toy.grammar import DEFAULT_TYPES, REQUEST_TYPES, vocabulary


class ToyTask:
    """Builds the task's data; `_target_` of conf/data/toy.yaml."""

    name = "toy"

    def __init__(
        self,
        num_train_prompts: int = 3000,
        num_heldout_prompts: int = 64,
        num_corpus: int = 20000,
        harmful_fraction: float = 0.3,
        noise: float = 0.0,
        heterogeneity: float = 0.0,
        gold: str = "hh",
        request_types: tuple[str, ...] | list[str] = DEFAULT_TYPES,
        num_pairs: int = 2000,
        seed: int = 0,
    ):
        unknown = sorted(set(request_types) - set(REQUEST_TYPES))
        if unknown or not request_types:
            raise ConfigError(
                f"data.task.request_types: unknown {unknown or 'empty list'}; "
                f"choose from {sorted(REQUEST_TYPES)}"
            )
        self.benign_types = [t for t in request_types if not REQUEST_TYPES[t].harmful]
        self.harmful_types = [t for t in request_types if REQUEST_TYPES[t].harmful]
        if harmful_fraction > 0 and not self.harmful_types:
            raise ConfigError(
                "data.task.harmful_fraction > 0 but data.task.request_types has no harmful type"
            )
        if harmful_fraction < 1 and not self.benign_types:
            raise ConfigError(
                "data.task.harmful_fraction < 1 but data.task.request_types has no benign type"
            )
        for key, value in (
            ("harmful_fraction", harmful_fraction),
            ("heterogeneity", heterogeneity),
        ):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"data.task.{key} must lie in [0, 1], got {value}")
        if gold not in ("helpful", "harmless", "hh"):
            raise ConfigError(f"data.task.gold must be one of helpful, harmless, hh; got {gold!r}")
        for key, value in (
            ("num_train_prompts", num_train_prompts),
            ("num_heldout_prompts", num_heldout_prompts),
        ):
            if value < 1:
                raise ConfigError(f"data.task.{key} must be >= 1, got {value}")
        self.request_types = list(request_types)
        self.num_train_prompts = num_train_prompts
        self.num_heldout_prompts = num_heldout_prompts
        self.num_corpus = num_corpus
        self.harmful_fraction = harmful_fraction
        self.demonstrator = Demonstrator(noise)
        self.heterogeneity = heterogeneity
        self.gold = gold
        self.num_pairs = num_pairs
        self.seed = seed

    def _sample_type(self, rng: random.Random) -> str:
        harmful = rng.random() < self.harmful_fraction
        return rng.choice(self.harmful_types if harmful else self.benign_types)

    def _sample_meta(self, rng: random.Random, type_name: str | None = None) -> dict:
        rtype = REQUEST_TYPES[type_name or self._sample_type(rng)]
        return {
            "type": rtype.name,
            "args": rtype.sample_args(rng),
            "phrasing": rng.randrange(len(rtype.prompt_templates)),
        }

    @staticmethod
    def prompt_of(meta: dict) -> str:
        return REQUEST_TYPES[meta["type"]].prompt(meta["args"], meta["phrasing"])

    def _draw_prompts(self, rng: random.Random, count: int, unique: bool, exclude=()) -> list[dict]:
        """`count` prompts, none of whose text is in `exclude`. The request type is drawn
        first and only its arguments are redrawn on a clash, so exclusion and uniqueness
        never skew the mix of request types."""
        drawn: list[dict] = []
        seen = set(exclude)
        for _ in range(count):
            type_name = self._sample_type(rng)
            for _ in range(200):
                meta = self._sample_meta(rng, type_name)
                text = self.prompt_of(meta)
                if text not in exclude and not (unique and text in seen):
                    break
            else:
                raise ConfigError(
                    f"could not draw {count} distinct held-out prompts: request type "
                    f"{type_name!r} ran out of prompts; lower data.task.num_heldout_prompts"
                )
            seen.add(text)
            drawn.append(meta)
        return drawn

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

        return TaskData(
            train=examples("train", train_metas),
            heldout=examples("heldout", heldout_metas),
            pairs=self._pairs(train_metas),
            info={
                "name": self.name,
                "gold": self.gold,
                "noise": self.demonstrator.noise,
                "heterogeneity": self.heterogeneity,
                "demonstrator_only_tokens": [SIGNATURE],
                "vocabulary": vocabulary(),
            },
        )

    def _pairs(self, metas: list[dict]) -> list[Pair]:
        """Preference pairs on training prompts for the Bradley-Terry baseline: two replies
        (demonstrator or base corpus), the one with the higher gold reward chosen; ties
        are redrawn. Their own RNG keeps demonstrations identical with or without pairs."""
        rng, score = random.Random(f"{self.seed}-pairs"), GOLD_REWARDS[self.gold]
        pairs: list[Pair] = []
        for i in range(self.num_pairs):
            meta = metas[i % len(metas)]
            for _ in range(50):
                a, b = (
                    self.demonstrator.sample(meta, rng)
                    if rng.random() < 0.5
                    else base_response(meta, rng)
                    for _ in range(2)
                )
                if score(meta, a) != score(meta, b):
                    break
            else:
                continue
            chosen, rejected = (a, b) if score(meta, a) > score(meta, b) else (b, a)
            pairs.append(Pair(f"pair-{i}", self.prompt_of(meta), chosen, rejected))
        return pairs

    def corpus_config(self) -> dict:
        """The knobs the corpus reads, as a config that builds it: sweeping noise or
        heterogeneity reuses the corpus and pi0."""
        return {
            "_target_": f"{type(self).__module__}.{type(self).__qualname__}",
            "num_corpus": self.num_corpus,
            "harmful_fraction": self.harmful_fraction,
            "request_types": list(self.request_types),
            "seed": self.seed,
        }

    def build_corpus(self) -> TaskData:
        """The base corpus is world knowledge: it covers every prompt, held-out ones
        included (with mixed-quality answers); only demonstrations avoid held-out prompts."""
        rng = random.Random(f"{self.seed}-corpus")
        metas = [self._sample_meta(rng) for _ in range(self.num_corpus)]
        corpus = [
            Example(f"corpus-{i}", self.prompt_of(m), base_response(m, rng), m)
            for i, m in enumerate(metas)
        ]
        return TaskData(
            train=[],
            heldout=[],
            corpus=corpus,
            info={"name": self.name, "vocabulary": vocabulary()},
        )
