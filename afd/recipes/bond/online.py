"""Best-of-N distillation on-policy (`divergence=bond_reverse|bond_jeffreys`): BOND's reverse
KL(pi || pi_BoN), mode-seeking, and its Jeffreys mixture (1 - beta) KL(pi_BoN || pi) +
beta KL(pi || pi_BoN) (Sessa et al. 2024, arXiv 2407.14622; maths in afd/objectives/bond.py),
both towards the Best-of-n of the fixed reference policy.

Upstream: the reference policy (the starting point and the KL anchor), `reference_samples`
replies of it per training prompt scored by the job's reward model (each prompt's reward CDF
under pi_ref, and for the Jeffreys mixture its Best-of-n replies: each prompt's replies in
disjoint groups of n), the reward model itself (it scores the on-policy replies) and the gold
judge (the training curve). Trains a BondModule and saves the policy in HF format, LoRA merged,
with its curve (`history.json`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import lightning as L
import numpy as np
import torch

from afd.core.artifacts import read_samples, read_scores
from afd.core.config import as_dataclass, check_count, check_number
from afd.core.errors import ConfigError
from afd.models.batching import LMCollator, encode_prompt
from afd.models.generation.hf import banned_ids
from afd.models.loading import load_policy
from afd.models.options import prepare_for_training
from afd.models.scoring import load_scorer
from afd.models.tokenizers import load_tokenizer
from afd.recipes.bond.module import BondModule
from afd.runtime.on_policy import summarise, train_on_policy
from afd.runtime.optim import OptimConfig
from afd.runtime.trainer import trainer_kwargs
from afd.tasks.data_dir import DataDir
from afd.tasks.judge import judge_scorer

DIVERGENCES = ("reverse", "jeffreys")
REFERENCES = ("sft", "init")


def prompt_rows(samples: Path, scores: Path, per_prompt: int, n: int, tokenizer, lengths):
    """One row per training prompt from its `per_prompt` consecutive reference replies: (prompt
    ids, prompt, meta, their rewards, the best of each disjoint group of n as (prompt, reply))."""
    replies, rewards = read_samples(samples), read_scores(scores).reshape(-1, per_prompt)
    rows = []
    for i, group_rewards in enumerate(rewards):
        group = replies[i * per_prompt : (i + 1) * per_prompt]
        if len({r["prompt_id"] for r in group}) != 1:
            raise ValueError(f"reference replies of {samples} are not {per_prompt} per prompt")
        first = group[0]
        best = [
            (first["prompt"], group[j + int(np.argmax(group_rewards[j : j + n]))]["response"])
            for j in range(0, per_prompt - per_prompt % n, n)
        ]
        prompt_ids = encode_prompt(tokenizer, first["prompt"], lengths)
        rows.append((prompt_ids, first["prompt"], first["meta"], group_rewards.tolist(), best))
    return rows


class PromptCollator:
    """Prompt rows into a BondModule batch; `forward`: with the Best-of-n replies' lm batch."""

    def __init__(self, tokenizer, lengths, forward: bool):
        self.lm = LMCollator(tokenizer, lengths) if forward else None

    def __call__(self, rows):
        return {
            "prompt_ids": [r[0] for r in rows],
            "prompts": [r[1] for r in rows],
            "meta": [r[2] for r in rows],
            "reference_rewards": torch.tensor([r[3] for r in rows], dtype=torch.float64),
            "best": self.lm([b for r in rows for b in r[4]]) if self.lm else None,
        }


