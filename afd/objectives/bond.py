"""Best-of-N distillation (BOND, Sessa et al. 2024, arXiv 2407.14622) as pure tensor maps: the
Best-of-N distribution from reward quantiles, its estimate from reference samples, and the
reverse-KL and Jeffreys objectives that `divergence=bond_reverse|bond_jeffreys` train with
(afd/recipes/bond/). Equations are cited by the paper's sections (v1: Sec. 3 "The BOND
approach", Sec. 4 "BOND challenges and algorithms", Sec. 5 "The J-BOND algorithm") and derived
here, so they stand on their own.

Best-of-N distribution (Sec. 3, Theorem 1). Draw N replies from pi_ref, keep the one of highest
reward (the first of equal ones, as numpy's argmax; any exchangeable tie-break gives the same
law). With p_<(y) = P_ref[r(y') < r(y)] and p_<=(y) = P_ref[r(y') <= r(y)], y is chosen at
position i when the i-1 replies before it score below r(y) and the N-i after it at most r(y):
    pi_BoN(y) = pi_ref(y) * sum_{i=1..N} p_<(y)^(i-1) p_<=(y)^(N-i)              (Theorem 1)
              = pi_ref(y) * (p_<=^N - p_<^N) / (p_<= - p_<)      where p_<= > p_<.
For continuous rewards (no ties) p_< = p_<= = F(r(y)), the reward's CDF under pi_ref, and
    log pi_BoN(y) - log pi_ref(y) = log N + (N-1) log F(r(y)).                  (Sec. 3)

Quantile estimate (Sec. 4: F from reference samples of the same prompt). F is unknown; each
prompt has m reference replies with rewards r_1..r_m. The estimate is Theorem 1 applied to the
empirical distribution of the pool {y, y_1..y_m} (y itself one atom of mass 1/(m+1)):
    p^_<  = #{j: r_j < r}      / (m+1),
    p^_<= = (#{j: r_j <= r} + 1) / (m+1),
    log pi^_BoN(y) - log pi_ref(y) = log sum_{i=1..N} p^_<^(i-1) p^_<=^(N-i)  (`log_bon_ratio`).
Counting y in its own pool is the smoothing: p^_<= >= 1/(m+1) > 0, so the lowest reply gets a
finite log-ratio (N-1) log(1/(m+1)) instead of -inf; ties (a discrete reward, the same reply
twice) are the p^_<= > p^_< case of Theorem 1, exact as m grows; without ties the ratio is
N * xi^(N-1) for some xi in [p^_<, p^_<=], whose midpoint, the mid-rank quantile
    F^ = (#{r_j < r} + 0.5 #{r_j = r} + 0.5) / (m+1)                          (`mid_quantile`),
is what the training curve reports. For y ~ pi_ref with continuous rewards the estimated ratio
has expectation exactly 1 (the sum over ranks telescopes): the estimate is normalised.

Reverse KL (Sec. 4, the backward KL; mode-seeking). With the estimate above,
    KL(pi || pi_BoN) = E_pi[log pi(y) - log pi_ref(y)] - E_pi[log pi_BoN(y)/pi_ref(y)]
                     = KL(pi || pi_ref) - (N-1) E_pi[log F(r(y))] - log N,
so its gradient is a policy gradient with reward (N-1) log F(r(y)) (the BOND reward) and a KL
penalty to pi_ref of coefficient exactly 1 (grad E_pi[f_theta] = E_pi[grad log pi * f] since
E_pi[grad log pi] = 0). Per reply the return is log-ratio - sum_t log(pi/pi_ref), and a
leave-one-out baseline over each prompt's replies keeps the estimate unbiased.

Jeffreys divergence (Sec. 4):
    J_beta(pi, pi_BoN) = (1 - beta) KL(pi_BoN || pi) + beta KL(pi || pi_BoN),
the forward part being the NLL of Best-of-N replies summed over each reply's tokens (the
sequence-level forward KL, up to a constant), the reverse part the policy gradient above. The
target here is the Best-of-N of a fixed pi_ref; the paper's J-BOND algorithm (Sec. 5) applies
the same divergence iteratively, to Best-of-2 of a moving (EMA) anchor.
"""

from __future__ import annotations

import math

import torch

from afd.objectives.losses import leave_one_out_baseline, policy_gradient_loss


