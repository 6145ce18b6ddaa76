"""Best-of-N distillation with the reverse KL and the Jeffreys divergence (BOND, arXiv 2407.14622):
Theorem 1 against brute-force enumeration of n draws, the quantile estimator against the exact
Best-of-n distribution, the loss's gradient against autograd of the exact reverse KL, policies
trained by the losses against the divergences' exact minimisers, configs that fail naming
their key, and the two on-policy jobs end to end at test size."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_config

from afd.core.artifacts import read_history, read_samples, read_scores, write_samples, write_scores
from afd.core.errors import ConfigError
from afd.objectives.bond import (
    best_of_n_distribution,
    bond_reward,
    jeffreys,
    log_bon_ratio,
    mid_quantile,
    pooled_cdf,
    reverse_kl_estimate,
    reverse_kl_loss,
)
from afd.objectives.losses import policy_gradient_loss
from afd.pipeline.job import run_job
from afd.pipeline.validate import validate

PI_REF = torch.tensor([0.3, 0.25, 0.2, 0.1, 0.1, 0.05], dtype=torch.float64)
REWARDS = {
    "distinct": torch.tensor([0.0, 3.0, 1.0, 2.5, 2.0, 4.0], dtype=torch.float64),
    "ties": torch.tensor([0.0, 3.0, 1.0, 3.0, 1.0, 4.0], dtype=torch.float64),
}


def brute_force_best_of_n(probs, rewards, n: int) -> torch.Tensor:
    """Every sequence of n draws, weighted by its probability; the first highest reward wins."""
    out = torch.zeros_like(probs)
    for draws in itertools.product(range(len(probs)), repeat=n):
        weight = math.prod(float(probs[i]) for i in draws)
        out[max(draws, key=lambda i: (float(rewards[i]), -draws.index(i)))] += weight
    return out


def reverse_kl(logp: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (logp.exp() * (logp - target.log())).sum()


def draw(probs, size: int, generator) -> torch.Tensor:
    return torch.multinomial(probs, size, replacement=True, generator=generator)


# -- the Best-of-n distribution and its estimate ------------------------------------------------
@pytest.mark.parametrize("kind", ["distinct", "ties"])
@pytest.mark.parametrize("n", [1, 2, 4])
def test_theorem_1_is_the_brute_force_best_of_n(kind, n):
    exact = best_of_n_distribution(PI_REF, REWARDS[kind], n)
    torch.testing.assert_close(exact, brute_force_best_of_n(PI_REF, REWARDS[kind], n))
    assert float(exact.sum()) == pytest.approx(1.0, abs=1e-12)


def test_without_ties_the_log_ratio_is_log_n_plus_n_minus_1_log_f():
    f = torch.tensor([0.01, 0.3, 0.9, 1.0], dtype=torch.float64)
    for n in (1, 2, 16):
        torch.testing.assert_close(log_bon_ratio(f, f, n), math.log(n) + (n - 1) * f.log())
        torch.testing.assert_close(bond_reward(log_bon_ratio(f, f, n), n), (n - 1) * f.log())
    # the lowest reward of a discrete law: no lower one (p_< = 0), still finite
    low = log_bon_ratio(torch.tensor([0.0]), torch.tensor([0.2]), 4)
    torch.testing.assert_close(low, torch.tensor([3 * math.log(0.2)], dtype=torch.float64))


def test_pooled_cdf_counts_the_reply_in_its_own_pool():
    reference = torch.tensor([[1.0, 2.0, 2.0, 3.0]] * 3)
    below, at_or_below = pooled_cdf(torch.tensor([2.0, 0.0, 5.0]), reference)
    torch.testing.assert_close(below, torch.tensor([1 / 5, 0.0, 4 / 5], dtype=torch.float64))
    torch.testing.assert_close(at_or_below, torch.tensor([4 / 5, 1 / 5, 1.0], dtype=torch.float64))
    # mid-rank: (#< + #= / 2 + 1/2) / (m + 1)
    torch.testing.assert_close(
        mid_quantile(below, at_or_below), torch.tensor([0.5, 0.1, 0.9], dtype=torch.float64)
    )


@pytest.mark.parametrize("m", [1, 7, 50])
@pytest.mark.parametrize("n", [1, 3, 16])
def test_pooled_estimate_is_normalised_for_continuous_rewards(m, n):
    """For y ~ pi_ref and continuous rewards y's rank k among m reference replies is uniform on
    0..m: the estimated pi_BoN / pi_ref averages to exactly 1."""
    k = torch.arange(m + 1, dtype=torch.float64)
    ratio = log_bon_ratio(k / (m + 1), (k + 1) / (m + 1), n).exp()
    assert float(ratio.mean()) == pytest.approx(1.0, abs=1e-12)


def test_pooled_estimate_of_the_reverse_kl_from_the_reference():
    """KL(pi_ref || pi_BoN) = n - 1 - log n for continuous rewards; the pooled estimate's
    expectation over ranks converges to it as m grows."""
    n = 4
    for m, tol in ((100, 0.05), (10_000, 1e-3)):
        k = torch.arange(m + 1, dtype=torch.float64)
        estimate = -log_bon_ratio(k / (m + 1), (k + 1) / (m + 1), n).mean()
        assert float(estimate) == pytest.approx(n - 1 - math.log(n), abs=tol)


@pytest.mark.parametrize("kind", ["distinct", "ties"])
def test_estimated_log_pi_bon_matches_the_exact_distribution(kind):
    rewards, n = REWARDS[kind], 4
    g = torch.Generator().manual_seed(0)
    reference = rewards[draw(PI_REF, 40_000, g)]
    below, at_or_below = pooled_cdf(rewards, reference.expand(len(rewards), -1))
    estimate = PI_REF.log() + log_bon_ratio(below, at_or_below, n)
    exact = best_of_n_distribution(PI_REF, rewards, n).log()
    torch.testing.assert_close(estimate, exact, atol=0.06, rtol=0)
    # the mid-rank quantile is F at each reward's midpoint, (p_< + p_<=) / 2
    lower = (rewards[None, :] < rewards[:, None]).double() @ PI_REF
    at_most = (rewards[None, :] <= rewards[:, None]).double() @ PI_REF
    torch.testing.assert_close(
        mid_quantile(below, at_or_below), (lower + at_most) / 2, atol=0.01, rtol=0
    )


# -- the reverse-KL loss and the Jeffreys mixture ------------------------------------------------
THETA = torch.tensor([0.4, -0.3, 0.1, 0.6, -0.2, 0.3], dtype=torch.float64)


def exact_log_ratio(rewards, n):
    lower = (rewards[None, :] < rewards[:, None]).double() @ PI_REF
    at_most = (rewards[None, :] <= rewards[:, None]).double() @ PI_REF
    return log_bon_ratio(lower, at_most, n)


@pytest.mark.parametrize("kind", ["distinct", "ties"])
def test_policy_gradient_of_the_bond_reward_is_the_reverse_kl_gradient(kind):
    """Every outcome enumerated with its probability as weight: -E_pi[grad log pi (log pi_BoN/
    pi_ref - log pi/pi_ref)] is exactly grad KL(pi || pi_BoN)."""
    rewards, n = REWARDS[kind], 4
    target = best_of_n_distribution(PI_REF, rewards, n)
    theta = THETA.clone().requires_grad_(True)
    logp = torch.log_softmax(PI_REF.log() + theta, -1)
    pi, k = logp.exp().detach(), len(PI_REF)
    returns = exact_log_ratio(rewards, n) - (logp.detach() - PI_REF.log())
    surrogate = policy_gradient_loss((logp * pi * k)[:, None], returns[:, None], torch.ones(k, 1))
    (grad,) = torch.autograd.grad(surrogate, theta, retain_graph=True)
    (exact,) = torch.autograd.grad(reverse_kl(logp, target), theta)
    torch.testing.assert_close(grad, exact)


@pytest.mark.parametrize("kind", ["distinct", "ties"])
def test_sampled_reverse_kl_loss_gradient_matches_autograd_of_the_exact_reverse_kl(kind):
    """On-policy replies in groups of 4 with the leave-one-out baseline: the loss's gradient
    is an unbiased estimate of grad KL(pi || pi_BoN) (Theorem 1's exact ratio as log-ratio)."""
    rewards, n, group = REWARDS[kind], 4, 4
    target = best_of_n_distribution(PI_REF, rewards, n)
    theta = THETA.clone().requires_grad_(True)
    logp = torch.log_softmax(PI_REF.log() + theta, -1)
    y = draw(logp.exp().detach(), 400_000, torch.Generator().manual_seed(1))
    ones = torch.ones(len(y), 1, dtype=torch.bool)
    loss, kl = reverse_kl_loss(
        logp[y][:, None], PI_REF.log()[y][:, None], ones, exact_log_ratio(rewards, n)[y], group
    )
    (grad,) = torch.autograd.grad(loss, theta, retain_graph=True)
    (exact,) = torch.autograd.grad(reverse_kl(logp, target), theta)
    torch.testing.assert_close(grad, exact, atol=0.01, rtol=0)
    # and the Monte-Carlo reverse KL is the exact one (estimate normalised: exact ratio)
    estimate = reverse_kl_estimate(kl, exact_log_ratio(rewards, n)[y])
    assert float(estimate) == pytest.approx(float(reverse_kl(logp, target)), abs=0.01)


def bon_draws(rewards, n: int, size: int, generator) -> torch.Tensor:
    """Best-of-n replies of pi_REF: the first highest-reward of n draws."""
    idx = draw(PI_REF, size * n, generator).view(size, n)
    return idx.gather(1, rewards[idx].argmax(1, keepdim=True)).squeeze(1)


@pytest.fixture
def one_thread():
    """Tensors of a few hundred numbers: threads would only add synchronisation."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def train(family, rewards, beta: float, steps: int = 400, groups: int = 32, seed: int = 0):
    """A categorical policy pi_theta = softmax(log pi_ref + family(theta)) trained by Adam on
    jeffreys(forward NLL of Best-of-4 replies, reverse-KL loss of on-policy replies whose
    log-ratio is estimated from 2000 reference replies); the mean of the last 150 iterates."""
    n, group, g = 4, 4, torch.Generator().manual_seed(seed)
    reference = rewards[draw(PI_REF, 2000, g)]
    theta = torch.zeros(family(None), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=0.05)
    iterates = []
    for _ in range(steps):
        logp = torch.log_softmax(PI_REF.log() + family(theta), -1)
        y = draw(logp.exp().detach(), groups * group, g)
        below, at_or_below = pooled_cdf(rewards[y], reference.expand(len(y), -1))
        ones = torch.ones(len(y), 1, dtype=torch.bool)
        ratio = log_bon_ratio(below, at_or_below, n)
        reverse, _ = reverse_kl_loss(logp[y][:, None], PI_REF.log()[y][:, None], ones, ratio, group)
        forward = -logp[bon_draws(rewards, n, groups * group, g)].mean()
        loss = jeffreys(forward, reverse, beta)
        opt.zero_grad()
        loss.backward()
        opt.step()
        iterates.append(theta.detach().clone())
    return torch.stack(iterates[-150:]).mean(0)


def full(theta):
    return len(PI_REF) if theta is None else theta


@pytest.mark.parametrize("kind", ["distinct", "ties"])
def test_reverse_kl_loss_trains_a_categorical_policy_to_best_of_n(kind, one_thread):
    rewards = REWARDS[kind]
    target = best_of_n_distribution(PI_REF, rewards, 4)
    theta = train(full, rewards, beta=1.0)
    logp = torch.log_softmax(PI_REF.log() + theta, -1)
    assert 0.5 * float((logp.exp() - target).abs().sum()) < 0.025
    assert float(reverse_kl(logp, target)) < 2e-3
    assert float(reverse_kl(PI_REF.log(), target)) > 0.5  # where it started


MODE = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)  # pi_BoN's mode


def tilt(theta):
    """One parameter: the log-weight added to pi_BoN's mode (outcome 1); the family cannot
    hold pi_BoN, so forward and reverse KL pick different members."""
    return 1 if theta is None else theta * MODE


def test_jeffreys_lands_between_forward_and_reverse_kl(one_thread):
    """Each objective's policy trained by the losses is (nearly) its exact minimiser over the
    family, and the Jeffreys mixture's lies between the forward and the reverse KL's."""
    rewards = REWARDS["distinct"]
    target = best_of_n_distribution(PI_REF, rewards, 4)
    grid = torch.linspace(-1, 4, 5001, dtype=torch.float64)
    logps = torch.log_softmax(PI_REF.log() + grid[:, None] * MODE, -1)
    forward = -(target * logps).sum(-1) + (target * target.log()).sum()
    backward = (logps.exp() * (logps - target.log())).sum(-1)
    trained = {}
    for beta in (0.0, 0.5, 1.0):
        objective = jeffreys(forward, backward, beta)
        trained[beta] = float(train(tilt, rewards, beta))
        at = int((grid - trained[beta]).abs().argmin())
        assert float(objective[at] - objective.min()) < 3e-3, (beta, trained[beta])
    # mode-seeking: the reverse KL piles more mass on pi_BoN's mode than the forward KL
    assert trained[0.0] + 0.3 < trained[0.5] < trained[1.0] - 0.3, trained
    exact = [float(grid[jeffreys(forward, backward, beta).argmin()]) for beta in (0, 0.5, 1)]
    assert exact[0] + 0.3 < exact[1] < exact[2] - 0.3, exact


def test_jeffreys_is_the_beta_mixture():
    forward, reverse = torch.tensor(2.0), torch.tensor(6.0)
    assert [float(jeffreys(forward, reverse, b)) for b in (0, 0.25, 1)] == [2.0, 3.0, 6.0]
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\], got 1.5"):
        jeffreys(forward, reverse, 1.5)


# -- the recipe: rows, configs ------------------------------------------------------------------
def test_prompt_rows_group_reference_replies_and_pick_best_of_n(tmp_path, toy_tokenizer):
    from afd.models.batching import Lengths
    from afd.recipes.bond.online import prompt_rows

    m, n = 4, 2
    rows = [
        {
            "id": f"{p}-{j}",
            "prompt_id": str(p),
            "sample": j,
            "prompt": f"Human: hi {p}",
            "response": f"r{p}{j}",
            "meta": {"p": p},
        }
        for p in range(3)
        for j in range(m)
    ]
    scores = np.array([1.0, 3.0, 2.0, 0.0, 5.0, 4.0, 4.0, 6.0, 0.0, 0.0, 1.0, 1.0])
    write_samples(tmp_path, rows)
    write_scores(tmp_path, [r["id"] for r in rows], scores)
    lengths = Lengths(24, 20)
    out = prompt_rows(tmp_path, tmp_path, m, n, toy_tokenizer, lengths)
    assert [r[3] for r in out] == scores.reshape(3, m).tolist()
    assert [[reply for _, reply in r[4]] for r in out] == [
        ["r01", "r02"],
        ["r10", "r13"],
        ["r20", "r22"],  # ties: the first highest, as Best-of-n selection
    ]
    assert [r[2] for r in out] == [{"p": 0}, {"p": 1}, {"p": 2}]


@pytest.mark.parametrize("choice, beta", [("bond_reverse", 1.0), ("bond_jeffreys", 0.5)])
def test_bond_choices_compose(choice, beta):
    from hydra.utils import instantiate

    from afd.recipes.bond.online import OnlineBoND
    from afd.recipes.bond.recipe import BoND

    recipe = instantiate(compose_config([f"divergence={choice}"]).divergence)
    assert isinstance(recipe, OnlineBoND)
    assert (recipe.name, recipe.level, recipe.beta) == (choice, "best_of_n", beta)
    assert recipe.reference_samples % recipe.n == 0
    forward = instantiate(compose_config(["divergence=bond_forward"]).divergence)
    assert isinstance(forward, BoND) and forward.divergence == "forward"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["divergence=bond_jeffreys", "divergence.beta=2"],
            "divergence.beta must be in [0, 1], got 2",
        ),
        (["divergence=bond_reverse", "divergence.beta=0.5"], "divergence.beta must be 1 for"),
        (
            ["divergence=bond_reverse", "divergence.divergence=forward"],
            "divergence.divergence must",
        ),
        (["divergence=bond_jeffreys", "divergence.reference=demo"], "divergence.reference must"),
        (
            ["divergence=bond_reverse", "divergence.samples_per_prompt=1"],
            "divergence.samples_per_prompt must be an integer >= 2",
        ),
        (
            ["divergence=bond_jeffreys", "divergence.reference_samples=20"],
            "divergence.reference_samples (20) must be a multiple of divergence.n (16)",
        ),
        (["divergence=bond_reverse", "divergence.temperature=0"], "divergence.temperature must"),
        (["divergence=bond_reverse", "divergence.optim.lr=0"], "divergence.optim.lr must be > 0"),
        (["divergence=bond_reverse", "divergence.num_prompts=0"], "divergence.num_prompts must"),
    ],
)
def test_bad_bond_values_name_their_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(compose_config(["logger=none", *overrides]))
    assert message in str(err.value)


# -- end to end ---------------------------------------------------------------------------------
def heldout_quantile(arts) -> float:
    """Mid-rank of each of the policy's held-out replies among pi_SFT's replies to the same
    prompt, under the job's reward model: 0.5 for pi_SFT itself."""
    from afd.models.scoring import load_scorer

    sft_rows = read_samples(arts["sample/sft/heldout"])
    sft = np.asarray(load_scorer(arts["reward"]).score(sft_rows))
    policy = read_scores(arts["score/reward/policy/heldout"])
    per_prompt = len(sft) // len({r["prompt_id"] for r in sft_rows})
    sft, policy = sft.reshape(-1, per_prompt), policy.reshape(len(sft) // per_prompt, -1)
    above = (policy[:, :, None] > sft[:, None, :]).mean(-1)
    ties = (policy[:, :, None] == sft[:, None, :]).mean(-1)
    return float((above + 0.5 * ties).mean())


@pytest.fixture(scope="module")
def bond_cache(tmp_path_factory):
    """One stage cache for both on-policy jobs: pi_SFT, the reward model and the reference
    pool are built once."""
    return tmp_path_factory.mktemp("bond_cache")


@pytest.mark.slow
@pytest.mark.parametrize("choice", ["bond_reverse", "bond_jeffreys"])
def test_on_policy_bond_distils_the_reward_models_best_of_n(tiny_cfg, bond_cache, choice):
    from omegaconf import open_dict

    steps, n, m = 40, 4, 16
    cfg = tiny_cfg(
        f"divergence={choice}",
        f"divergence.steps={steps}",
        f"divergence.n={n}",
        f"divergence.reference_samples={m}",
        "divergence.num_prompts=60",
        "divergence.prompts_per_step=8",
        "divergence.log_every=10",
        "divergence.optim.lr=3.0e-3",
    )
    with open_dict(cfg):
        cfg.cache_dir = str(bond_cache)
    results = run_job(cfg)
    assert results["divergence"] == choice and results["divergence_level"] == "best_of_n"
    arts = results["artifacts"]
    manifest = json.loads((Path(arts["policy"]) / "manifest.json").read_text())
    upstream = manifest["upstream"]
    assert (
        upstream["reference"]["path"] == arts["sft"]
        and upstream["reward"]["path"] == arts["reward"]
    )
    assert upstream["samples"]["path"] == arts[f"sample/sft/train/bond_{m}"]
    assert manifest["metrics"]["prompts"] == 60
    history = read_history(arts["policy"])
    assert [r["step"] for r in history] == list(range(steps))
    keys = {"surrogate", "reverse_kl", "bond_reward", "quantile", "kl", "reward", "loss"}
    assert all(keys <= set(r) for r in history)
    assert all(("forward_nll" in r) == (choice == "bond_jeffreys") for r in history)
    assert [r["step"] for r in results["policy_curve"]] == [0, 10, 20, 30, 39]
    assert history[0]["kl"] == pytest.approx(0.0, abs=1e-4)  # it starts as the reference
    # the BOND reward (n-1) log F lies between that of the lowest reply of a pool of m+1 and 0
    lowest = (n - 1) * math.log(1 / (m + 1)) - math.log(n)
    assert all(lowest <= r["bond_reward"] < 0 for r in history)
    # the policy climbs the reference's reward quantiles (0.5 for the reference itself; the
    # mean of pi_BoN's is n / (n + 1)), in training and on held-out prompts
    assert np.mean([r["quantile"] for r in history[steps // 2 :]]) > 0.56
    assert heldout_quantile(arts) > 0.6
    gold = results["gold"]
    assert all(np.isfinite(gold[p]["mean"]) for p in ("sft", "policy"))
