"""Each f-divergence and its policy reward against closed forms on categorical distributions."""

import math

import pytest
import torch

from afd.objectives.f_divergences import (
    ALL,
    ForwardKL,
    JensenShannon,
    NeymanChi2,
    PearsonChi2,
    ReverseKL,
    SquaredHellinger,
)


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def categorical(seed: int, size: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(2 * torch.randn(size, generator=g, dtype=torch.float64), -1)


def kl(p, q):
    return float((p * torch.log(p / q)).sum())


CLOSED_FORMS = {
    ReverseKL: lambda beta, pi: kl(pi, beta),
    ForwardKL: lambda beta, pi: kl(beta, pi),
    JensenShannon: lambda beta, pi: 0.5 * kl(beta, (beta + pi) / 2) + 0.5 * kl(pi, (beta + pi) / 2),
    SquaredHellinger: lambda beta, pi: float(((beta.sqrt() - pi.sqrt()) ** 2).sum()),
    PearsonChi2: lambda beta, pi: float(((beta - pi) ** 2 / pi).sum()),
    NeymanChi2: lambda beta, pi: float(((beta - pi) ** 2 / beta).sum()),
}


@pytest.mark.parametrize("cls", ALL)
def test_divergence_matches_its_closed_form(cls):
    div = cls()
    for seed in range(5):
        beta, pi = categorical(seed), categorical(seed + 100)
        assert float(div.divergence(beta, pi)) == pytest.approx(
            CLOSED_FORMS[cls](beta, pi), rel=1e-10
        )
        assert float(div.divergence(beta, beta)) == pytest.approx(0.0, abs=1e-12)
    assert float(div.f(torch.tensor(1.0))) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("cls", ALL)
def test_reward_is_the_conjugate_at_the_optimal_critic(cls):
    div = cls()
    logit = torch.linspace(-3, 3, 13)
    r = torch.exp(logit)
    one = torch.tensor(1.0)
    torch.testing.assert_close(
        div.reward(logit), div.conjugate(div.f_prime(r)) - div.conjugate(div.f_prime(one))
    )
    torch.testing.assert_close(div.reward(logit), r * div.f_prime(r) - div.f(r) - div.f_prime(one))
    # no reward where the discriminator cannot tell: per-token rewards carry no length bias
    assert float(div.reward(torch.tensor(0.0))) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("cls", ALL)
def test_policy_gradient_on_the_reward_descends_the_divergence(cls):
    """Exact expectation over a categorical policy: E_pi[h(log beta - log pi) grad log pi]
    equals -grad D_f(beta || pi_theta) computed by autograd on the closed form."""
    div = cls()
    beta = categorical(1)
    theta = torch.randn(6, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    theta.requires_grad_(True)
    (exact,) = torch.autograd.grad(div.divergence(beta, torch.softmax(theta, -1)), theta)
    logp = torch.log_softmax(theta, -1)
    reward = div.reward(torch.log(beta) - logp.detach())
    surrogate = (logp.exp().detach() * reward * logp).sum()
    (policy_gradient,) = torch.autograd.grad(surrogate, theta, retain_graph=True)
    torch.testing.assert_close(policy_gradient, -exact)
    # a constant baseline changes nothing in expectation (sum_y pi(y) grad log pi(y) = 0)
    (shifted,) = torch.autograd.grad((logp.exp().detach() * (reward - 3.0) * logp).sum(), theta)
    torch.testing.assert_close(shifted, -exact)


@pytest.mark.parametrize("cls", ALL)
def test_variational_bound_is_tight_at_the_optimal_critic(cls):
    """D_f(p || q) >= E_p[T] - E_q[f*(T)] for any critic T, with equality at T = f'(p/q)."""
    div = cls()
    beta, pi = categorical(3), categorical(4)
    optimal = div.f_prime(beta / pi)
    bound = float((beta * optimal).sum() - (pi * div.conjugate(optimal)).sum())
    assert bound == pytest.approx(float(div.divergence(beta, pi)), rel=1e-9)
    worse = optimal * 0.9 - 0.01  # any other critic (kept inside the conjugate's domain)
    assert float((beta * worse).sum() - (pi * div.conjugate(worse)).sum()) < bound


def test_named_rewards_match_the_textbook_forms():
    logit = torch.tensor([-2.0, 0.0, 1.5])
    d = torch.sigmoid(logit)
    # reverse KL: log D - log(1 - D) up to a constant; JS: GAIL's -log(1 - D), halved and shifted
    torch.testing.assert_close(ReverseKL().reward(logit), torch.log(d) - torch.log(1 - d))
    torch.testing.assert_close(
        JensenShannon().reward(logit), 0.5 * (-torch.log(1 - d) - math.log(2))
    )
    torch.testing.assert_close(ForwardKL().reward(logit), d / (1 - d) - 1)
