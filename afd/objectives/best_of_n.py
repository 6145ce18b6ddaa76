"""Best-of-n selection and its exact expected value from a pool of N >= n samples.

Drawing n of the N pooled samples uniformly without replacement, the one with rank i
(ascending by proxy reward, 1-based) is chosen with probability C(i-1, n-1) / C(N, n);
tied proxy scores share their weight equally (a uniform tie-break). This uses every
sample for every n instead of one random subset per n.

The KL that Best-of-n spends is measured on the same pool (`bon_kl`): the pool is the base
distribution (each sample an atom of mass 1/N; a reply drawn twice is two atoms of one
text), Best-of-n draws n of it with replacement and keeps the highest proxy score (ties
broken uniformly), and its KL to the pool is exact for that discrete base:
    KL = sum_k q_k log(q_k / p_k),   q_k = F_k^n - F_{k-1}^n,   p_k = c_k / N,
over the distinct scores k in ascending order, c_k samples with score k and F_k the pool's
CDF at it (Beirami et al. 2024, arXiv 2401.01879, Sec. 3 and Theorem 1). It never exceeds
log n - (n-1)/n, which it approaches only with distinct scores in a large pool; ties (the
same reply drawn again, equal rewards) make it smaller.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln


def kl_analytic(n: int) -> float:
    """KL(BoN(n) || base) = log n - (n-1)/n, the standard analytic bound."""
    return math.log(n) - (n - 1) / n


def bon_kl(scores: np.ndarray, n: int) -> float:
    """KL(Best-of-n || base) with the pool of `scores` as the base distribution (see above)."""
    scores = np.asarray(scores, dtype=float)
    if not np.isfinite(scores).all():
        raise ValueError(f"best-of-n over non-finite scores: {scores[~np.isfinite(scores)][:3]}")
    if n < 1:
        raise ValueError(f"best-of-n needs n >= 1, got n={n}")
    _, counts = np.unique(scores, return_counts=True)  # ascending
    cdf = np.cumsum(counts) / len(scores)
    q = cdf**n - np.concatenate([[0.0], cdf[:-1]]) ** n
    p = counts / len(scores)
    kept = q > 0
    return float(max(0.0, np.sum(q[kept] * np.log(q[kept] / p[kept]))))


def _log_comb(a: np.ndarray, b: int) -> np.ndarray:
    out = np.full(a.shape, -np.inf)
    ok = a >= b
    out[ok] = gammaln(a[ok] + 1) - gammaln(b + 1.0) - gammaln(a[ok] - b + 1)
    return out


def selection_probabilities(scores: np.ndarray, n: int) -> np.ndarray:
    """P(sample j is best of a uniform n-subset of the pool), for each j; sums to 1."""
    scores = np.asarray(scores, dtype=float)
    size = len(scores)
    if not np.isfinite(scores).all():
        # sorting would rank NaN above every real score: it would win best-of-n silently
        raise ValueError(f"best-of-n over non-finite scores: {scores[~np.isfinite(scores)][:3]}")
    if not 1 <= n <= size:
        raise ValueError(f"best-of-n needs 1 <= n <= pool size ({size}), got n={n}")
    order = np.argsort(scores, kind="stable")
    positions = np.arange(1, size + 1, dtype=float)
    by_rank = np.exp(_log_comb(positions - 1, n - 1) - _log_comb(np.array([float(size)]), n)[0])
    sorted_scores = scores[order]
    # Ties: every tied sample is equally likely to win, so average the rank weights.
    _, group_start, group_size = np.unique(sorted_scores, return_index=True, return_counts=True)
    for start, count in zip(group_start, group_size):
        if count > 1:
            by_rank[start : start + count] = by_rank[start : start + count].mean()
    weights = np.empty(size)
    weights[order] = by_rank
    return weights


def expected_best_of_n(values: np.ndarray, scores: np.ndarray, n: int) -> float:
    """E[value of the sample chosen by best-of-n on `scores`]."""
    return float(selection_probabilities(scores, n) @ np.asarray(values, dtype=float))


def win_probabilities(gold: np.ndarray, against: np.ndarray | None = None) -> np.ndarray:
    """For each pooled sample, P(it beats one sample of `against`, by default the pool itself)
    by gold reward, ties counting 1/2."""
    gold = np.asarray(gold, dtype=float)
    other = gold if against is None else np.asarray(against, dtype=float)
    less = (other[None, :] < gold[:, None]).mean(1)
    equal = (other[None, :] == gold[:, None]).mean(1)
    return less + 0.5 * equal


def bon_curve(
    gold: np.ndarray, proxy: np.ndarray, ns, against: np.ndarray | None = None
) -> dict[int, dict[str, float]]:
    """Per n: mean and s.e.m. over prompts of expected gold and proxy reward of BoN(n), and
    its win rate by gold against one sample of the `against` pool (the same prompts' samples
    of another policy; by default the pool's own policy).

    gold, proxy: arrays of shape (prompts, N) with the pool's gold and proxy rewards.
    """
    gold, proxy = np.asarray(gold, dtype=float), np.asarray(proxy, dtype=float)
    if gold.shape != proxy.shape or gold.ndim != 2:
        raise ValueError(
            f"gold and proxy must both be (prompts, N); got {gold.shape}, {proxy.shape}"
        )
    if against is not None and len(against) != len(gold):
        raise ValueError(f"`against` has {len(against)} prompts, the pool {len(gold)}")
    rivals = [None] * len(gold) if against is None else list(against)
    wins = np.stack([win_probabilities(g, r) for g, r in zip(gold, rivals)])
    curve = {}
    for n in ns:
        weights = np.stack([selection_probabilities(p, n) for p in proxy])
        per_prompt = {
            "gold": (weights * gold).sum(1),
            "proxy": (weights * proxy).sum(1),
            "win_rate": (weights * wins).sum(1),
        }
        kl = np.array([bon_kl(p, n) for p in proxy])
        curve[int(n)] = {"kl_analytic": kl_analytic(n), "kl_mean": float(kl.mean())}
        curve[int(n)]["kl_sem"] = sem(kl)
        for name, values in per_prompt.items():
            curve[int(n)][f"{name}_mean"] = float(values.mean())
            curve[int(n)][f"{name}_sem"] = sem(values)
    return curve


def sem(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
