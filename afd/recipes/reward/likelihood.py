"""`reward=sft_likelihood`: log pi_SFT(y|x), the demonstrations' likelihood under the SFT policy,
with no contrast against pi0 and no training.

The ablation of the IRL reward's contrast: Init-SFT's optimum is log pi_SFT - log pi0, and
this keeps only its first term, so Best-of-n picks the replies pi_SFT finds likeliest (a
mode-seeking selection that favours short, generic replies). Its held-out accuracy is
measured on the same pi_SFT-vs-pi0 rows an Init-SFT classifier would see.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from afd.core.config import check_count
from afd.core.errors import ConfigError
from afd.models.batching import Lengths
from afd.models.devices import inference_device
from afd.models.loading import load_policy
from afd.models.scoring import load_scorer, save_scorer_spec, sequence_logprobs
from afd.models.tokenizers import load_tokenizer
from afd.recipes.reward.common import (
    POLICIES,
    check_choice,
    labelled_accuracy,
    labelled_rows,
    scorer_spec,
    split_by_prompt,
)


class LikelihoodScorer:
    """log pi(y|x) of a policy saved in HF format, summed over the reply's tokens and EOS."""

    def __init__(
        self, policy, max_prompt_tokens, max_response_tokens, dtype, trust_remote_code, format
    ):
        self.tokenizer = load_tokenizer(policy, trust_remote_code)
        self.model = load_policy(policy, self.tokenizer, dtype, trust_remote_code)
        self.model.to(inference_device())
        self.lengths = Lengths(max_prompt_tokens, max_response_tokens, format=format)

    def score(self, rows) -> np.ndarray:
        return sequence_logprobs(self.model, self.tokenizer, rows, self.lengths)


@dataclass
class Likelihood:
    stage: ClassVar[str] = "reward"
    reads: ClassVar[tuple[str, ...]] = ("lengths", "seed", "load")
    trains: ClassVar[bool] = False

    name: str
    policy: str  # whose likelihood: sft | init
    num_prompts: int | None  # rows for its held-out accuracy, as for init_sft
    samples_per_prompt: int
    val_fraction: float

    def __post_init__(self):
        check_choice("policy", self.policy, POLICIES)
        check_count(self.num_prompts, "reward.num_prompts", optional=True)
        check_count(self.samples_per_prompt, "reward.samples_per_prompt")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"reward.val_fraction must be in [0, 1), got {self.val_fraction}")

    def sources(self) -> dict[str, str]:
        return {"positive": "sft", "negative": "init"}

    def policies(self) -> dict[str, str]:
        return {"policy": self.policy}

    def rows_per_source(self) -> tuple[int | None, int]:
        return self.num_prompts, self.samples_per_prompt

    def build(self, out_dir: Path, ctx, inputs: dict[str, Path]) -> dict:
        target = f"{LikelihoodScorer.__module__}.{LikelihoodScorer.__qualname__}"
        spec = scorer_spec(target, ctx.lengths, ctx.load, policy=str(inputs["policy"]))
        save_scorer_spec(out_dir, spec)
        _, val = split_by_prompt(labelled_rows(self, inputs), self.val_fraction, ctx.seed)
        return {"accuracy": labelled_accuracy(load_scorer(out_dir), val), "val_rows": len(val)}
