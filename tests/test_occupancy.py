"""The discriminator's loss on a tiny token MDP, against closed forms: per-sequence weighting
gives the occupancy-measure log-ratio as the optimal per-token logit, a per-token mean would
add a length term; and the logit clip bounds the policy's reward, not the discriminator's
training."""

import itertools
import math

import pytest
import torch

from afd.objectives.losses import occupancy_bce

EOS = "."
# every reply over {a, b} of one or two tokens, closed by EOS: each (prefix, token) pair is
# visited by both distributions, at most once per reply (a tree MDP)
REPLIES = [("a",), ("b",), *itertools.product("ab", repeat=2)]
BETA = [0.30, 0.05, 0.10, 0.25, 0.05, 0.25]  # demonstrator: mostly long replies
PI = [0.35, 0.35, 0.05, 0.10, 0.10, 0.05]  # policy: mostly short replies


def pairs_of(reply) -> list[tuple[str, str]]:
    tokens = [*reply, EOS]
    return [("".join(tokens[:t]), tokens[t]) for t in range(len(tokens))]


PAIRS = sorted({p for r in REPLIES for p in pairs_of(r)})


def occupancy(probs) -> dict:
    rho = dict.fromkeys(PAIRS, 0.0)
    for reply, p in zip(REPLIES, probs):
        for pair in pairs_of(reply):
            rho[pair] += p
    return rho


def expected_length(probs) -> float:
    return sum(p * (len(r) + 1) for r, p in zip(REPLIES, probs))


def batch(probs, scale: int = 100):
    """Replies repeated in proportion to their probability, as (index, mask) tensors over
    positions, so the loss's batch means are exact expectations."""
    rows = [r for r, p in zip(REPLIES, probs) for _ in range(round(p * scale))]
    width = max(len(r) + 1 for r in REPLIES)
    index = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        for t, pair in enumerate(pairs_of(r)):
            index[i, t], mask[i, t] = PAIRS.index(pair), True
    return index, mask


def token_mean_bce(pos, pos_mask, neg, neg_mask):
    """A mean over each class's tokens (what a plain masked BCE mean computes)."""
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    return 0.5 * (
        bce(pos[pos_mask], torch.ones_like(pos[pos_mask]))
        + bce(neg[neg_mask], torch.zeros_like(neg[neg_mask]))
    )


def optimum(loss_fn) -> torch.Tensor:
    table = torch.zeros(len(PAIRS), dtype=torch.float64, requires_grad=True)
    (pi, pi_mask), (pn, pn_mask) = batch(BETA), batch(PI)
    opt = torch.optim.LBFGS(
        [table],
        max_iter=1000,
        tolerance_grad=1e-14,
        tolerance_change=1e-16,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = loss_fn(table[pi], pi_mask, table[pn], pn_mask)
        loss = loss[0] if isinstance(loss, tuple) else loss
        loss.backward()
        return loss

    opt.step(closure)
    return table.detach()


def test_per_sequence_weighting_gives_the_occupancy_log_ratio():
    rho_beta, rho_pi = occupancy(BETA), occupancy(PI)
    expected = torch.tensor([math.log(rho_beta[p] / rho_pi[p]) for p in PAIRS], dtype=torch.float64)
    torch.testing.assert_close(optimum(occupancy_bce), expected, atol=1e-6, rtol=1e-6)


def test_a_token_mean_adds_a_length_term_to_every_logit():
    rho_beta, rho_pi = occupancy(BETA), occupancy(PI)
    shift = math.log(expected_length(PI) / expected_length(BETA))
    assert abs(shift) > 0.1  # the two classes differ in length: the term is real
    expected = torch.tensor(
        [math.log(rho_beta[p] / rho_pi[p]) + shift for p in PAIRS], dtype=torch.float64
    )
    torch.testing.assert_close(optimum(token_mean_bce), expected, atol=1e-6, rtol=1e-6)


def test_one_logit_per_sequence_is_the_balanced_mean():
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(5, 1, generator=g), torch.randn(7, 1, generator=g)
    ones = lambda x: torch.ones_like(x, dtype=torch.bool)  # noqa: E731
    loss, acc = occupancy_bce(pos, ones(pos), neg, ones(neg))
    torch.testing.assert_close(loss, token_mean_bce(pos, ones(pos), neg, ones(neg)))
    assert float(acc) == pytest.approx(((pos > 0).sum() + (neg <= 0).sum()).item() / 12)
