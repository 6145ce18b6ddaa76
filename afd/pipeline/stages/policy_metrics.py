"""Stage `policy_metrics`: how a policy's held-out replies relate to the demonstrator.

On a task that knows its demonstrator (KnowsDemonstrator: the synthetic task, with an exact
`support(meta)` and `modes(meta)`), the `div/*` metrics of
afd/objectives/demonstrator_metrics.py: exact forward KL, reverse KL (against beta smoothed by
the policy itself, the skew divergence), precision, support mass, mode coverage and entropy.
On any task, distinct-n and self-BLEU. Every number is a mean over held-out prompts;
`per_prompt.json` keeps the per-prompt values.

log pi(y|x) is read off the policy for the re-tokenised reply closed by EOS (as in
training), also for the rare sample that ran into `max_new_tokens` without one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from afd.core.artifacts import read_samples
from afd.core.protocols import KnowsDemonstrator
from afd.models.devices import inference_device
from afd.models.loading import load_policy
from afd.models.scoring import sequence_logprobs
from afd.models.tokenizers import load_tokenizer
from afd.objectives import demonstrator_metrics as dm
from afd.objectives.diversity import distinct_n, self_bleu

PER_PROMPT = "per_prompt.json"


def group_by_prompt(rows: list[dict]) -> list[list[int]]:
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(row["prompt_id"], []).append(i)
    return list(groups.values())


def diversity(texts: list[str]) -> dict[str, float]:
    return {
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "self_bleu": self_bleu(texts),
    }


def divergences(
    demonstrator,
    meta: dict,
    texts: list[str],
    logp: np.ndarray,
    logp_support: dict[str, float],
    coverage_samples: int,
) -> dict[str, float]:
    support = demonstrator.support(meta)
    logp_beta = [demonstrator.log_prob(meta, t) for t in texts]
    mass, share = dm.coverage(texts[:coverage_samples], demonstrator.modes(meta))
    return {
        "forward_kl": dm.forward_kl_exact(support, logp_support),
        "reverse_kl": dm.reverse_kl_estimate(logp, logp_beta),
        "precision": dm.precision(texts, support),
        "support_mass": dm.support_mass(logp_support),
        "coverage": mass,
        "mode_share": share,
        "entropy": dm.entropy_estimate(logp),
    }


def build(
    out_dir: Path, rows: list[dict], policy_path: str, lengths, demonstrator, coverage_samples, load
) -> dict:
    tokenizer = load_tokenizer(policy_path, load.trust_remote_code)
    model = load_policy(policy_path, tokenizer, load.dtype, load.trust_remote_code).to(
        inference_device()
    )
    logp = sequence_logprobs(model, tokenizer, rows, lengths)
    groups = group_by_prompt(rows)
    supports: list[list[str]] = []
    if demonstrator is not None:
        supports = [sorted(demonstrator.support(rows[g[0]]["meta"])) for g in groups]
        support_rows = [
            {"prompt": rows[g[0]]["prompt"], "response": y}
            for g, ys in zip(groups, supports)
            for y in ys
        ]
        flat = iter(sequence_logprobs(model, tokenizer, support_rows, lengths))
        supports = [{y: float(next(flat)) for y in ys} for ys in supports]
    per_prompt = []
    for k, g in enumerate(groups):
        texts = [rows[i]["response"] for i in g]
        values = diversity(texts[:coverage_samples])
        if demonstrator is not None:
            values.update(
                divergences(
                    demonstrator, rows[g[0]]["meta"], texts, logp[g], supports[k], coverage_samples
                )
            )
        per_prompt.append({"prompt_id": rows[g[0]]["prompt_id"], **values})
    (Path(out_dir) / PER_PROMPT).write_text(json.dumps(per_prompt))
    keys = [k for k in per_prompt[0] if k != "prompt_id"]
    means = {k: float(np.nanmean([p[k] for p in per_prompt])) for k in keys}
    sems = {
        f"{k}_sem": float(
            np.nanstd([p[k] for p in per_prompt], ddof=1) / math.sqrt(len(per_prompt))
        )
        for k in keys
        if len(per_prompt) > 1
    }
    return {**means, **sems, "prompts": len(per_prompt), "smoothing_eps": dm.SMOOTHING_EPS}


@dataclass
class PolicyMetricsStage:
    stage: ClassVar[str] = "policy_metrics"
    reads: ClassVar[tuple[str, ...]] = ("lengths", "load", "task")
    trains: ClassVar[bool] = False

    coverage_samples: int  # samples per prompt that mode coverage and diversity look at

    def build(self, out_dir: Path, ctx, inputs: dict[str, Path]) -> dict:
        """inputs: `policy` and `samples`, its held-out pool."""
        task = ctx.task.get()
        demonstrator = task.demonstrator if isinstance(task, KnowsDemonstrator) else None
        rows = read_samples(inputs["samples"])
        return build(
            out_dir,
            rows,
            str(inputs["policy"]),
            ctx.lengths,
            demonstrator,
            self.coverage_samples,
            ctx.load,
        )
