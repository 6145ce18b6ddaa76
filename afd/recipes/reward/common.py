"""What every reward recipe shares: reading its rows from its input artifacts, labelled
positives and negatives with a held-out split by prompt, accuracy, and training a
scalar-head classifier saved with the scorer spec that loads it."""

from __future__ import annotations

import random
from pathlib import Path

import lightning as L
import numpy as np

from afd.core.artifacts import read_samples
from afd.core.config import qualified_name
from afd.core.errors import ConfigError
from afd.models.batching import Lengths
from afd.models.loading import load_classifier
from afd.models.options import LoadOptions, prepare_for_training
from afd.models.scoring import load_scorer, save_scorer_spec
from afd.models.tokenizers import load_tokenizer
from afd.recipes.reward.module import RewardModule
from afd.runtime.trainer import export_trained, fit
from afd.tasks.data_dir import DataDir

SOURCES = ("demo", "init", "sft")
POLICIES = ("init", "sft")


def check_choice(key: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"reward.{key} must be one of {choices}, got {value!r}")
    return value


def source_rows(source: str, path: Path, num_prompts: int | None) -> list[dict]:
    """The rows a recipe reads from an input artifact: demonstrations of the training split
    (the first `num_prompts`), preference pairs, or a policy's samples."""
    if source == "demo":
        demos = DataDir(path).examples("train", num_prompts)
        return [{"prompt": e.prompt, "response": e.response} for e in demos]
    if source == "pairs":
        pairs = DataDir(path).pairs()
        return [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]
    return read_samples(path)


def labelled_rows(recipe, inputs: dict[str, Path]) -> list[tuple[str, str, float]]:
    """(prompt, response, label) rows: the positive source labelled 1, the negative 0."""
    sources, num_prompts = recipe.sources(), recipe.rows_per_source()[0]
    rows = []
    for role, label in (("positive", 1.0), ("negative", 0.0)):
        for r in source_rows(sources[role], inputs[role], num_prompts):
            rows.append((r["prompt"], r["response"], label))
    return rows


def split_by_prompt(rows: list[tuple], val_fraction: float, seed: int):
    """Hold out whole prompts, so held-out accuracy never sees a training prompt."""
    prompts = sorted({r[0] for r in rows})
    random.Random(seed).shuffle(prompts)
    held = set(prompts[: int(len(prompts) * val_fraction)])
    return [r for r in rows if r[0] not in held], [r for r in rows if r[0] in held]


def accuracy(scores: np.ndarray, targets: np.ndarray) -> float:
    return float(((scores > 0) == (targets > 0.5)).mean()) if len(scores) else float("nan")


def as_rows(rows, keys: tuple[str, ...]) -> list[dict]:
    return [dict(zip(keys, r, strict=False)) for r in rows]  # rows may carry a label after


def labelled_accuracy(scorer, rows: list[tuple[str, str, float]]) -> float:
    """Share of labelled rows on the side of 0 their label says."""
    scores = scorer.score(as_rows(rows, ("prompt", "response")))
    return accuracy(scores, np.array([t for _, _, t in rows]))


def held_out_labelled(recipe, inputs, val_fraction: float, seed: int):
    """Held-out positives and negatives, as scorer rows and targets."""
    _, val = split_by_prompt(labelled_rows(recipe, inputs), val_fraction, seed)
    return [{"prompt": p, "response": r} for p, r, _ in val], np.array([t for _, _, t in val])


def scorer_spec(target: str, lengths: Lengths, load: LoadOptions, **paths) -> dict:
    return {
        "_target_": target,
        **paths,
        "max_prompt_tokens": lengths.max_prompt_tokens,
        "max_response_tokens": lengths.max_response_tokens,
        "dtype": load.dtype,
        "trust_remote_code": load.trust_remote_code,
        "format": {"_target_": qualified_name(lengths.format)},
    }


def train_classifier(
    out_dir: Path, recipe, backbone: str, train, val, collate_cls, objective, ctx, seed
):
    """Fine-tune a scalar-head classifier from the `backbone` policy (with the model options:
    dtype, LoRA, checkpointing) and save it, LoRA merged, with the scorer spec that loads it.
    Returns that scorer, loaded back from `out_dir` as later stages will see it (under ZeRO-3
    the live module only holds this process's partition); None on the other processes of a
    multi-process run."""
    L.seed_everything(seed, workers=True, verbose=False)
    options = ctx.model
    tokenizer = load_tokenizer(backbone, options.trust_remote_code)
    model = load_classifier(backbone, tokenizer, options.dtype, options.trust_remote_code)
    model = prepare_for_training(model, options, "classifier")
    module = RewardModule(model, recipe.optim, recipe.schedule.total_steps(len(train)), objective)
    trainer = fit(
        module,
        train,
        val,
        collate_cls(tokenizer, ctx.lengths),
        recipe.schedule,
        ctx.trainer,
        ctx.logger,
        seed,
        ctx.progress,
        f"reward model {recipe.name}",
    )
    export_trained(trainer, module, tokenizer, out_dir, options.dtype)
    if not trainer.is_global_zero:
        return None
    spec = scorer_spec("afd.models.scoring.ClassifierScorer", ctx.lengths, options.load, path=".")
    save_scorer_spec(out_dir, spec)
    return load_scorer(out_dir)
