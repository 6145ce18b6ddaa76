"""Divergence metrics and diversity measures against closed forms on small categoricals."""

import math
import random

import pytest

from afd.objectives.demonstrator_metrics import (
    SMOOTHING_EPS,
    coverage,
    entropy_estimate,
    expected_coverage,
    forward_kl_exact,
    precision,
    reverse_kl_estimate,
    support_mass,
)
from afd.objectives.diversity import bleu, distinct_n, self_bleu

BETA = {"a": 0.5, "b": 0.3, "c": 0.2}  # the demonstrator: three modes
PI = {"a": 0.5, "b": 0.25, "x": 0.25}  # a policy that drops mode c and leaves the support
# A sample of PI with exact proportions, so Monte Carlo estimators equal their expectation.
EXACT_SAMPLE = ["a", "a", "b", "x"]


def test_forward_kl_is_exact_over_the_support():
    logp = {y: math.log(p) for y, p in {"a": 0.6, "b": 0.3, "c": 0.1}.items()}
    expected = 0.5 * math.log(0.5 / 0.6) + 0.3 * math.log(0.3 / 0.3) + 0.2 * math.log(0.2 / 0.1)
    assert forward_kl_exact(BETA, logp) == pytest.approx(expected)
    assert forward_kl_exact(BETA, {y: math.log(p) for y, p in BETA.items()}) == pytest.approx(0.0)


def skew_kl(pi: dict, beta: dict, eps: float = SMOOTHING_EPS) -> float:
    """KL(pi || (1 - eps) beta + eps pi), the closed form the estimator targets."""
    return sum(p * math.log(p / ((1 - eps) * beta.get(y, 0.0) + eps * p)) for y, p in pi.items())


def test_reverse_kl_estimate_with_stated_smoothing():
    logp_pi = [math.log(PI[y]) for y in EXACT_SAMPLE]
    logp_beta = [math.log(BETA[y]) if y in BETA else -math.inf for y in EXACT_SAMPLE]
    assert reverse_kl_estimate(logp_pi, logp_beta) == pytest.approx(skew_kl(PI, BETA), rel=1e-9)
    # an out-of-support sample costs -log eps; inside the support it is KL(pi || beta) to 1e-6
    assert skew_kl({"x": 1.0}, BETA) == pytest.approx(-math.log(SMOOTHING_EPS))
    inside = {"a": 0.5, "b": 0.5}
    sample = ["a", "b"]
    plain = sum(p * math.log(p / BETA[y]) for y, p in inside.items())
    assert reverse_kl_estimate(
        [math.log(inside[y]) for y in sample], [math.log(BETA[y]) for y in sample]
    ) == pytest.approx(plain, abs=1e-5)
    # the smoothed divergence is never negative, whatever the policy
    assert reverse_kl_estimate([-100.0], [-math.inf]) == pytest.approx(-math.log(SMOOTHING_EPS))


def test_reverse_kl_monte_carlo_converges():
    rng = random.Random(0)
    draws = rng.choices(list(PI), weights=list(PI.values()), k=200_000)
    est = reverse_kl_estimate(
        [math.log(PI[y]) for y in draws],
        [math.log(BETA[y]) if y in BETA else -math.inf for y in draws],
    )
    assert est == pytest.approx(skew_kl(PI, BETA), rel=0.02)


def test_entropy_precision_and_support_mass():
    logp_pi = [math.log(PI[y]) for y in EXACT_SAMPLE]
    assert entropy_estimate(logp_pi) == pytest.approx(-sum(p * math.log(p) for p in PI.values()))
    assert precision(EXACT_SAMPLE, BETA) == pytest.approx(0.75)
    logp_support = {y: math.log(PI.get(y, 1e-300)) for y in BETA}
    assert support_mass(logp_support) == pytest.approx(0.75)


def test_coverage_counts_modes_and_their_mass():
    assert coverage(EXACT_SAMPLE, BETA) == pytest.approx((0.8, 2 / 3))
    assert coverage(["c", "c"], BETA) == pytest.approx((0.2, 1 / 3))
    assert coverage(["x"], BETA) == (0.0, 0.0)


def test_coverage_expectation_matches_its_closed_form():
    rng, k, trials = random.Random(1), 3, 20_000
    mean = (
        sum(
            coverage(rng.choices(list(PI), weights=list(PI.values()), k=k), BETA)[0]
            for _ in range(trials)
        )
        / trials
    )
    closed = expected_coverage(PI, BETA, k)
    assert closed == pytest.approx(0.5 * (1 - 0.5**3) + 0.3 * (1 - 0.75**3))
    assert mean == pytest.approx(closed, abs=0.01)


def test_distinct_n():
    texts = ["a b a", "a b c"]
    assert distinct_n(texts, 1) == pytest.approx(3 / 6)
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)  # (a b), (b a), (a b), (b c)
    assert distinct_n(["a"], 2) == 0.0


def test_bleu_closed_form():
    assert bleu("a b c d", ["a b c d"]) == pytest.approx(1.0)
    # p1 = 3/4, p2 = 2/3, p3 = 1/2, p4 = 0 -> smoothed to 0.1/1; equal lengths: no brevity penalty
    expected = math.exp((math.log(3 / 4) + math.log(2 / 3) + math.log(1 / 2) + math.log(0.1)) / 4)
    assert bleu("a b c d", ["a b c e"]) == pytest.approx(expected)
    # a short hypothesis pays exp(1 - r/c) with the closest reference length
    short = bleu("a b", ["a b c d"], max_n=2)
    assert short == pytest.approx(math.exp(1 - 4 / 2))
    # clipped counts: "a a a a" against "a b" matches one "a"
    assert bleu("a a a a", ["a b c d"], max_n=1) == pytest.approx(1 / 4)


def test_self_bleu_orders_diversity():
    assert self_bleu(["x y z w"] * 3) == pytest.approx(1.0)
    diverse = ["you are welcome", "happy to help", "any time , friend"]
    assert (
        self_bleu(diverse)
        < 0.1
        < self_bleu(["you are welcome", "you are welcome", "happy to help"])
    )
    assert math.isnan(self_bleu(["only one"]))
