"""A job's final numbers: gold reward of pi0, pi_SFT, the demonstrations, the job's policy
(what `divergence=` trains; pi_SFT itself for forward KL) and Best-of-n on top of it.

Best-of-n comes from one pool of N_max samples of the policy per held-out prompt, scored
once by the gold and the proxy reward; the exact order-statistics estimator then gives
every n <= N_max, so jobs of a sweep over n share all the expensive work. The same pool
gives the policy's `div/*` metrics.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import spearmanr

from afd.core.artifacts import read_history, read_samples, read_scores
from afd.objectives.best_of_n import bon_curve, kl_analytic, sem


def curve_points(n: int, n_max: int) -> list[int]:
    points = {2**k for k in range(int(math.log2(n_max)) + 1)} | {n, n_max}
    return sorted(p for p in points if p <= n_max)


def per_prompt(values: np.ndarray, rows: list[dict]) -> np.ndarray:
    """Mean value per prompt (rows grouped by prompt id, in first-seen order)."""
    groups: dict[str, list[float]] = {}
    for value, row in zip(values, rows):
        groups.setdefault(row["prompt_id"], []).append(value)
    return np.array([np.mean(v) for v in groups.values()])


def stat(values: np.ndarray) -> dict:
    return {"mean": float(np.mean(values)), "sem": sem(values)}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(spearmanr(a, b).statistic)


def policy_metrics(metrics: dict) -> dict:
    """The stage's per-prompt means, without its bookkeeping."""
    return {k: v for k, v in metrics.items() if k not in ("prompts", "smoothing_eps")}


def policy_curve(pipe) -> list[dict]:
    """The job's policy's logged steps with a gold reward (KL to its reference, proxy and gold
    reward): the policy-gradient side of the over-optimisation plot. Empty for SFT."""
    return [r for r in read_history(pipe.policy("policy").path) if "gold" in r]


def evaluate(pipe, n: int) -> dict:
    cfg = pipe.parts.cfg
    n_max, num_prompts = cfg.bon.n_max, cfg.bon.num_prompts
    policy = pipe.label_of(pipe.policy("policy"))
    pool = pipe.samples("policy", "heldout", n_max, num_prompts)
    pool_rows = read_samples(pool.path)
    num_pool_prompts = len(pool_rows) // n_max
    gold = read_scores(pipe.scores(pool, "gold", f"{policy}/heldout").path)
    proxy = read_scores(pipe.scores(pool, pipe.reward(), f"{policy}/heldout").path)
    gold2d, proxy2d = gold.reshape(num_pool_prompts, n_max), proxy.reshape(num_pool_prompts, n_max)
    sft_pool = pipe.samples("sft", "heldout", n_max, num_prompts)
    gold_sft = read_scores(pipe.scores(sft_pool, "gold", "sft/heldout").path)
    gold_sft2d = gold_sft.reshape(num_pool_prompts, n_max)

    init = pipe.samples("init", "heldout", cfg.eval.init_samples_per_prompt, num_prompts)
    init_rows = read_samples(init.path)
    gold_init = read_scores(pipe.scores(init, "gold", "init/heldout").path)
    gold_demo = read_scores(pipe.demo_scores(num_prompts).path)

    # win rates by gold: Best-of-n of the job's policy against one pi_SFT sample (the same
    # prompts' pool), and against one sample of the job's policy itself
    provenance = pipe.provenance()
    curve = bon_curve(gold2d, proxy2d, curve_points(n, n_max), against=gold_sft2d)
    vs_policy = bon_curve(gold2d, proxy2d, [n])[n]["win_rate_mean"]
    reward_metrics = pipe.reward().metrics
    within = [spearman(p, g) for p, g in zip(proxy2d, gold2d)]
    extra = {}
    if cfg.rounds > 1:
        from afd.pipeline.rounds import run_rounds

        extra["rounds"] = run_rounds(pipe, n)
    return {
        **extra,
        "gold": {
            "init": stat(per_prompt(gold_init, init_rows)),
            "sft": stat(gold_sft2d.mean(1)),
            "demo": stat(gold_demo),
            "bon": {"mean": curve[n]["gold_mean"], "sem": curve[n]["gold_sem"]},
            "policy": stat(gold2d.mean(1)),
        },
        "divergence": pipe.divergence.name,
        "divergence_level": pipe.divergence.level,
        "div": policy_metrics(pipe.policy_metrics("policy", pool).metrics),
        "policy_curve": policy_curve(pipe),
        "proxy_bon": {"mean": curve[n]["proxy_mean"], "sem": curve[n]["proxy_sem"]},
        "bon_win_rate_vs_sft": curve[n]["win_rate_mean"],
        "bon_win_rate_vs_policy": vs_policy,
        "bon_kl_analytic": kl_analytic(n),
        "bon_kl": curve[n]["kl_mean"],
        "rm_accuracy": reward_metrics.get("accuracy"),
        "rm_spearman_gold": spearman(proxy, gold),
        "rm_spearman_gold_within_prompt": float(np.nanmean(within))
        if not np.all(np.isnan(within))
        else float("nan"),
        "bon_curve": {str(k): v for k, v in curve.items()},
        "heldout_prompts": num_pool_prompts,
        "n_max": n_max,
        "judge_accuracy": provenance["gold"].get("judge_accuracy"),
        "provenance": provenance,
    }
