"""SPIN (`divergence=spin`): the logistic DPO loss against closed forms, SPIN's fixed point on a
categorical policy, the recipe's iteration chain and config checks, and a toy job end to end."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import compose_config
from hydra.utils import instantiate

from afd.core.artifacts import read_history
from afd.core.config import fingerprint
from afd.core.errors import ConfigError
from afd.objectives.preference import dpo_loss
from afd.pipeline.graph import Pipeline
from afd.pipeline.job import run_job
from afd.pipeline.validate import validate
from afd.recipes.spin.recipe import SPIN
from afd.recipes.spin.stages import SPINIteration, SPINReference
from afd.reporting.tracking import Tracker
from afd.runtime.trainer import Schedule


# -- the loss --------------------------------------------------------------------------------
def test_dpo_loss_matches_hand_computed_values():
    # pair 1: chosen log-ratio -1 - (-1.5) = 0.5, rejected -2 - (-1.5) = -0.5: t = 0.5 * 1.0
    # pair 2: chosen log-ratio -3 - (-2) = -1, rejected -1 - (-1) = 0: t = 0.5 * -1.0
    out = dpo_loss(
        torch.tensor([-1.0, -3.0]),
        torch.tensor([-2.0, -1.0]),
        torch.tensor([-1.5, -2.0]),
        torch.tensor([-1.5, -1.0]),
        beta=0.5,
    )
    expected = [math.log(1 + math.exp(-0.5)), math.log(1 + math.exp(0.5))]
    torch.testing.assert_close(out.losses, torch.tensor(expected))
    assert out.loss.item() == pytest.approx(np.mean(expected))
    torch.testing.assert_close(out.chosen_rewards, torch.tensor([0.25, -0.5]))
    torch.testing.assert_close(out.rejected_rewards, torch.tensor([-0.25, 0.0]))
    assert out.margin.item() == pytest.approx((0.5 - 0.5) / 2)
    assert out.accuracy.item() == 0.5
    # policy = reference: every implicit reward is 0, the loss log 2, and no pair is "won"
    same = dpo_loss(*[torch.zeros(3)] * 4, beta=0.1)
    assert same.loss.item() == pytest.approx(math.log(2)) and same.accuracy.item() == 0.0


def test_dpo_loss_is_trls_sigmoid_loss_with_its_gradient():
    torch.manual_seed(0)
    pc, pr = (torch.randn(7, dtype=torch.float64, requires_grad=True) for _ in range(2))
    rc, rr = (torch.randn(7, dtype=torch.float64, requires_grad=True) for _ in range(2))
    beta = 0.3
    out = dpo_loss(pc, pr, rc, rr, beta)
    z = beta * ((pc - rc) - (pr - rr))
    trl = -F.logsigmoid(z).mean()  # TRL's DPOTrainer, loss_type="sigmoid"
    torch.testing.assert_close(out.loss, trl)
    grads = torch.autograd.grad(out.loss, (pc, pr), retain_graph=True)
    trl_grads = torch.autograd.grad(trl, (pc, pr))
    for mine, theirs in zip(grads, trl_grads):
        torch.testing.assert_close(mine, theirs)
    # closed form: dL/d log pi(y_w) = -beta sigmoid(-z) / B = -dL/d log pi(y_l)
    closed = (-beta * torch.sigmoid(-z) / 7).detach()
    torch.testing.assert_close(grads[0], closed)
    torch.testing.assert_close(grads[1], -closed)
    # the reference is frozen: no gradient reaches it
    out.loss.backward()
    assert rc.grad is None and rr.grad is None


def test_dpo_loss_stays_finite_far_from_zero():
    big = torch.tensor([500.0, -500.0])
    out = dpo_loss(big, -big, torch.zeros(2), torch.zeros(2), beta=1.0)
    torch.testing.assert_close(out.losses, torch.tensor([0.0, 1000.0]))


# -- SPIN on a categorical policy ----------------------------------------------------------
TARGET = torch.tensor([0.4, 0.3, 0.15, 0.1, 0.05], dtype=torch.float64)  # p_data
START = torch.tensor([0.02, 0.03, 0.05, 0.3, 0.6], dtype=torch.float64)  # pi_0, far from it


def total_variation(a: torch.Tensor, b: torch.Tensor) -> float:
    return 0.5 * float((a - b).abs().sum())


def exact_spin_iteration(logits: torch.Tensor, beta: float) -> torch.Tensor:
    """pi_t from pi_{t-1} = softmax(logits): the minimiser of SPIN's loss in expectation over
    every (demonstration a ~ p_data, sample b ~ pi_{t-1}) pair, starting from pi_{t-1}."""
    k = len(TARGET)
    a, b = (g.flatten() for g in torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij"))
    previous = torch.log_softmax(logits, -1)
    weights = TARGET[a] * previous.exp()[b]
    theta = logits.clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [theta],
        max_iter=2000,
        tolerance_grad=1e-12,
        tolerance_change=0,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        logp = torch.log_softmax(theta, -1)
        out = dpo_loss(logp[a], logp[b], previous[a], previous[b], beta)
        loss = (weights * out.losses).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return theta.detach()


def log_distance(policy: torch.Tensor) -> float:
    """The norm of log pi - log p_data with its mean removed (normalisation shifts it)."""
    ratio = (policy / TARGET).log()
    return float((ratio - ratio.mean()).norm())


@pytest.mark.parametrize("beta, iterations", [(0.4, 2), (2.0, 4), (4.0, 4)])
def test_an_exact_spin_iteration_has_a_closed_form(beta, iterations):
    logits = START.log()
    for _ in range(iterations):
        previous = torch.softmax(logits, -1)
        logits = exact_spin_iteration(logits, beta)
        policy = torch.softmax(logits, -1)
        # beta (r_a - r_b) = log p(a) pi(b) / (p(b) pi(a)) for every pair of replies, so pi_t is
        # proportional to pi_{t-1}^(1 - 1/beta) p_data^(1/beta)
        closed = previous ** (1 - 1 / beta) * TARGET ** (1 / beta)
        torch.testing.assert_close(policy, closed / closed.sum(), atol=1e-5, rtol=0)
        # ... so log pi - log p_data scales by |1 - 1/beta|: it shrinks for beta > 1/2, and
        # grows (overshooting p_data) below
        ratio = log_distance(policy) / log_distance(previous)
        assert ratio == pytest.approx(abs(1 - 1 / beta), rel=1e-3)


@pytest.mark.parametrize("beta", [2.0, 4.0])
def test_spin_iterations_move_a_categorical_policy_to_the_demonstrator(beta):
    logits = START.log()
    distances = [total_variation(START, TARGET)]
    for _ in range(4):
        logits = exact_spin_iteration(logits, beta)
        distances.append(total_variation(torch.softmax(logits, -1), TARGET))
    assert all(later < earlier for earlier, later in zip(distances, distances[1:])), distances
    assert distances[-1] < (1 - 1 / beta) ** 2 * distances[0], distances


def test_spin_with_beta_one_reaches_the_demonstrator_in_one_iteration():
    policy = torch.softmax(exact_spin_iteration(START.log(), beta=1.0), -1)
    assert total_variation(policy, TARGET) < 1e-4
    # ... and p_data is a fixed point: SPIN does not move a policy that matches it
    again = torch.softmax(exact_spin_iteration(TARGET.log(), beta=1.0), -1)
    assert total_variation(again, TARGET) < 1e-4


def test_sampled_spin_iterations_approach_the_demonstrator():
    """The algorithm as the recipe runs it: finite demonstrations and samples of pi_{t-1},
    a fixed number of optimiser steps from pi_{t-1}."""
    g = torch.Generator().manual_seed(0)
    logits, beta, n = START.log(), 2.0, 2000
    distances, accuracies = [total_variation(START, TARGET)], []
    for _ in range(4):
        previous = torch.log_softmax(logits, -1)
        demos = torch.multinomial(TARGET, n, replacement=True, generator=g)
        samples = torch.multinomial(previous.exp(), n, replacement=True, generator=g)
        theta = logits.clone().requires_grad_(True)
        opt = torch.optim.Adam([theta], lr=0.05)
        for _ in range(300):
            opt.zero_grad()
            logp = torch.log_softmax(theta, -1)
            out = dpo_loss(logp[demos], logp[samples], previous[demos], previous[samples], beta)
            out.loss.backward()
            opt.step()
        logits = theta.detach()
        distances.append(total_variation(torch.softmax(logits, -1), TARGET))
        accuracies.append(out.accuracy.item())
    assert all(later < earlier for earlier, later in zip(distances, distances[1:])), distances
    assert distances[-1] < 0.1 < 0.7 < distances[0]
    # demonstrations get harder to tell from samples as the policy nears them
    assert accuracies[0] > 0.8 and accuracies[-1] < accuracies[0] - 0.3, accuracies


# -- the recipe ------------------------------------------------------------------------------
def spin_recipe(*overrides: str) -> SPIN:
    return instantiate(compose_config(["divergence=spin", *overrides]).divergence)


def test_the_yaml_builds_the_recipe():
    recipe = spin_recipe()
    assert isinstance(recipe, SPIN) and (recipe.name, recipe.level) == ("spin", "trajectory")
    assert (recipe.iterations, recipe.beta, recipe.start) == (2, 1.0, "sft")
    assert isinstance(recipe.schedule, Schedule) and recipe.optim.lr == 1.0e-4


class RecordingGraph:
    """The Graph protocol's calls a recipe makes, with labels standing in for artifacts."""

    def __init__(self):
        self.sampled: list[tuple] = []
        self.built: dict[str, tuple] = {}

    def data(self):
        return "data"

    def policy(self, name):
        return name

    def samples_of(self, art, split, num_samples, num_prompts=None, tag=""):
        self.sampled.append((art, split, num_samples, num_prompts, tag))
        return f"sample/{art}/{split}/{tag}"

    def build(self, label, stage, upstream, **context):
        self.built[label] = (stage, upstream, context)
        return label


