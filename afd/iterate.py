"""Iterative AfD (`rounds=K`): improve the policy, resample, retrain the reward model, repeat.

Round k (1..K) starts from policy pi_{k-1} (pi_0 is the job's policy, pi_SFT under forward
KL). Its reward model is `cfg.reward` retrained with pi_{k-1} in the role pi_SFT plays in
the recipe (Init-SFT: pi_{k-1} samples against pi0 samples; Demo-SFT: demonstrations
against pi_{k-1}, the adversarial iteration). Best-of-n of pi_{k-1} under that reward is
judged on held-out prompts, and pi_k is pi_{k-1} fine-tuned on its own Best-of-`iterate.n`
replies to training prompts (policy improvement by distillation). Every round's gold
reward is logged; all nodes are cached like any other.
"""

from __future__ import annotations

import numpy as np

from afd.bon import bon_curve
from afd.cache import Artifact
from afd.stages import distill as distill_stage
from afd.stages.sample import read_samples
from afd.stages.score import read_scores


def round_policy(pipe, k: int) -> Artifact:
    """pi_k: pi_{k-1} distilled on its Best-of-n replies under round k's reward model."""
    if k < 1:
        return pipe.policy("policy")
    cfg, previous = pipe.cfg.iterate, f"round/{k - 1}"
    base = pipe.policy(previous)
    reward = pipe.reward(current=previous)
    pool = pipe.samples(previous, "train", cfg.n, cfg.num_prompts, tag=f"best_of_{cfg.n}")
    rows = read_samples(pool.path)
    scores = read_scores(
        pipe.scores(f"{pipe.canonical(previous)}/train/round{k}", pool, rows, "reward", reward).path
    )
    best = [rows[i * cfg.n + int(np.argmax(s))] for i, s in enumerate(scores.reshape(-1, cfg.n))]
    config = {
        "iterate": cfg,
        "lengths": pipe.cfg.data.lengths,
        "trainer": pipe.cfg.trainer,
        "seed": pipe.cfg.seed,
    }
    upstream = {"base": base, "reward": reward, "samples": pool}
    return pipe._node(
        f"round/{k}",
        "distill",
        config,
        upstream,
        lambda out: pipe.launcher.run(
            distill_stage.build,
            out,
            [(r["prompt"], r["response"]) for r in best],
            str(base.path),
            pipe._schedule("iterate"),
            pipe._optim("iterate"),
            pipe.lengths,
            pipe.cfg.trainer,
            pipe.cfg.seed + k,
            pipe.tracker.lightning_logger(f"round{k}"),
            pipe.cfg.progress,
            pipe.model_options,
        ),
    )


def heldout_round(pipe, k: int, n: int) -> dict:
    """Round k's numbers on held-out prompts: gold of pi_{k-1}, and Best-of-n of pi_{k-1}
    under round k's reward model (gold and proxy)."""
    cfg, previous = pipe.cfg, f"round/{k - 1}"
    name = pipe.canonical(previous)
    reward = pipe.reward(current=previous)
    pool = pipe.samples(previous, "heldout", cfg.bon.n_max, cfg.bon.num_prompts)
    rows = read_samples(pool.path)
    gold = read_scores(pipe.scores(f"{name}/heldout", pool, rows, "gold").path).reshape(
        -1, cfg.bon.n_max
    )
    proxy = read_scores(pipe.scores(f"{name}/heldout/round{k}", pool, rows, "reward", reward).path)
    curve = bon_curve(gold, proxy.reshape(gold.shape), [n])[n]
    return {
        "round": k,
        "gold_policy": float(gold.mean()),
        "gold_bon": curve["gold_mean"],
        "gold_bon_sem": curve["gold_sem"],
        "proxy_bon": curve["proxy_mean"],
        "rm_accuracy": reward.metrics.get("accuracy"),
    }


def run_rounds(pipe, n: int) -> dict:
    """Every round's held-out numbers and the gold reward of the last round's policy."""
    rounds = [heldout_round(pipe, k, n) for k in range(1, pipe.cfg.rounds + 1)]
    last = f"round/{pipe.cfg.rounds}"
    pool = pipe.samples(last, "heldout", pipe.cfg.bon.n_max, pipe.cfg.bon.num_prompts)
    gold = read_scores(pipe.scores(f"{last}/heldout", pool, read_samples(pool.path), "gold").path)
    return {"per_round": rounds, "gold_final_policy": float(gold.mean())}
