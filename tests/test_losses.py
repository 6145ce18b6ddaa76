"""Loss functions against closed forms and brute force."""

import math

import torch

from afd.objectives.losses import (
    IGNORE,
    binary_accuracy,
    bradley_terry,
    discriminator_bce,
    forward_kl_nll,
    sequence_logprob,
    token_logprobs,
)


def test_sequence_logprob_matches_brute_force():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[IGNORE, IGNORE, 3, 1, 6], [IGNORE, 2, 2, 0, IGNORE]])
    expected = []
    for b in range(2):
        total = 0.0
        for t in range(1, 5):
            if labels[b, t] != IGNORE:
                total += torch.log_softmax(logits[b, t - 1], -1)[labels[b, t]].item()
        expected.append(total)
    assert torch.allclose(sequence_logprob(logits, labels), torch.tensor(expected), atol=1e-5)
    _, mask = token_logprobs(logits, labels)
    assert mask.sum().item() == 6


def test_forward_kl_nll_is_forward_kl_up_to_demonstrator_entropy():
    # One-step MDP: the policy is softmax(theta), the demonstrator beta is categorical.
    # Mean NLL over beta's samples -> E_beta[-log pi] = KL(beta || pi) + H(beta).
    beta = torch.tensor([0.5, 0.3, 0.2, 0.0])
    theta = torch.tensor([0.1, -0.4, 0.7, 0.2])
    pi = torch.softmax(theta, -1)
    kl = sum(b * math.log(b / p) for b, p in zip(beta.tolist(), pi.tolist()) if b > 0)
    entropy = -sum(b * math.log(b) for b in beta.tolist() if b > 0)
    # Exact expectation: weight each action's NLL by beta via a batch with those counts.
    counts = (beta * 10).round().long()
    labels = torch.cat([torch.full((int(c),), a) for a, c in enumerate(counts)])
    batch_labels = torch.stack([torch.full((len(labels),), IGNORE), labels], 1)
    logits = theta.expand(len(labels), 2, 4)
    nll = forward_kl_nll(logits, batch_labels)
    assert abs(nll.item() - (kl + entropy)) < 1e-5


def test_forward_kl_gradient_vanishes_at_the_demonstrator():
    beta = torch.tensor([0.5, 0.3, 0.2])
    theta = torch.log(beta).clone().requires_grad_(True)
    labels = torch.tensor([0] * 5 + [1] * 3 + [2] * 2)
    batch_labels = torch.stack([torch.full((10,), IGNORE), labels], 1)
    forward_kl_nll(theta.expand(10, 2, 3), batch_labels).backward()
    assert theta.grad.abs().max().item() < 1e-6


def test_discriminator_optimum_is_the_log_density_ratio():
    # Over a finite space with positives ~ p and negatives ~ q, the BCE minimiser's logit
    # at each y is log p(y) - log q(y): the Init-SFT classifier's closed-form optimum.
    p = torch.tensor([0.6, 0.3, 0.1])
    q = torch.tensor([0.2, 0.3, 0.5])
    logit = torch.zeros(3, requires_grad=True)
    opt = torch.optim.LBFGS([logit], lr=1, max_iter=200)

    def loss_fn():
        opt.zero_grad()
        # Expected BCE: sum_y p(y) * -log D(y) + q(y) * -log(1 - D(y)), as weighted rows.
        logits = torch.cat([logit, logit])
        targets = torch.cat([torch.ones(3), torch.zeros(3)])
        weights = torch.cat([p, q])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, targets, weight=weights, reduction="sum"
        )
        loss.backward()
        return loss

    opt.step(loss_fn)
    assert torch.allclose(logit.detach(), torch.log(p / q), atol=1e-4)
    # discriminator_bce is the unweighted mean of the same loss
    logits, targets = torch.tensor([2.0, -1.0]), torch.tensor([1.0, 0.0])
    expected = (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(-1.0))) / 2
    assert abs(discriminator_bce(logits, targets).item() - expected) < 1e-6


def test_bradley_terry_closed_form():
    chosen, rejected = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    expected = (math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(2.0))) / 2
    assert abs(bradley_terry(chosen, rejected).item() - expected) < 1e-6


def test_binary_accuracy():
    acc = binary_accuracy(torch.tensor([1.0, -1.0, 2.0]), torch.tensor([1.0, 0.0, 0.0]))
    assert abs(acc.item() - 2 / 3) < 1e-6


def test_global_token_normalisation_splits_the_batch_gradient_exactly():
    """Two data-parallel halves, each dividing its NLL sum by the whole batch's token count
    (times the 2 processes whose gradients are averaged), give the full-batch gradient of the
    token-mean NLL; dividing by each half's own count would not."""
    from afd.objectives.losses import token_nll_sum

    torch.manual_seed(0)
    theta = torch.randn(4, 6, 9, requires_grad=True)
    labels = torch.randint(0, 9, (4, 6))
    labels[0, 1:5] = IGNORE  # unequal token counts across the halves
    full = torch.autograd.grad(forward_kl_nll(theta, labels), theta)[0]
    total = token_nll_sum(theta, labels)[1]
    grads, own = torch.zeros_like(theta), torch.zeros_like(theta)
    for half in (slice(0, 2), slice(2, 4)):
        nll, count = token_nll_sum(theta[half], labels[half])
        grads += torch.autograd.grad(nll / total * 2, theta, retain_graph=True)[0] / 2
        own += torch.autograd.grad(nll / count, theta)[0] / 2
    torch.testing.assert_close(grads, full)
    assert not torch.allclose(own, full, atol=1e-4)
    nll, count = token_nll_sum(theta, labels)
    torch.testing.assert_close(nll / count, forward_kl_nll(theta, labels))
