"""AdversarialModule: imitation by minimising an f-divergence (reverse KL, JS, ...) on-policy.

Each training step samples the current policy on a batch of prompts, updates the
discriminator D on demonstrations (positive) against those samples (negative), then takes
a policy-gradient step on the reward h_f(logit D) (afd/objectives/f_divergences.py) minus a
KL penalty to a frozen reference policy, with a leave-one-out baseline over each prompt's samples.

One optimizer holds both models as parameter groups tagged with their role, and updates
are manual: a step trains one role and gives the other a learning rate of 0. That keeps
to DeepSpeed's one-optimizer rule (Lightning's DeepSpeed strategy wraps exactly one). Under
DeepSpeed the idle role's gradients are zeros rather than None, so Adam's moments of the
idle role decay a little on the other role's steps; with plain torch they are untouched.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch

from afd.models.generation.on_policy import OnPolicySampler
from afd.models.generation.settings import SamplingSettings
from afd.models.scoring import lm_logits
from afd.objectives.losses import (
    leave_one_out_baseline,
    occupancy_bce,
    policy_gradient_loss,
    reward_to_go,
    token_logprobs,
)
from afd.runtime.optim import lr_factor

ROLES = ("policy", "discriminator")


class AdversarialModule(L.LightningModule):
    """Batches: {"prompt_ids": [[int]], "prompts": [str], "demos": lm batch of
    demonstrations, "meta": [dict]}. `cfg` is the recipe (afd/recipes/adversarial/recipe.py):
    f-divergence, discriminator kind, schedule and optimisers. `gold(rows)` scores the step's
    samples for the training curve, where given."""

    def __init__(
        self,
        policy,
        reference,
        discriminator,
        cfg,
        tokenizer,
        settings: SamplingSettings,
        seed: int,
        banned_ids=(),
        gold=None,
    ):
        super().__init__()
        self.policy, self.discriminator = policy, discriminator
        self.reference = reference.eval().requires_grad_(False)
        self.disc_kind, self.divergence, self.cfg = cfg.discriminator, cfg.f, cfg
        self.tokenizer, self.settings, self.seed = tokenizer, settings, seed
        self.pad_id = tokenizer.pad_token_id
        self.banned_ids, self.gold = list(banned_ids), gold
        self.clip: float | None = None  # gradient-clipping norm, applied here (manual steps)
        self.automatic_optimization = False
        self.history: list[dict] = []
        self._sampler: OnPolicySampler | None = None

    # -- optimisation -------------------------------------------------------------------
    def configure_optimizers(self):
        groups = []
        for role, model, optim in (
            ("policy", self.policy, self.cfg.policy_optim),
            ("discriminator", self.discriminator, self.cfg.disc_optim),
        ):
            params = [p for p in model.parameters() if p.requires_grad]
            for decay in (True, False):
                chosen = [p for p in params if (p.ndim >= 2) == decay]
                if not chosen:  # DeepSpeed drops empty groups (LoRA trains no bias)
                    continue
                groups.append(
                    {
                        "params": chosen,
                        "lr": optim.lr,
                        "betas": tuple(optim.betas),
                        "weight_decay": optim.weight_decay if decay else 0.0,
                        "role": role,
                    }
                )
        return torch.optim.AdamW(groups)

    def _update(self, loss: torch.Tensor, role: str, step: int) -> None:
        opt = self.optimizers()
        optim = self.cfg.policy_optim if role == "policy" else self.cfg.disc_optim
        lr = optim.lr * lr_factor(optim, step, self.cfg.steps)
        for group in opt.optimizer.param_groups:
            group["lr"] = lr if group["role"] == role else 0.0
        opt.zero_grad()
        self.manual_backward(loss)
        if self.clip:
            self.clip_gradients(opt, gradient_clip_val=self.clip, gradient_clip_algorithm="norm")
        opt.step()

    # -- pieces of a step ---------------------------------------------------------------
    def _disc_logits(self, batch):
        return self.disc_kind.logits(self.discriminator, batch)

    def discriminator_loss(self, demos, samples) -> tuple[torch.Tensor, torch.Tensor]:
        """Demonstrations (positive) against policy samples, on the raw logits: a clip here
        would leave a confidently wrong discriminator without a gradient to recover by."""
        pos, pos_mask = self._disc_logits(demos)
        neg, neg_mask = self._disc_logits(samples)
        return occupancy_bce(pos, pos_mask, neg, neg_mask)

    def _rollouts(self, prompt_ids):
        if self._sampler is None:  # per rank, so processes draw different samples
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.global_rank)
            self._sampler = OnPolicySampler(
                self.tokenizer, self.settings, generator, self.banned_ids
            )
        rollouts = self._sampler.rollouts(self.policy, prompt_ids, self.cfg.samples_per_prompt)
        batch = {k: v.to(self.device) for k, v in rollouts.lm_batch(self.pad_id).items()}
        return rollouts, batch

    def _policy_loss(self, batch) -> tuple[torch.Tensor, dict]:
        cfg, k = self.cfg, self.cfg.samples_per_prompt
        with torch.no_grad():
            disc_logits, disc_mask = self._disc_logits(batch)
            # the clip bounds the policy's reward (exp-type rewards explode), nothing else
            disc_logits = disc_logits.clamp(-cfg.logit_clip, cfg.logit_clip)
            rewards = self.divergence.reward(disc_logits) * disc_mask
            ref_logp, _ = token_logprobs(*lm_logits(self.reference, batch))
        # log-probabilities of the reply tokens only (their positions, the same in both)
        logp, mask = token_logprobs(*lm_logits(self.policy, batch))
        if rewards.shape[1] > 1:  # per-token rewards over the same reply positions
            rewards, disc_mask = rewards[:, -logp.shape[1] :], disc_mask[:, -logp.shape[1] :]
            disc_logits = disc_logits[:, -logp.shape[1] :]
        kl_t = (logp.detach() - ref_logp) * mask
        if rewards.shape[1] == 1:  # trajectory level: one reward at the end of each response
            total = rewards[:, 0] - cfg.kl_coef * kl_t.sum(-1)
            advantages = (total - leave_one_out_baseline(total, k))[:, None].expand_as(logp)
        else:  # occupancy level: per-token rewards, reward-to-go, per-position baseline
            returns = reward_to_go(rewards - cfg.kl_coef * kl_t, mask)
            advantages = (returns - leave_one_out_baseline(returns, k)) * mask
        loss = policy_gradient_loss(logp, advantages, mask)
        stats = {
            "reward": float((rewards.sum(-1)).mean()),
            "logit": float(disc_logits[disc_mask].mean()),
            "kl": float(kl_t.sum(-1).mean()),
            "entropy": float(-(logp.detach() * mask).sum(-1).mean()),
            "length": float(mask.sum(-1).float().mean()),
        }
        return loss, stats

    # -- the step -----------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        cfg, step = self.cfg, batch_idx
        rollouts, samples = self._rollouts(batch["prompt_ids"])
        demos = batch["demos"]
        for _ in range(cfg.disc_updates_per_step):
            disc_loss, disc_acc = self.discriminator_loss(demos, samples)
            self._update(disc_loss, "discriminator", step)
        record = {"step": step, "disc_loss": disc_loss.item(), "disc_accuracy": disc_acc.item()}
        if (
            step >= cfg.disc_warmup_steps
            and (step - cfg.disc_warmup_steps) % cfg.policy_update_every == 0
        ):
            loss, stats = self._policy_loss(samples)
            self._update(loss, "policy", step)
            record.update(stats, policy_loss=loss.item())
        if self.gold is not None and (step % cfg.log_every == 0 or step == cfg.steps - 1):
            replies = self._sampler.completions(rollouts)
            k = cfg.samples_per_prompt
            rows = [
                {
                    "prompt": batch["prompts"][i // k],
                    "response": c.response,
                    "meta": batch["meta"][i // k],
                }
                for i, c in enumerate(replies)
            ]
            record["gold"] = float(np.mean(self.gold(rows)))
        self.history.append(record)
        self.log_dict(
            {f"train/{k}": v for k, v in record.items() if k != "step"},
            batch_size=len(batch["prompt_ids"]),
        )
