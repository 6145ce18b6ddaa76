"""Stage `reward`: the reward model a Best-of-N policy is scored with (`conf/reward/*.yaml`).

`Discriminator` is the IRL reward: a classifier of positive vs negative responses whose
logit is the reward. Init-SFT (pi_SFT samples vs pi0 samples) is the paper's choice;
Demo-Init and Demo-SFT use the demonstrations themselves as positives. `LogRatio` is the
closed-form optimum of the Init-SFT classifier, log pi_SFT - log pi0, with no training.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import lightning as L
import numpy as np

from afd.batching import ClassifierCollator, Lengths, PairCollator, training_rows
from afd.finetune import ModelOptions, prepare_for_training
from afd.models import load_classifier, load_tokenizer
from afd.modules.optim import OptimConfig
from afd.modules.reward import RewardModule
from afd.scoring import load_scorer, save_scorer_spec
from afd.training import Schedule, as_dataclass, export_trained, final_metrics, fit

SOURCES = ("demo", "init", "sft")


@dataclass
class RewardInputs:
    """What the pipeline hands a recipe: labelled rows and the paths of the policies it named."""

    rows: dict[str, list[dict]]  # role ("positive"/"negative") -> rows with prompt, response
    policies: dict[str, str]  # role ("backbone"/"numerator"/...) -> model path
    options: ModelOptions = field(
        default_factory=ModelOptions
    )  # dtype, LoRA, ... of the model config
    parts: dict[str, str] = field(default_factory=dict)  # composite rewards: part -> its path


def scorer_spec(target: str, lengths: Lengths, options: ModelOptions, **paths) -> dict:
    return {
        "_target_": target,
        **paths,
        "max_prompt_tokens": lengths.max_prompt_tokens,
        "max_response_tokens": lengths.max_response_tokens,
        "dtype": options.dtype,
        "trust_remote_code": options.trust_remote_code,
    }


def _check_source(key: str, value: str) -> str:
    if value not in SOURCES:
        raise ValueError(f"reward.{key} must be one of {SOURCES}, got {value!r}")
    return value


def split_by_prompt(rows: list[tuple], val_fraction: float, seed: int):
    """Hold out whole prompts, so held-out accuracy never sees a training prompt."""
    prompts = sorted({r[0] for r in rows})
    random.Random(seed).shuffle(prompts)
    held = set(prompts[: int(len(prompts) * val_fraction)])
    return [r for r in rows if r[0] not in held], [r for r in rows if r[0] in held]


def accuracy(scores: np.ndarray, targets: np.ndarray) -> float:
    return float(((scores > 0) == (targets > 0.5)).mean()) if len(scores) else float("nan")


def _check_backbone(backbone: str) -> None:
    if backbone not in ("init", "sft"):
        raise ValueError(f"reward.backbone must be 'init' or 'sft', got {backbone!r}")


def _train_classifier(
    out_dir: Path,
    recipe,
    inputs: RewardInputs,
    train,
    val,
    collate_cls,
    objective: str,
    lengths: Lengths,
    trainer_cfg,
    seed: int,
    logger,
    progress,
):
    """Fine-tune a scalar-head classifier from the recipe's backbone policy (with the model
    config's dtype, LoRA and checkpointing) and save it, LoRA merged, with the scorer spec
    that loads it, into `out_dir`. Returns that scorer, loaded back from `out_dir` as later
    stages will see it (under ZeRO-3 the live module only holds this process's partition);
    None on the other processes of a multi-process run."""
    L.seed_everything(seed, workers=True, verbose=False)
    backbone, options = inputs.policies["backbone"], inputs.options
    tokenizer = load_tokenizer(backbone, options.trust_remote_code)
    model = load_classifier(backbone, tokenizer, options.dtype, options.trust_remote_code)
    model = prepare_for_training(model, options, "classifier")
    module = RewardModule(model, recipe.optim, recipe.schedule.total_steps(len(train)), objective)
    trainer = fit(
        module,
        train,
        val,
        collate_cls(tokenizer, lengths),
        recipe.schedule,
        trainer_cfg,
        logger,
        seed,
        progress,
    )
    export_trained(trainer, module, tokenizer, out_dir, options.dtype)
    if not trainer.is_global_zero:
        return None
    save_scorer_spec(
        out_dir, scorer_spec("afd.scoring.ClassifierScorer", lengths, options, path=".")
    )
    return load_scorer(out_dir)


def _rows(rows, keys: tuple[str, ...]) -> list[dict]:
    return [dict(zip(keys, r, strict=False)) for r in rows]  # rows may carry a label after


def labelled_rows(inputs: RewardInputs) -> list[tuple[str, str, float]]:
    """(prompt, response, label) rows: the positive source labelled 1, the negative 0."""
    rows = [(r["prompt"], r["response"], 1.0) for r in inputs.rows["positive"]]
    return rows + [(r["prompt"], r["response"], 0.0) for r in inputs.rows["negative"]]


def _labelled_accuracy(scorer, rows: list[tuple[str, str, float]]) -> float:
    """Share of labelled rows on the side of 0 their label says."""
    scores = scorer.score(_rows(rows, ("prompt", "response")))
    return accuracy(scores, np.array([t for _, _, t in rows]))


@dataclass
class Discriminator:
    """Binary classifier, positives (label 1) vs negatives; its logit is the reward."""

    trains: ClassVar[bool] = True  # the pipeline runs it in training workers when distributed

    name: str = "init_sft"
    positive: str = "sft"
    negative: str = "init"
    backbone: str = "sft"
    num_prompts: int = 2000
    samples_per_prompt: int = 1
    val_fraction: float = 0.1
    schedule: Schedule = field(default_factory=Schedule)
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed_offset: int = 0  # ensemble members: a different initialisation and data order ...
    bootstrap: bool = False  # ... and optionally a bootstrap resample of the training rows

    def __post_init__(self):
        self.schedule = as_dataclass(Schedule, self.schedule, "reward.schedule")
        self.optim = as_dataclass(OptimConfig, self.optim, "reward.optim")
        _check_source("positive", self.positive)
        _check_source("negative", self.negative)
        if self.positive == self.negative:
            raise ValueError(f"reward.positive and reward.negative are both {self.positive!r}")
        _check_backbone(self.backbone)

    def sources(self) -> dict[str, str]:
        return {"positive": self.positive, "negative": self.negative}

    def policies(self) -> dict[str, str]:
        return {"backbone": self.backbone}

    def build(
        self,
        out_dir: Path,
        inputs: RewardInputs,
        lengths: Lengths,
        trainer_cfg,
        seed: int,
        logger=None,
        progress=True,
    ) -> dict:
        rows, dropped = training_rows(
            labelled_rows(inputs),
            load_tokenizer(inputs.policies["backbone"], inputs.options.trust_remote_code),
            lengths,
        )
        train, val = split_by_prompt(rows, self.val_fraction, seed)
        seed = seed + self.seed_offset  # the split stays shared: members agree on held-out rows
        if self.bootstrap:
            rng = random.Random(seed)
            train = [train[rng.randrange(len(train))] for _ in train]
        scorer = _train_classifier(
            out_dir,
            self,
            inputs,
            train,
            val,
            ClassifierCollator,
            "bce",
            lengths,
            trainer_cfg,
            seed,
            logger,
            progress,
        )
        if scorer is None:  # not global rank 0 of a multi-process run
            return {}
        return {
            "accuracy": _labelled_accuracy(scorer, val),
            "train_rows": len(train),
            "val_rows": len(val),
            "dropped_long": dropped,
            **final_metrics(logger),
        }


@dataclass
class LogRatio:
    """log pi_numerator(y|x) - log pi_denominator(y|x); no training. Its held-out accuracy is
    measured on the same positives/negatives an Init-SFT classifier would see."""

    trains: ClassVar[bool] = False

    name: str = "logratio"
    numerator: str = "sft"
    denominator: str = "init"
    num_prompts: int = 2000
    samples_per_prompt: int = 1
    val_fraction: float = 0.1

    def __post_init__(self):
        for key in ("numerator", "denominator"):
            if getattr(self, key) not in ("init", "sft"):
                raise ValueError(
                    f"reward.{key} must be 'init' or 'sft', got {getattr(self, key)!r}"
                )

    def sources(self) -> dict[str, str]:
        return {"positive": self.numerator, "negative": self.denominator}

    def policies(self) -> dict[str, str]:
        return {"numerator": self.numerator, "denominator": self.denominator}

    def build(
        self,
        out_dir: Path,
        inputs: RewardInputs,
        lengths: Lengths,
        trainer_cfg,
        seed: int,
        logger=None,
        progress=True,
    ) -> dict:
        save_scorer_spec(
            out_dir,
            scorer_spec(
                "afd.scoring.LogRatioScorer",
                lengths,
                inputs.options,
                numerator=inputs.policies["numerator"],
                denominator=inputs.policies["denominator"],
            ),
        )
        _, val = split_by_prompt(labelled_rows(inputs), self.val_fraction, seed)
        return {
            "accuracy": _labelled_accuracy(load_scorer(out_dir), val),
            "val_rows": len(val),
        }


@dataclass
class BradleyTerry:
    """The preference baseline: a Bradley-Terry reward model on (chosen, rejected) pairs.
    Held-out accuracy is the share of held-out pairs it orders correctly."""

    trains: ClassVar[bool] = True

    name: str = "bt"
    backbone: str = "sft"
    num_pairs: int | None = None  # None: every pair of the task
    val_fraction: float = 0.1
    schedule: Schedule = field(default_factory=Schedule)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self):
        self.schedule = as_dataclass(Schedule, self.schedule, "reward.schedule")
        self.optim = as_dataclass(OptimConfig, self.optim, "reward.optim")
        _check_backbone(self.backbone)

    def sources(self) -> dict[str, str]:
        return {"pairs": "pairs"}

    def policies(self) -> dict[str, str]:
        return {"backbone": self.backbone}

    def build(
        self,
        out_dir: Path,
        inputs: RewardInputs,
        lengths: Lengths,
        trainer_cfg,
        seed: int,
        logger=None,
        progress=True,
    ) -> dict:
        pairs = inputs.rows["pairs"][: self.num_pairs] if self.num_pairs else inputs.rows["pairs"]
        rows = [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs]
        rows, dropped = training_rows(
            rows,
            load_tokenizer(inputs.policies["backbone"], inputs.options.trust_remote_code),
            lengths,
            (1, 2),
        )
        train, val = split_by_prompt(rows, self.val_fraction, seed)
        scorer = _train_classifier(
            out_dir,
            self,
            inputs,
            train,
            val,
            PairCollator,
            "bt",
            lengths,
            trainer_cfg,
            seed,
            logger,
            progress,
        )
        if scorer is None:  # not global rank 0 of a multi-process run
            return {}
        chosen = scorer.score(_rows(val, ("prompt", "response")))
        rejected = scorer.score(_rows([(p, r) for p, _, r in val], ("prompt", "response")))
        return {
            "accuracy": float((chosen > rejected).mean()) if len(val) else float("nan"),
            "train_pairs": len(train),
            "val_pairs": len(val),
            "dropped_long": dropped,
            **final_metrics(logger),
        }