def pooled_cdf(rewards: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(p^_<, p^_<=) of each reply's reward `rewards` (B,) among its prompt's reference rewards
    `reference` (B, m), on the pool of the m reference replies and the reply itself."""
    pool = reference.shape[-1] + 1
    below = (reference < rewards[:, None]).sum(-1).to(torch.float64)
    at_or_below = (reference <= rewards[:, None]).sum(-1).to(torch.float64) + 1
    return below / pool, at_or_below / pool


def mid_quantile(below: torch.Tensor, at_or_below: torch.Tensor) -> torch.Tensor:
    """F^ = (p^_< + p^_<=) / 2: the mid-rank quantile, (#< + #= / 2 + 1/2) / (m+1) on a pool."""
    return (below + at_or_below) / 2


def log_bon_ratio(below: torch.Tensor, at_or_below: torch.Tensor, n: int) -> torch.Tensor:
    """log pi_BoN(y) - log pi_ref(y) = log sum_{i=1..n} p_<^(i-1) p_<=^(n-i) (Theorem 1), from
    the probabilities of a lower and of an at-most-equal reward (population or pooled); needs
    p_<= > 0. Equals log n + (n-1) log F where p_< = p_<= = F (no ties)."""
    if n < 1:
        raise ValueError(f"Best-of-n needs n >= 1, got {n}")
    i = torch.arange(1, n + 1, dtype=torch.float64, device=below.device)
    a, b = below.to(torch.float64)[..., None], at_or_below.to(torch.float64)[..., None]
    # xlogy: 0 * log 0 = 0, so the term without a lower reply survives p_< = 0
    terms = torch.xlogy(i - 1, a) + torch.xlogy(n - i, b)
    return torch.logsumexp(terms, dim=-1)


def best_of_n_distribution(probs: torch.Tensor, rewards: torch.Tensor, n: int) -> torch.Tensor:
    """The exact Best-of-n distribution of a categorical `probs` (K,) whose outcomes have
    `rewards` (K,) (ties allowed), by Theorem 1 with the population p_< and p_<=."""
    lower = rewards[None, :] < rewards[:, None]  # [k, j]: r_j < r_k
    below = (lower * probs[None, :]).sum(-1)
    at_or_below = ((rewards[None, :] <= rewards[:, None]) * probs[None, :]).sum(-1)
    return probs * log_bon_ratio(below, at_or_below, n).exp().to(probs.dtype)


def bond_reward(log_ratio: torch.Tensor, n: int) -> torch.Tensor:
    """The BOND reward (n-1) log F: the log-ratio without its constant log n."""
    return log_ratio - math.log(n)


def reverse_kl_advantages(
    log_ratio: torch.Tensor, kl: torch.Tensor, group_size: int
) -> torch.Tensor:
    """Per reply (B,), grouped `group_size` replies per prompt: the return
    log pi^_BoN/pi_ref - log pi/pi_ref (`kl`, summed over the reply's tokens) minus the mean
    return of the prompt's other replies. Constants: the gradient flows through log pi only."""
    returns = (log_ratio - kl).detach()
    return returns - leave_one_out_baseline(returns, group_size)


def reverse_kl_loss(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    mask: torch.Tensor,
    log_ratio: torch.Tensor,
    group_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(surrogate, per-reply KL to pi_ref): the surrogate's gradient is an unbiased estimate of
    grad KL(pi || pi^_BoN) from on-policy replies. `logp` and `ref_logp` (B, T) are the policy's
    and the reference's log-probabilities of the reply tokens (`mask`), `log_ratio` (B,) the
    estimated log pi_BoN/pi_ref of each reply."""
    kl = ((logp.detach() - ref_logp) * mask).sum(-1)
    advantages = reverse_kl_advantages(log_ratio.to(kl.dtype), kl, group_size)
    return policy_gradient_loss(logp, advantages[:, None].expand_as(logp), mask), kl


def reverse_kl_estimate(kl: torch.Tensor, log_ratio: torch.Tensor) -> torch.Tensor:
    """Monte-Carlo KL(pi || pi^_BoN) = mean over on-policy replies of log pi/pi_ref minus the
    estimated log pi_BoN/pi_ref."""
    return (kl - log_ratio.to(kl.dtype)).mean()


def jeffreys(forward: torch.Tensor, reverse: torch.Tensor, beta: float) -> torch.Tensor:
    """J_beta = (1 - beta) forward KL + beta reverse KL (Jeffreys); beta = 1: the reverse KL."""
    if not 0 <= beta <= 1:
        raise ValueError(f"the Jeffreys weight beta must be in [0, 1], got {beta}")
    return (1 - beta) * forward + beta * reverse