def test_each_iteration_samples_the_previous_one_and_is_keyed_without_the_count():
    graph = RecordingGraph()
    assert spin_recipe("divergence.iterations=3", "divergence.num_prompts=50").policy(graph) == (
        "policy"
    )
    assert graph.sampled == [
        ("sft", "train", 1, 50, "spin1"),
        ("spin/1", "train", 1, 50, "spin2"),
        ("spin/2", "train", 1, 50, "spin3"),
    ]
    labels = ["spin/1/reference", "spin/1", "spin/2/reference", "spin/2"]
    assert list(graph.built) == [*labels, "spin/3/reference", "policy"]
    stage, upstream, context = graph.built["spin/2"]
    assert isinstance(stage, SPINIteration) and stage.iteration == 2
    assert upstream == {
        "data": "data",
        "samples": "sample/spin/1/train/spin2",
        "previous": "spin/1",
        "reference": "spin/2/reference",
    }
    assert context == {"log_as": "spin2"}
    reference, inputs, _ = graph.built["spin/2/reference"]
    assert isinstance(reference, SPINReference) and inputs["reference"] == "spin/1"
    # a two-iteration run builds the same first two stages: a longer run reuses them
    shorter = RecordingGraph()
    spin_recipe("divergence.iterations=2", "divergence.num_prompts=50").policy(shorter)
    for t, label in ((1, "spin/1"), (2, "policy")):
        assert fingerprint(shorter.built[label][0]) == fingerprint(graph.built[f"spin/{t}"][0])
    # start: init samples pi0 first
    from_init = RecordingGraph()
    spin_recipe("divergence.start=init", "divergence.iterations=1").policy(from_init)
    assert from_init.sampled[0][0] == "init" and list(from_init.built)[-1] == "policy"


