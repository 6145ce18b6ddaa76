"""The Best-of-n estimator against brute-force enumeration of subsets."""

import itertools
import math

import numpy as np
import pytest

from afd.objectives.best_of_n import (
    bon_curve,
    bon_kl,
    expected_best_of_n,
    kl_analytic,
    selection_probabilities,
    win_probabilities,
)


def brute_force_bon(values, scores, n):
    """Average over every n-subset of the value of its best-scored member (ties: mean)."""
    totals = []
    for subset in itertools.combinations(range(len(scores)), n):
        best = max(scores[j] for j in subset)
        totals.append(np.mean([values[j] for j in subset if scores[j] == best]))
    return float(np.mean(totals))


@pytest.mark.parametrize("seed", range(5))
def test_matches_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    size = 8
    scores = rng.integers(0, 4, size).astype(float)  # many ties
    values = rng.normal(size=size)
    for n in range(1, size + 1):
        assert expected_best_of_n(values, scores, n) == pytest.approx(
            brute_force_bon(values, scores, n), abs=1e-12
        )


def test_extremes():
    scores = np.array([0.3, 2.0, -1.0, 0.5])
    values = np.array([1.0, 2.0, 3.0, 4.0])
    assert expected_best_of_n(values, scores, 1) == pytest.approx(values.mean())
    assert expected_best_of_n(values, scores, 4) == pytest.approx(2.0)
    w = selection_probabilities(scores, 2)
    assert w.sum() == pytest.approx(1.0)
    assert w[2] == 0.0  # the lowest-scored sample never wins a pair


def test_large_pool_is_stable():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=1024)
    w = selection_probabilities(scores, 512)
    assert np.isfinite(w).all() and w.sum() == pytest.approx(1.0)


def test_invalid_n():
    with pytest.raises(ValueError, match="1 <= n <= pool size"):
        selection_probabilities(np.zeros(4), 5)


def test_win_rate_brute_force():
    rng = np.random.default_rng(1)
    gold = rng.integers(0, 3, size=(3, 6)).astype(float)
    proxy = rng.normal(size=(3, 6))
    curve = bon_curve(gold, proxy, [1, 3])
    assert curve[1]["win_rate_mean"] == pytest.approx(0.5)
    # brute force: P(gold(BoN(3)) > gold(y')) + 1/2 P(=), y' uniform from the pool
    per_prompt = []
    for g, p in zip(gold, proxy):
        rates = []
        for subset in itertools.combinations(range(6), 3):
            j = max(subset, key=lambda k: p[k])
            rates.append(np.mean([(g[j] > g[k]) + 0.5 * (g[j] == g[k]) for k in range(6)]))
        per_prompt.append(np.mean(rates))
    assert curve[3]["win_rate_mean"] == pytest.approx(np.mean(per_prompt))
    assert win_probabilities(np.array([1.0, 1.0])).tolist() == [0.5, 0.5]


def test_gold_rises_with_n_when_proxy_is_gold():
    rng = np.random.default_rng(2)
    gold = rng.normal(size=(20, 32))
    curve = bon_curve(gold, gold, [1, 2, 4, 8, 16, 32])
    means = [curve[n]["gold_mean"] for n in (1, 2, 4, 8, 16, 32)]
    assert all(a < b for a, b in zip(means, means[1:]))


def test_kl_analytic():
    assert kl_analytic(1) == 0.0
    assert kl_analytic(64) == pytest.approx(math.log(64) - 63 / 64)


def test_a_non_finite_score_never_wins():
    """Sorting puts NaN above every real score: best-of-n over it must stop, not select it."""
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="non-finite"):
            selection_probabilities(np.array([0.1, bad, 0.3]), 2)


def test_win_rate_against_another_pool_by_brute_force():
    """P(best-of-n of pool A beats one sample of pool B), by enumerating subsets and B."""
    rng = np.random.default_rng(3)
    gold_a, proxy_a = rng.integers(0, 4, 6).astype(float), rng.normal(size=6)
    gold_b = rng.integers(0, 4, 5).astype(float)
    for n in (1, 2, 4):
        wins = []
        for subset in itertools.combinations(range(6), n):
            best = max(subset, key=lambda j: proxy_a[j])
            wins += [1.0 if gold_a[best] > b else 0.5 if gold_a[best] == b else 0.0 for b in gold_b]
        curve = bon_curve(gold_a[None], proxy_a[None], [n], against=gold_b[None])
        assert curve[n]["win_rate_mean"] == pytest.approx(np.mean(wins))
    # against itself by default: the old meaning, the same numbers
    own = bon_curve(gold_a[None], proxy_a[None], [2])[2]["win_rate_mean"]
    assert own == pytest.approx(
        bon_curve(gold_a[None], proxy_a[None], [2], against=gold_a[None])[2]["win_rate_mean"]
    )


def brute_force_bon_kl(scores, n: int) -> float:
    """KL(Best-of-n || pool) by enumerating every ordered draw of n pool items with
    replacement; tied maxima split the win equally among the draws that hold them."""
    size = len(scores)
    q = np.zeros(size)
    for draw in itertools.product(range(size), repeat=n):
        best = max(scores[j] for j in draw)
        winners = [j for j in draw if scores[j] == best]
        for j in winners:
            q[j] += 1 / len(winners) / size**n
    kept = q > 0
    return float(np.sum(q[kept] * np.log(q[kept] * size)))


@pytest.mark.parametrize(
    "scores",
    [
        [0.3, -1.0, 2.0, 0.7, 1.1],  # distinct
        [1.0, 1.0, 0.0, 2.0, 2.0],  # ties at the top and in the middle
        [0.5, 0.5, 0.5, 0.5],  # one reply drawn four times: Best-of-n changes nothing
        [3.0, 1.0, 1.0, 1.0, 1.0],  # a concentrated pool
    ],
)
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_bon_kl_is_the_brute_force_kl_and_within_the_bound(scores, n):
    got = bon_kl(np.array(scores), n)
    assert got == pytest.approx(brute_force_bon_kl(scores, n), abs=1e-12)
    assert got <= kl_analytic(n) + 1e-12


def test_bon_kl_reaches_the_bound_only_on_large_pools_of_distinct_scores():
    rng = np.random.default_rng(0)
    for n in (4, 16, 64):
        large = bon_kl(rng.normal(size=200_000), n)
        assert kl_analytic(n) - 0.01 < large <= kl_analytic(n)
    # ties cost KL: a pool of four distinct replies each drawn 16 times
    tied = np.repeat(rng.normal(size=4), 16)
    assert bon_kl(tied, 16) <= math.log(4) < kl_analytic(16)


def test_bon_curve_reports_the_measured_kl_next_to_the_bound():
    rng = np.random.default_rng(1)
    proxy = rng.normal(size=(5, 16)).round(1)  # rounding makes ties
    curve = bon_curve(rng.normal(size=(5, 16)), proxy, [1, 4, 16])
    assert curve[1]["kl_mean"] == 0.0
    for n in (4, 16):
        exact = np.mean([bon_kl(p, n) for p in proxy])
        assert curve[n]["kl_mean"] == pytest.approx(exact)
        assert curve[n]["kl_mean"] <= curve[n]["kl_analytic"]
    assert curve[4]["kl_mean"] < curve[16]["kl_mean"]
