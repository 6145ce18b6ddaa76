"""Stage `policy_metrics`: how a policy's held-out replies relate to its references and, where
the task knows it, to the demonstrator.

On every task: the sequence-level KL of the policy to pi_SFT and to pi0 (`kl_sft`,
`kl_init`: the mean over the pool of log pi(y|x) - log ref(y|x), log pi as the engine drew
the reply and log ref from the reference scoring the same token ids; a policy's KL to itself
is 0 and not computed), and distinct-n and self-BLEU. On a task that knows its demonstrator
(KnowsDemonstrator: the synthetic task, with an exact `support(meta)` and `modes(meta)`), the
`div/*` metrics of afd/objectives/demonstrator_metrics.py: exact forward KL, reverse KL
(against beta smoothed by the policy itself, the skew divergence), precision, support mass,
mode coverage and entropy. Every number is a mean over held-out prompts; `per_prompt.json`
keeps the per-prompt values.

The policy itself is loaded only for the exact forward KL (its log-probability of each of
the demonstrator's replies); models are loaded one at a time.
"""

from __future__ import annotations

import gc
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
from afd.models.scoring import sampled_logprobs, sequence_logprobs
from afd.models.tokenizers import load_tokenizer
from afd.objectives import demonstrator_metrics as dm
from afd.objectives.diversity import distinct_n, self_bleu

REFERENCES = ("sft", "init")  # KL to each, as `kl_<name>`
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


def loaded(path: str, load):
    """(model, tokenizer) of a policy artifact, on the inference device."""
    tokenizer = load_tokenizer(path, load.trust_remote_code)
    model = load_policy(path, tokenizer, load.dtype, load.trust_remote_code)
    return model.to(inference_device()), tokenizer


def support_logprobs(groups, rows, policy_path: str, lengths, demonstrator, load) -> list[dict]:
    """log pi(y|x) of every reply in the demonstrator's support, per prompt."""
    model, tokenizer = loaded(policy_path, load)
    supports = [sorted(demonstrator.support(rows[g[0]]["meta"])) for g in groups]
    support_rows = [
        {"prompt": rows[g[0]]["prompt"], "response": y}
        for g, ys in zip(groups, supports)
        for y in ys
    ]
    flat = iter(sequence_logprobs(model, tokenizer, support_rows, lengths))
    return [{y: float(next(flat)) for y in ys} for ys in supports]


def reference_logprobs(rows, references: dict[str, str], lengths, load) -> dict[str, np.ndarray]:
    """log ref(y|x) of the pool's sampled token ids under each reference policy."""
    out = {}
    for name, path in references.items():
        model, tokenizer = loaded(path, load)
        out[name] = sampled_logprobs(model, tokenizer, rows, lengths)
        del model
        gc.collect()
    return out


def build(
    out_dir: Path,
    rows: list[dict],
    policy_path: str,
    lengths,
    demonstrator,
    coverage_samples,
    load,
    references: dict[str, str] | None = None,
) -> dict:
    logp = np.array([r["logprob"] for r in rows], dtype=float)
    groups = group_by_prompt(rows)
    ref_logp = reference_logprobs(rows, references or {}, lengths, load)
    supports = []
    if demonstrator is not None:
        supports = support_logprobs(groups, rows, policy_path, lengths, demonstrator, load)
    per_prompt = []
    for k, g in enumerate(groups):
        texts = [rows[i]["response"] for i in g]
        values = diversity(texts[:coverage_samples])
        values.update(
            {f"kl_{name}": float(np.mean(logp[g] - lr[g])) for name, lr in ref_logp.items()}
        )
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
        """inputs: `policy`, `samples` (its held-out pool) and `reference_<name>` for each
        reference in REFERENCES that is not the policy itself."""
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
            {r: str(inputs[f"reference_{r}"]) for r in REFERENCES if f"reference_{r}" in inputs},
        )