@dataclass
class OnlineBoND:
    """The `_target_` of conf/divergence/bond_reverse.yaml and bond_jeffreys.yaml."""

    stage: ClassVar[str] = "bond"
    reads: ClassVar[tuple[str, ...]] = ("lengths", "trainer", "seed", "model", "sampling", "gold")
    trains: ClassVar[bool] = True

    name: str
    level: str
    divergence: str  # reverse: KL(pi || pi_BoN); jeffreys: (1-beta) forward + beta reverse
    beta: float  # weight of the reverse KL (1 for `reverse`)
    n: int  # the Best-of-n distilled
    reference: str  # the policy whose Best-of-n is the target, the start and the KL anchor
    num_prompts: int | None  # training prompts (None: all)
    reference_samples: int  # reference replies per prompt: its reward CDF (and BoN replies)
    steps: int  # each on fresh on-policy replies
    prompts_per_step: int  # per process
    samples_per_prompt: int  # >= 2: the leave-one-out baseline needs siblings
    temperature: float  # of the on-policy replies
    log_every: int  # gold reward of the step's replies every this many steps
    optim: OptimConfig

    def __post_init__(self):
        self.optim = as_dataclass(OptimConfig, self.optim, "divergence.optim")
        for key, choices in (("divergence", DIVERGENCES), ("reference", REFERENCES)):
            if getattr(self, key) not in choices:
                raise ConfigError(
                    f"divergence.{key} must be one of {choices}, got {getattr(self, key)!r}"
                )
        beta = self.beta
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta <= 1:
            raise ConfigError(f"divergence.beta must be in [0, 1], got {beta!r}")
        if self.divergence == "reverse" and self.beta != 1:
            raise ConfigError(
                f"divergence.beta must be 1 for divergence.divergence='reverse', got {self.beta} "
                "(divergence=bond_jeffreys mixes in the forward KL)"
            )
        for key, low in (("n", 1), ("reference_samples", 1), ("steps", 1), ("log_every", 1)):
            check_count(getattr(self, key), f"divergence.{key}", low)
        check_count(self.prompts_per_step, "divergence.prompts_per_step")
        check_count(self.samples_per_prompt, "divergence.samples_per_prompt", 2)
        check_count(self.num_prompts, "divergence.num_prompts", optional=True)
        check_number(self.temperature, "divergence.temperature", 0, above=True)
        if self.beta < 1 and self.reference_samples % self.n:
            raise ConfigError(
                f"divergence.reference_samples ({self.reference_samples}) must be a multiple of "
                f"divergence.n ({self.n}): the forward KL's Best-of-n replies are disjoint groups "
                "of n reference replies"
            )

    def policy(self, graph):
        reference = graph.policy(self.reference)
        m, tag = self.reference_samples, f"bond_{self.reference_samples}"
        pool = graph.samples(self.reference, "train", m, self.num_prompts, tag)
        reward = graph.reward()
        scores = graph.scores(pool, reward, f"{graph.label_of(reference)}/train/{tag}")
        upstream = {"data": graph.data(), "reference": reference, "samples": pool}
        upstream.update(scores=scores, reward=reward, **graph.gold_inputs())
        return graph.build("policy", self, upstream)

    def build(self, out_dir: Path, ctx, inputs: dict[str, Path]) -> dict:
        """inputs: `data`, `reference`, its `samples` on training prompts and their `scores`,
        the `reward` artifact (and the gold judge's, where trained)."""
        options = ctx.model
        L.seed_everything(ctx.seed, workers=True, verbose=False)
        tokenizer = load_tokenizer(inputs["reference"], options.trust_remote_code)
        rows = prompt_rows(
            inputs["samples"],
            inputs["scores"],
            self.reference_samples,
            self.n,
            tokenizer,
            ctx.lengths,
        )

        def load():
            path = inputs["reference"]
            return load_policy(path, tokenizer, options.dtype, options.trust_remote_code)

        data = DataDir(inputs["data"])
        module = BondModule(
            prepare_for_training(load(), options, "causal_lm"),
            load(),
            self,
            tokenizer,
            replace(ctx.sampling, temperature=self.temperature),
            ctx.seed,
            load_scorer(inputs["reward"]).score,
            banned_ids(tokenizer, data.demonstrator_only_tokens),
            judge_scorer(ctx.gold.get(), inputs).score,
        )
        what = f"Best-of-{self.n} distillation ({self.divergence} KL)"
        kwargs = trainer_kwargs(ctx.trainer)
        if kwargs.get("accumulate_grad_batches", 1) != 1:
            raise ConfigError(
                "trainer.accumulate_grad_batches must be 1 for on-policy training (each step "
                "samples the policy afresh); raise divergence.prompts_per_step instead"
            )
        train_on_policy(
            module,
            rows,
            PromptCollator(tokenizer, ctx.lengths, self.beta < 1),
            steps=self.steps,
            prompts_per_step=self.prompts_per_step,
            trainer_kwargs=kwargs,
            ctx=ctx,
            what=what,
            tokenizer=tokenizer,
            out_dir=out_dir,
        )
        return {"prompts": len(rows), **summarise(module.history)}
