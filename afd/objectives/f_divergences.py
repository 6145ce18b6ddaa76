"""f-divergences between the demonstrator beta and the policy pi, and the policy reward each
one induces (the f-GAN reward mapping): the objectives of adversarial imitation.

Convention: D_f(beta || pi) = sum_y pi(y) f(beta(y) / pi(y)), f convex with f(1) = 0. A
discriminator trained by binary cross-entropy on demonstrations (label 1) against policy
samples (label 0) has logit l(y) = log beta(y) - log pi(y) = log r(y) at its optimum. Then

    grad_theta D_f(beta || pi_theta) = -E_pi[grad log pi(y) * h(l(y))],
    h(l) = r f'(r) - f(r) - f'(1) = f*(f'(r)) - f*(f'(1)),   r = exp(l),

so policy gradient on the reward h(l) minimises D_f: up to a constant, h is the f-GAN
generator's reward f*(T) at the optimal critic T = f'(r). The constant makes h(0) = 0: a
reply (or token) the discriminator cannot tell from a demonstration earns nothing. A
sequence-level baseline removes any constant, but per-token rewards (the occupancy-level
discriminator) sum over a reply's length, and a constant there is a length bonus or
penalty: with h = l - 1 a reverse-KL policy learns to stop at once. Instances:

    reverse_kl  KL(pi || beta)      f(u) = -log u                 h = l  (logit, log D - log(1-D))
    js          Jensen-Shannon      f(u) = (u log u - (1+u) log((1+u)/2)) / 2
                                                                  h = (softplus(l) - log 2) / 2
                                                                    = -(log(1 - D) + log 2) / 2
    forward_kl  KL(beta || pi)      f(u) = u log u                h = exp(l) - 1
    hellinger   squared Hellinger   f(u) = (sqrt(u) - 1)^2        h = exp(l / 2) - 1
    pearson     Pearson chi^2       f(u) = (u - 1)^2              h = exp(2 l) - 1
    neyman      Neyman chi^2        f(u) = (1 - u)^2 / u          h = 2 (1 - exp(-l))

`js` is GAIL's reward -log(1 - D) scaled by 1/2 and shifted: the exact JS gradient, so a KL
coefficient means the same thing next to every divergence. Every formula here is checked
against the closed-form divergence between two categorical distributions in
tests/test_fdivergences.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG2 = math.log(2.0)


class FDivergence:
    """One f-divergence: its generator f, derivative, convex conjugate and policy reward."""

    name = "f"

    def f(self, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def f_prime(self, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def conjugate(self, t: torch.Tensor) -> torch.Tensor:
        """f*(t) = sup_u (u t - f(u)), on the domain where it is finite."""
        raise NotImplementedError

    def reward(self, logit: torch.Tensor) -> torch.Tensor:
        """h(l) = r f'(r) - f(r) - f'(1), r = e^l: the policy reward, 0 where D is unsure."""
        raise NotImplementedError

    def divergence(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """D_f(p || q) = sum_y q(y) f(p(y) / q(y)) over a finite space, q > 0 everywhere."""
        return (q * self.f(p / q)).sum(-1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _xlogx(u: torch.Tensor) -> torch.Tensor:
    return torch.where(u > 0, u * torch.log(u.clamp_min(1e-300)), torch.zeros_like(u))


class ReverseKL(FDivergence):
    """KL(pi || beta): mode-seeking; the reward is the discriminator's logit."""

    name = "reverse_kl"

    def f(self, u):
        return -torch.log(u)

    def f_prime(self, u):
        return -1.0 / u

    def conjugate(self, t):
        return -1.0 - torch.log(-t)

    def reward(self, logit):
        return logit


class ForwardKL(FDivergence):
    """KL(beta || pi): mass-covering; the reward is the density ratio beta/pi itself."""

    name = "forward_kl"

    def f(self, u):
        return _xlogx(u)

    def f_prime(self, u):
        return torch.log(u) + 1.0

    def conjugate(self, t):
        return torch.exp(t - 1.0)

    def reward(self, logit):
        return torch.expm1(logit)


class JensenShannon(FDivergence):
    """JS(beta, pi) = KL(beta || m)/2 + KL(pi || m)/2, m the mixture: GAIL's objective."""

    name = "js"

    def f(self, u):
        return 0.5 * (_xlogx(u) - (1 + u) * torch.log((1 + u) / 2))

    def f_prime(self, u):
        return 0.5 * torch.log(2 * u / (1 + u))

    def conjugate(self, t):
        return -0.5 * torch.log(2 - torch.exp(2 * t))

    def reward(self, logit):
        return 0.5 * (F.softplus(logit) - LOG2)


class SquaredHellinger(FDivergence):
    name = "hellinger"

    def f(self, u):
        return (torch.sqrt(u) - 1) ** 2

    def f_prime(self, u):
        return 1 - 1 / torch.sqrt(u)

    def conjugate(self, t):
        return t / (1 - t)

    def reward(self, logit):
        return torch.exp(0.5 * logit) - 1


class PearsonChi2(FDivergence):
    name = "pearson"

    def f(self, u):
        return (u - 1) ** 2

    def f_prime(self, u):
        return 2 * (u - 1)

    def conjugate(self, t):
        return t * t / 4 + t

    def reward(self, logit):
        return torch.exp(2 * logit) - 1


class NeymanChi2(FDivergence):
    """sum_y (pi(y) - beta(y))^2 / beta(y): mode-seeking like reverse KL (infinite where the
    policy puts mass the demonstrator does not), with a bounded reward: h <= 2."""

    name = "neyman"

    def f(self, u):
        return (1 - u) ** 2 / u

    def f_prime(self, u):
        return 1 - 1 / (u * u)

    def conjugate(self, t):
        return 2 - 2 * torch.sqrt(1 - t)

    def reward(self, logit):
        return -2 * torch.expm1(-logit)


ALL = (ReverseKL, ForwardKL, JensenShannon, SquaredHellinger, PearsonChi2, NeymanChi2)