@pytest.mark.parametrize(
    "override, message",
    [
        ("divergence.beta=0", "divergence.beta must be > 0, got 0"),
        ("divergence.beta=-0.5", "divergence.beta must be > 0, got -0.5"),
        ("divergence.beta=nan", "divergence.beta must be finite"),
        ("divergence.iterations=0", "divergence.iterations must be an integer >= 1, got 0"),
        ("divergence.iterations=1.5", "divergence.iterations must be an integer, got 1.5"),
        ("divergence.start=demo", "divergence.start must be one of ('sft', 'init')"),
        ("divergence.num_prompts=0", "divergence.num_prompts must be null or an integer >= 1"),
        ("divergence.schedule.batch_size=0", "divergence.schedule.batch_size must be"),
        ("divergence.optim.lr=0", "divergence.optim.lr must be > 0"),
    ],
)
def test_bad_values_fail_before_any_stage_naming_their_key(override, message):
    with pytest.raises(ConfigError) as e:
        validate(compose_config(["divergence=spin", override]))
    assert message in str(e.value)


# -- end to end ------------------------------------------------------------------------------
SPIN_TINY = [
    "divergence=spin",
    "divergence.num_prompts=96",
    "divergence.schedule.epochs=4",
    "divergence.schedule.batch_size=16",
    "divergence.optim.lr=1.0e-3",
    "divergence.optim.warmup_steps=0",
]


