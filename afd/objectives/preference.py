"""Preference losses on sequence log-probabilities: the logistic DPO loss, and SPIN, which is
the same loss with other pairs (afd/recipes/spin/).

DPO (Rafailov et al. 2023) contrasts a chosen reply y_w with a rejected one y_l through the
implicit reward r(x, y) = beta * log pi(y|x) / pi_ref(y|x):
    L = E[ ell(r(x, y_w) - r(x, y_l)) ],   ell(t) = log(1 + exp(-t)) = -log sigmoid(t).
SPIN (Chen et al. 2024, arXiv 2401.01335, Section 4: the objective L_SPIN(theta, theta_t))
takes y_w = a demonstration y ~ p_data(.|x), y_l = a sample y' ~ p_theta_t(.|x) of the previous
iterate, and pi_ref = p_theta_t; its beta is the paper's lambda. Its global optimum is
p_theta = p_data (the paper's Section 5), where demonstrations and samples cannot be told apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def logistic_loss(t: torch.Tensor) -> torch.Tensor:
    """ell(t) = log(1 + exp(-t)), computed without overflow for large |t|."""
    return F.softplus(-t)


@dataclass(frozen=True)
class PreferenceLoss:
    """The loss of a batch of pairs and its implicit rewards (detached, for logging)."""

    loss: torch.Tensor  # mean over pairs: what a training step minimises
    losses: torch.Tensor  # one per pair
    chosen_rewards: torch.Tensor  # beta * log pi(y_w|x) / pi_ref(y_w|x)
    rejected_rewards: torch.Tensor  # beta * log pi(y_l|x) / pi_ref(y_l|x)

    @property
    def margins(self) -> torch.Tensor:
        return self.chosen_rewards - self.rejected_rewards

    @property
    def margin(self) -> torch.Tensor:
        """The mean implicit-reward margin r(x, y_w) - r(x, y_l)."""
        return self.margins.mean()

    @property
    def accuracy(self) -> torch.Tensor:
        """The share of pairs whose chosen reply has the strictly larger implicit reward."""
        return (self.margins > 0).float().mean()


def dpo_loss(
    policy_chosen_logp: torch.Tensor,
    policy_rejected_logp: torch.Tensor,
    ref_chosen_logp: torch.Tensor,
    ref_rejected_logp: torch.Tensor,
    beta: float,
) -> PreferenceLoss:
    """ell(beta * [(log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))]) per pair, from
    (B,) sequence log-probabilities; the reference's are constants. Computed in float32 or
    wider, whatever the model's dtype."""
    wide = torch.promote_types(policy_chosen_logp.dtype, torch.float32)
    chosen = policy_chosen_logp.to(wide) - ref_chosen_logp.to(wide).detach()
    rejected = policy_rejected_logp.to(wide) - ref_rejected_logp.to(wide).detach()
    losses = logistic_loss(beta * (chosen - rejected))
    return PreferenceLoss(
        loss=losses.mean(),
        losses=losses,
        chosen_rewards=beta * chosen.detach(),
        rejected_rewards=beta * rejected.detach(),
    )
