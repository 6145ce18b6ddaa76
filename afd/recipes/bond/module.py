"""BondModule: on-policy Best-of-N distillation, the reverse KL(pi || pi_BoN) and its Jeffreys
mixture with the forward KL (afd/objectives/bond.py has the maths, afd/recipes/bond/online.py
the recipe).

Each step samples the current policy on a batch of training prompts (`samples_per_prompt`
replies each), scores the replies with the job's reward model, places each reward among its
prompt's reference rewards (the per-prompt CDF of pi_ref) to estimate log pi_BoN/pi_ref, and
takes a policy-gradient step on that log-ratio minus the KL to the frozen reference (coefficient
1: it is part of the divergence), with a leave-one-out baseline. With beta < 1 the loss is
beta times that surrogate plus (1 - beta) times the NLL of the prompts' Best-of-n reference
replies, the forward KL.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch

from afd.models.generation.on_policy import OnPolicySampler
from afd.models.generation.settings import SamplingSettings
from afd.models.scoring import lm_logits
from afd.objectives.bond import (
    bond_reward,
    jeffreys,
    log_bon_ratio,
    mid_quantile,
    pooled_cdf,
    reverse_kl_estimate,
    reverse_kl_loss,
)
from afd.objectives.losses import token_logprobs, token_nll_sum
from afd.recipes.spin.module import without_dropout
from afd.runtime.optim import configure


class BondModule(L.LightningModule):
    """Batches: {"prompt_ids": [[int]], "prompts": [str], "meta": [dict],
    "reference_rewards": (B, m) rewards of each prompt's reference replies, "best": lm batch of
    their Best-of-n replies (None for the pure reverse KL)}. `cfg` is the recipe (n, beta,
    samples per prompt, schedule); `reward(rows)` the proxy reward model, `gold(rows)` the gold
    judge of the training curve, where given."""

    def __init__(
        self,
        policy,
        reference,
        cfg,
        tokenizer,
        settings: SamplingSettings,
        seed: int,
        reward,
        banned_ids=(),
        gold=None,
    ):
        super().__init__()
        self.policy = policy
        self.reference = reference.eval().requires_grad_(False)
        self.cfg, self.tokenizer, self.settings, self.seed = cfg, tokenizer, settings, seed
        self.reward, self.gold, self.banned_ids = reward, gold, list(banned_ids)
        self.history: list[dict] = []
        self._sampler: OnPolicySampler | None = None

    def configure_optimizers(self):
        return configure(self.policy.parameters(), self.cfg.optim, self.cfg.steps)

    def on_fit_start(self):
        # No dropout: the log-probabilities must be those the replies were sampled with (the
        # sampler switches to eval mode and back). Train mode keeps gradient checkpointing on.
        self.policy.train()
        without_dropout(self.policy)

    def _rollouts(self, prompt_ids):
        if self._sampler is None:  # per rank, so processes draw different replies
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.global_rank)
            self._sampler = OnPolicySampler(
                self.tokenizer, self.settings, generator, self.banned_ids
            )
        rollouts = self._sampler.rollouts(self.policy, prompt_ids, self.cfg.samples_per_prompt)
        pad = self.tokenizer.pad_token_id
        return rollouts, {k: v.to(self.device) for k, v in rollouts.lm_batch(pad).items()}

    def _rows(self, batch, rollouts) -> list[dict]:
        """The replies as scorer rows, each with its prompt and the prompt's meta."""
        k = self.cfg.samples_per_prompt
        replies = self._sampler.completions(rollouts)
        return [
            {
                "prompt": batch["prompts"][i // k],
                "response": c.response,
                "meta": batch["meta"][i // k],
            }
            for i, c in enumerate(replies)
        ]

    def _forward_nll(self, best) -> torch.Tensor:
        """Forward KL(pi_BoN || pi) up to a constant: NLL per Best-of-n reply, tokens summed."""
        best = {k: v.to(self.device) for k, v in best.items()}
        nll, _ = token_nll_sum(*lm_logits(self.policy, best))
        return nll / best["input_ids"].size(0)

    def training_step(self, batch, batch_idx):
        cfg, k = self.cfg, self.cfg.samples_per_prompt
        rollouts, samples = self._rollouts(batch["prompt_ids"])
        rows = self._rows(batch, rollouts)
        rewards = torch.as_tensor(np.asarray(self.reward(rows), dtype=float))
        reference = batch["reference_rewards"].to(rewards).repeat_interleave(k, 0)
        below, at_or_below = pooled_cdf(rewards, reference)
        log_ratio = log_bon_ratio(below, at_or_below, cfg.n).to(self.device)
        with torch.no_grad():
            ref_logp, _ = token_logprobs(*lm_logits(self.reference, samples))
        logp, mask = token_logprobs(*lm_logits(self.policy, samples))
        surrogate, kl = reverse_kl_loss(logp, ref_logp, mask, log_ratio, k)
        record = {
            "step": batch_idx,
            "surrogate": surrogate.item(),
            "reverse_kl": reverse_kl_estimate(kl, log_ratio).item(),
            "bond_reward": bond_reward(log_ratio, cfg.n).mean().item(),
            "quantile": mid_quantile(below, at_or_below).mean().item(),
            "kl": kl.mean().item(),
            "reward": rewards.mean().item(),
            "entropy": float(-(logp.detach() * mask).sum(-1).mean()),
            "length": float(mask.sum(-1).float().mean()),
        }
        loss = surrogate
        if cfg.beta < 1:
            forward = self._forward_nll(batch["best"])
            loss = jeffreys(forward, surrogate, cfg.beta)
            record["forward_nll"] = forward.item()
        record["loss"] = loss.item()
        if self.gold is not None and (batch_idx % cfg.log_every == 0 or batch_idx == cfg.steps - 1):
            record["gold"] = float(np.mean(self.gold(rows)))
        self.history.append(record)
        self.log_dict(
            {f"train/{name}": v for name, v in record.items() if name != "step"},
            batch_size=len(batch["prompt_ids"]),
        )
        return loss
