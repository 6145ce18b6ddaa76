"""Adversarial imitation: a policy trained on-policy to minimise an f-divergence D_f(beta || pi)
(reverse KL, JS, any f of afd/objectives/f_divergences.py) plus kl_coef * KL(pi || reference).

Starts from pi_SFT or pi0, trains an AdversarialModule against demonstrations of the training
split (with the model options: dtype, LoRA on policy and discriminator, gradient
checkpointing), and saves the policy in HF format, LoRA merged, with its training curve
(`history.json`: discriminator loss and accuracy, proxy reward, KL to the reference and the
gold reward of the step's samples).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import lightning as L

from afd.core.config import as_dataclass
from afd.core.errors import ConfigError
from afd.models.batching import encode_prompt, encode_response, pad_batch
from afd.models.generation.hf import banned_ids
from afd.models.loading import load_policy
from afd.models.options import prepare_for_training
from afd.models.tokenizers import load_tokenizer
from afd.recipes.adversarial.module import AdversarialModule
from afd.runtime.on_policy import summarise, train_on_policy
from afd.runtime.optim import OptimConfig
from afd.runtime.trainer import manual_trainer_kwargs
from afd.tasks.data_dir import DataDir
from afd.tasks.judge import judge_scorer

POLICIES = ("init", "sft")


class DemoCollator:
    """Rows (prompt ids, demonstration ids, response start, meta, prompt) into a batch."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows):
        seqs = [r[1] for r in rows]
        labels = [[-100] * r[2] + r[1][r[2] :] for r in rows]
        return {
            "prompt_ids": [r[0] for r in rows],
            "demos": pad_batch(seqs, self.pad_id, "right", labels),
            "meta": [r[3] for r in rows],
            "prompts": [r[4] for r in rows],
        }


def demo_rows(data: DataDir, tokenizer, lengths, num_prompts: int | None) -> list[tuple]:
    """Demonstrations as the policy can produce them (demonstrator-only tokens removed)."""
    rows = []
    for e in data.examples("train", num_prompts):
        prompt = encode_prompt(tokenizer, e.prompt, lengths)
        response = encode_response(tokenizer, data.policy_view(e.response), lengths)
        rows.append((prompt, prompt + response, len(prompt), e.meta, e.prompt))
    return rows


def _at_least(recipe, key: str, low: int) -> None:
    value = getattr(recipe, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"divergence.{key} must be an integer >= {low}, got {value!r}")


@dataclass
class Adversarial:
    """The `_target_` of conf/divergence/reverse_kl.yaml (and js, f_gan, occupancy)."""

    stage: ClassVar[str] = "adversarial"
    reads: ClassVar[tuple[str, ...]] = ("lengths", "trainer", "seed", "model", "sampling", "gold")
    trains: ClassVar[bool] = True

    name: str  # "{f}" stands for the f-divergence's name
    f: Any  # an FDivergence
    discriminator: Any  # TrajectoryDiscriminator | OccupancyDiscriminator
    start: str  # initial policy: sft | init
    reference: str  # KL anchor: sft | init
    backbone: str  # the discriminator's initial weights: sft | init
    num_prompts: int | None  # training prompts (demonstrations) used; None: all
    steps: int  # each on a fresh batch of policy samples
    prompts_per_step: int  # per process
    samples_per_prompt: int  # >= 2: the leave-one-out baseline needs siblings
    kl_coef: float  # weight of KL(pi || reference) in the policy's objective
    disc_updates_per_step: int  # discriminator updates per step ...
    policy_update_every: int  # ... and one policy update every this many steps
    disc_warmup_steps: int  # discriminator-only steps before the policy moves
    logit_clip: float  # |logit| bound before h_f (exp-type rewards explode)
    temperature: float  # of the on-policy samples
    log_every: int  # gold reward of the step's samples every this many steps
    policy_optim: OptimConfig
    disc_optim: OptimConfig

    def __post_init__(self):
        self.name = self.name.format(f=self.f.name)
        self.level = self.discriminator.level
        self.policy_optim = as_dataclass(OptimConfig, self.policy_optim, "divergence.policy_optim")
        self.disc_optim = as_dataclass(OptimConfig, self.disc_optim, "divergence.disc_optim")
        for key in ("start", "reference", "backbone"):
            if getattr(self, key) not in POLICIES:
                raise ConfigError(
                    f"divergence.{key} must be one of {POLICIES}, got {getattr(self, key)!r}"
                )
        for key, low in (("steps", 1), ("prompts_per_step", 1), ("samples_per_prompt", 2)):
            _at_least(self, key, low)
        for key, low in (("disc_updates_per_step", 1), ("policy_update_every", 1)):
            _at_least(self, key, low)
        _at_least(self, "disc_warmup_steps", 0)
        _at_least(self, "log_every", 1)
        if self.num_prompts is not None:
            _at_least(self, "num_prompts", 1)
        if self.disc_warmup_steps >= self.steps:
            raise ConfigError(
                f"divergence.disc_warmup_steps ({self.disc_warmup_steps}) leaves no "
                f"policy update in divergence.steps ({self.steps})"
            )
        if not self.kl_coef >= 0:
            raise ConfigError(f"divergence.kl_coef must be >= 0, got {self.kl_coef}")
        if not self.logit_clip > 0:
            raise ConfigError(f"divergence.logit_clip must be > 0, got {self.logit_clip}")
        if not self.temperature > 0:
            raise ConfigError(f"divergence.temperature must be > 0, got {self.temperature}")

    def policy(self, graph):
        upstream = {"data": graph.data(), **graph.gold_inputs()}
        upstream.update(
            {role: graph.policy(getattr(self, role)) for role in ("start", "reference", "backbone")}
        )
        return graph.build("policy", self, upstream)

    def build(self, out_dir: Path, ctx, inputs: dict[str, Path]) -> dict:
        """inputs: `data`, and the policies `start`, `reference` and `backbone`."""
        options = ctx.model
        data = DataDir(inputs["data"])
        L.seed_everything(ctx.seed, workers=True, verbose=False)
        tokenizer = load_tokenizer(inputs["start"], options.trust_remote_code)
        rows = demo_rows(data, tokenizer, ctx.lengths, self.num_prompts)

        def load(role):
            path = inputs[role]
            return load_policy(path, tokenizer, options.dtype, options.trust_remote_code)

        disc = self.discriminator.load(
            inputs["backbone"], tokenizer, options.dtype, options.trust_remote_code
        )
        judge = judge_scorer(ctx.gold.get(), inputs)
        module = AdversarialModule(
            prepare_for_training(load("start"), options, "causal_lm"),
            load("reference"),
            prepare_for_training(disc, options, self.discriminator.task),
            self,
            tokenizer,
            replace(ctx.sampling, temperature=self.temperature),
            ctx.seed,
            banned_ids(tokenizer, data.demonstrator_only_tokens),
            judge.score,
        )
        kwargs, module.clip = manual_trainer_kwargs(ctx.trainer)
        train_on_policy(
            module,
            rows,
            DemoCollator(tokenizer.pad_token_id),
            steps=self.steps,
            prompts_per_step=self.prompts_per_step,
            trainer_kwargs=kwargs,
            ctx=ctx,
            what=f"adversarial imitation ({self.name}, {self.level})",
            tokenizer=tokenizer,
            out_dir=out_dir,
        )
        return summarise(module.history)
