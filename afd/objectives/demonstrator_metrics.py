"""Divergence metrics between a policy and a known demonstrator, per prompt (the `div/*` numbers).

Used on the synthetic task, whose demonstrator beta(y|x) has an enumerable support: the
forward KL is exact, the rest are estimated on policy samples. The policy stage
(afd/pipeline/stages/policy_metrics.py) feeds these functions log pi of the samples and of beta's
support; they are pure and tested against closed forms on categorical distributions.

Reverse KL smoothing: beta is zero outside its support, so KL(pi || beta) is infinite for
any policy that ever leaves it. `reverse_kl_estimate` smooths beta with the policy itself,
beta_eps = (1 - eps) beta + eps pi with eps = SMOOTHING_EPS = 1e-6 (the skew divergence
KL(pi || beta_eps), finite and >= 0): a sample outside beta's support costs exactly
-log eps = 13.8 nats, one inside it log pi(y|x) - log beta_eps(y|x).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

SMOOTHING_EPS = 1e-6


def forward_kl_exact(beta: dict[str, float], logp_pi: dict[str, float]) -> float:
    """KL(beta || pi) = sum over beta's support of beta(y) (log beta(y) - log pi(y)), exact."""
    return float(sum(b * (math.log(b) - logp_pi[y]) for y, b in beta.items() if b > 0))


def reverse_kl_estimate(
    logp_pi: Sequence[float], logp_beta: Sequence[float], eps: float = SMOOTHING_EPS
) -> float:
    """Monte Carlo KL(pi || (1 - eps) beta + eps pi) on samples of pi (log beta = -inf
    outside beta's support)."""
    logp_pi, logp_beta = np.asarray(logp_pi, float), np.asarray(logp_beta, float)
    smoothed = np.logaddexp(math.log1p(-eps) + logp_beta, math.log(eps) + logp_pi)
    return float(np.mean(logp_pi - smoothed))


def entropy_estimate(logp_pi: Sequence[float]) -> float:
    """H(pi(.|x)) = -E_pi[log pi(y|x)], in nats, on samples of pi."""
    return float(-np.mean(np.asarray(logp_pi, float)))


def precision(samples: Sequence[str], support: dict[str, float]) -> float:
    """Share of samples inside beta's support."""
    return float(np.mean([s in support for s in samples]))


def support_mass(logp_support: dict[str, float]) -> float:
    """pi's exact probability of landing in beta's support: what `precision` estimates."""
    return float(sum(math.exp(v) for v in logp_support.values()))


def coverage(samples: Sequence[str], modes: dict[str, float]) -> tuple[float, float]:
    """(beta-mass of the modes that appear among the samples, share of modes that appear).

    Mode-seeking policies produce few of beta's modes however many samples they draw;
    the mass-weighted share is the demonstrator's probability of a reply the policy
    produced."""
    produced = set(samples)
    hit = [m for m in modes if m in produced]
    total = sum(modes.values())
    return float(sum(modes[m] for m in hit) / total), len(hit) / len(modes)


def expected_coverage(pi_modes: dict[str, float], modes: dict[str, float], k: int) -> float:
    """Closed form of E[mass coverage] for k independent samples of pi: each mode appears
    with probability 1 - (1 - pi(m))^k. (For tests and for reading the metric.)"""
    total = sum(modes.values())
    return float(sum(b * (1 - (1 - pi_modes.get(m, 0.0)) ** k) for m, b in modes.items()) / total)
