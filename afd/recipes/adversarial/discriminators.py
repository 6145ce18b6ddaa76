"""The discriminators of adversarial imitation (`divergence/discriminator=`).

`TrajectoryDiscriminator` scores a whole response, D(y|x): one logit per sequence, one
reward at the end. `OccupancyDiscriminator` scores each (state, action) = (prefix, next
token), the occupancy-measure view of GAIL: one logit, hence one reward, per token. Both
read the batches of `Rollouts.lm_batch` (afd/models/generation/on_policy.py: prompt + response,
labels on the response) and return logits aligned with `token_logprobs`
(afd/objectives/losses.py: index t scores the token that position t predicts), with a mask of
the positions that carry a score.
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForTokenClassification

from afd.models.batching import IGNORE
from afd.models.loading import DTYPES, load_classifier, resize_for_tokenizer


def _inputs(batch) -> dict:
    return {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}


class TrajectoryDiscriminator:
    """A sequence classifier (the last response token's logit): reward at the end of y."""

    level = "trajectory"
    task = "classifier"  # the peft task type LoRA wraps it as

    def load(self, path, tokenizer, dtype: str = "float32", trust_remote_code: bool = False):
        return load_classifier(path, tokenizer, dtype, trust_remote_code)

    def logits(self, model, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """((B, 1) logits, (B, 1) mask): one score per response."""
        logit = model(**_inputs(batch)).logits.float().reshape(-1, 1)
        return logit, torch.ones_like(logit, dtype=torch.bool)


class OccupancyDiscriminator:
    """A token classifier: the logit at a response token scores (prefix, that token)."""

    level = "occupancy"
    task = "token_classifier"

    def load(self, path, tokenizer, dtype: str = "float32", trust_remote_code: bool = False):
        config = AutoConfig.from_pretrained(
            str(path), num_labels=1, trust_remote_code=trust_remote_code
        )
        config.classifier_dropout = 0.0  # the logit is a reward: no noise on it
        model = AutoModelForTokenClassification.from_pretrained(
            str(path), config=config, dtype=DTYPES[dtype], trust_remote_code=trust_remote_code
        )
        resize_for_tokenizer(model, tokenizer)
        return model

    def logits(self, model, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """((B, T-1) logits, (B, T-1) mask) over response tokens, aligned with token_logprobs."""
        logit = model(**_inputs(batch)).logits.float().squeeze(-1)
        return logit[:, 1:], batch["labels"][:, 1:] != IGNORE
