"""Iterative AfD (`rounds=K`): improve the policy, resample, retrain the reward model, repeat.

Round k (1..K) starts from policy pi_{k-1} (pi_0 is the job's policy, pi_SFT under forward
KL). Its reward model is `reward=` retrained with pi_{k-1} in the role pi_SFT plays in the
recipe (Init-SFT: pi_{k-1} samples against pi0 samples; Demo-SFT: demonstrations against
pi_{k-1}, the adversarial iteration). Best-of-n of pi_{k-1} under that reward is judged on
held-out prompts, and pi_k is pi_{k-1} fine-tuned on its own Best-of-`iterate.n` replies to
training prompts (afd/recipes/distill.py). Every round's gold reward is logged; all nodes are
cached like any other.
"""

from __future__ import annotations

from afd.core.artifacts import read_scores
from afd.core.cache import Artifact
from afd.objectives.best_of_n import bon_curve


def round_policy(pipe, k: int) -> Artifact:
    """pi_k: pi_{k-1} distilled on its Best-of-n replies under round k's reward model."""
    if k < 1:
        return pipe.policy("policy")
    recipe, previous = pipe.parts.iterate, f"round/{k - 1}"
    base = pipe.policy(previous)
    reward = pipe.reward(current=previous)
    pool = pipe.samples(previous, "train", recipe.n, recipe.num_prompts, tag=f"best_of_{recipe.n}")
    scores = pipe.scores(pool, reward, f"{pipe.label_of(base)}/train/round{k}")
    upstream = {"base": base, "samples": pool, "scores": scores}
    return pipe.build(f"round/{k}", recipe, upstream, log_as=f"round{k}", seed=pipe.seed + k)


def heldout_round(pipe, k: int, n: int) -> dict:
    """Round k's numbers on held-out prompts: gold of pi_{k-1}, and Best-of-n of pi_{k-1}
    under round k's reward model (gold and proxy)."""
    cfg, previous = pipe.parts.cfg, f"round/{k - 1}"
    name = pipe.label_of(pipe.policy(previous))
    reward = pipe.reward(current=previous)
    pool = pipe.samples(previous, "heldout", cfg.bon.n_max, cfg.bon.num_prompts)
    gold = read_scores(pipe.scores(pool, "gold", f"{name}/heldout").path)
    gold = gold.reshape(-1, cfg.bon.n_max)
    proxy = read_scores(pipe.scores(pool, reward, f"{name}/heldout/round{k}").path)
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
    cfg = pipe.parts.cfg
    rounds = [heldout_round(pipe, k, n) for k in range(1, cfg.rounds + 1)]
    last = f"round/{cfg.rounds}"
    pool = pipe.samples(last, "heldout", cfg.bon.n_max, cfg.bon.num_prompts)
    gold = read_scores(pipe.scores(pool, "gold", f"{last}/heldout").path)
    return {"per_round": rounds, "gold_final_policy": float(gold.mean())}