def tenths(history: list[dict], key: str) -> tuple[float, float]:
    """Mean of `key` over the first and the last tenth (at least 3 steps) of training."""
    k = max(3, len(history) // 10)
    return np.mean([r[key] for r in history[:k]]), np.mean([r[key] for r in history[-k:]])


def manifest_of(path: str) -> dict:
    return json.loads((Path(path) / "manifest.json").read_text())


@pytest.mark.slow
def test_spin_job_trains_iterations_that_a_longer_run_reuses(tiny_cfg):
    first = run_job(tiny_cfg(*SPIN_TINY, "divergence.iterations=2"))
    assert (first["divergence"], first["divergence_level"]) == ("spin", "trajectory")
    assert set(first["gold"]) == {"init", "sft", "demo", "bon", "policy"}
    stages, arts = first["stages"], first["artifacts"]
    for label in (
        "sample/sft/train/spin1",
        "spin/1/reference",
        "spin/1",
        "sample/spin/1/train/spin2",
        "spin/2/reference",
        "policy",
    ):
        assert stages[label] == "trained", label
    manifest = manifest_of(arts["policy"])
    assert manifest["upstream"]["previous"]["path"] == arts["spin/1"]
    assert manifest["metrics"]["pairs"] == 96 and manifest["metrics"]["iteration"] == 2
    numbers = {k: first["gold"][k]["mean"] for k in ("sft", "demo")}
    numbers["spin2"] = first["gold"]["policy"]["mean"]
    for t, label in ((1, "spin/1"), (2, "policy")):
        history = read_history(arts[label])
        assert len(history) == 4 * 96 // 16
        # before the first update the policy is its reference: margins are 0 up to rounding
        assert history[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)
        assert abs(history[0]["margin"]) < 1e-4
        (acc0, acc1), (loss0, loss1) = tenths(history, "accuracy"), tenths(history, "loss")
        assert acc1 > acc0 + 0.2 and acc1 > 0.9, (t, acc0, acc1)
        assert loss1 < loss0 - 0.2, (t, loss0, loss1)
        assert history[-1]["margin"] > 0
        print(f"SPIN iteration {t}: implicit-reward accuracy {acc0:.3f} -> {acc1:.3f}")
    # a third iteration: only the policy node, the first two come from the cache
    second = Pipeline.from_config(tiny_cfg(*SPIN_TINY, "divergence.iterations=3"), Tracker())
    third = second.policy("policy")
    stages = second.status
    assert stages["spin/1"] == stages["spin/2"] == stages["spin/2/reference"] == "cached"
    assert str(second.artifacts["spin/2"].path) == arts["policy"]
    assert stages["sample/spin/2/train/spin3"] == stages["spin/3/reference"] == "trained"
    assert stages["policy"] == "trained" and third.metrics["iteration"] == 3
    assert manifest_of(third.path)["upstream"]["previous"]["path"] == arts["policy"]
    # each iterate makes the training demonstrations likelier than the one before it did
    demo_logp = [second.artifacts[f"spin/{t}/reference"].metrics["demo_logprob"] for t in (1, 2, 3)]
    assert demo_logp[0] < demo_logp[1] < demo_logp[2], demo_logp
    print("SPIN toy job, gold:", numbers, "log pi_{t-1}(demonstrations):", demo_logp)
