"""Loss functions as pure tensor maps, each tested against a closed form or brute force.

Forward KL between demonstrator and policy trajectory distributions reduces to token NLL
on demonstrations (SFT); the IRL discriminator is a binary classifier whose logit is the
reward; Bradley-Terry is the preference baseline.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def shift_for_next_token(logits: torch.Tensor, labels: torch.Tensor):
    """Align position t's logits with token t+1, the token it predicts."""
    return logits[:, :-1, :], labels[:, 1:]


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log pi(a_t | s_t) of the labelled next tokens and the mask of real labels."""
    logits, labels = shift_for_next_token(logits, labels)
    mask = labels != IGNORE
    safe = labels.masked_fill(~mask, 0)
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return logp * mask, mask


def sequence_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log pi(y|x) = sum over response tokens of log pi(a_t|s_t), one value per sequence."""
    logp, _ = token_logprobs(logits, labels)
    return logp.sum(-1)


def forward_kl_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """SFT loss: mean NLL of demonstration tokens.

    KL(beta || pi) = E_beta[log beta] - E_beta[log pi]; the first term does not depend on
    pi, so minimising token NLL over demonstrations minimises the trajectory forward KL.
    """
    logits, labels = shift_for_next_token(logits, labels)
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1), ignore_index=IGNORE
    )


def token_nll_sum(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of token NLL, number of labelled tokens): `forward_kl_nll` before its division.

    Data-parallel training divides by the token count of the whole global batch, not of each
    process's share, so that several processes compute the gradient one process would.
    """
    logits, labels = shift_for_next_token(logits, labels)
    total = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(),
        labels.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )
    return total, (labels != IGNORE).sum()


def discriminator_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of a classifier D = sigmoid(logit); target 1 = positive class.

    At the optimum the logit equals log p_pos(y|x) - log p_neg(y|x), the IRL reward.
    """
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float())


def bradley_terry(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """-log sigma(r(x, y_w) - r(x, y_l)), mean over pairs."""
    return -F.logsigmoid(chosen.float() - rejected.float()).mean()


def binary_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return ((logits > 0).float() == targets.float()).float().mean()


# -- policy gradient (adversarial imitation) --------------------------------------------


def leave_one_out_baseline(values: torch.Tensor, group_size: int) -> torch.Tensor:
    """For rows grouped by prompt (`group_size` consecutive rows each), the mean of the
    other rows of the group: a baseline independent of the row's own sample, so
    subtracting it leaves the policy gradient unbiased. Works on (B,) or (B, T)."""
    if group_size < 2:
        raise ValueError(
            f"a leave-one-out baseline needs >= 2 samples per prompt, got {group_size}"
        )
    grouped = values.reshape(-1, group_size, *values.shape[1:])
    total = grouped.sum(1, keepdim=True)
    return ((total - grouped) / (group_size - 1)).reshape(values.shape)


def reward_to_go(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """G_t = sum_{t' >= t} r_t' over the masked positions of each row (undiscounted)."""
    r = rewards * mask
    return (r.flip(-1).cumsum(-1).flip(-1)) * mask


def policy_gradient_loss(
    logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """REINFORCE surrogate -mean_rows sum_t A_t log pi(a_t|s_t); its gradient is the
    negated policy gradient. `advantages` are constants (detached), shaped like `logp`."""
    return -(advantages.detach() * logp * mask).sum(-1).mean()


def occupancy_bce(pos_logits, pos_mask, neg_logits, neg_mask) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary cross-entropy of a discriminator, positives (B+, T) against negatives (B-, T),
    each class weighted 1/2 and each summed over its scored positions, per sequence.

    Per sequence, not per token: the optimal logit at (s, a) is then log rho_pos(s, a) -
    log rho_neg(s, a), the ratio of the two occupancy measures (expected visits per sequence).
    A mean over tokens would normalise each class by its own token count and add
    log(E_neg[T] / E_pos[T]) to every logit, a length bonus or penalty per token. With one
    logit per sequence (trajectory level) the two coincide. Returns (loss, accuracy)."""
    wide = torch.promote_types(pos_logits.dtype, torch.float32)  # fp32 or better
    pos_terms = F.softplus(-pos_logits.to(wide)) * pos_mask
    neg_terms = F.softplus(neg_logits.to(wide)) * neg_mask
    loss = 0.5 * (pos_terms.sum() / len(pos_logits) + neg_terms.sum() / len(neg_logits))
    correct = torch.cat([(pos_logits[pos_mask] > 0), (neg_logits[neg_mask] <= 0)]).float().mean()
    return loss, correct
