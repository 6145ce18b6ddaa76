"""Reward scorers over (prompt, response) rows: trained classifiers and the log-ratio reward.

A reward artifact holds `scorer.json`, an instantiable spec (`_target_` plus paths), so
Best-of-N and evaluation load any reward the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate

from afd.models.batching import ClassifierCollator, Lengths, LMCollator
from afd.models.devices import inference_device
from afd.models.loading import load_classifier, load_policy
from afd.models.tokenizers import load_tokenizer
from afd.objectives.losses import sequence_logprob

SCORER_FILE = "scorer.json"


def reward_logits(model, batch) -> torch.Tensor:
    """The scalar head's output at each sequence's last real token, as a (B,) tensor."""
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
    )
    return out.logits.squeeze(-1)


def _batches(rows, size):
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


@torch.no_grad()
def classifier_scores(
    model, tokenizer, rows, lengths: Lengths, batch_size: int = 256
) -> np.ndarray:
    model.eval()
    collate = ClassifierCollator(tokenizer, lengths, side="right")
    device = next(model.parameters()).device
    out = []
    for chunk in _batches([(r["prompt"], r["response"]) for r in rows], batch_size):
        batch = {k: v.to(device) for k, v in collate(chunk).items()}
        out.append(reward_logits(model, batch).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)


@torch.no_grad()
def sequence_logprobs(
    model, tokenizer, rows, lengths: Lengths, batch_size: int = 256
) -> np.ndarray:
    """log pi(y|x) of each row's response (EOS included), summed over its tokens."""
    model.eval()
    collate = LMCollator(tokenizer, lengths)
    device = next(model.parameters()).device
    out = []
    for chunk in _batches([(r["prompt"], r["response"]) for r in rows], batch_size):
        batch = {k: v.to(device) for k, v in collate(chunk).items()}
        logits = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
        ).logits
        out.append(sequence_logprob(logits, batch["labels"]).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)


class ClassifierScorer:
    """The logit of a sequence classifier saved in HF format."""

    def __init__(
        self,
        path: str,
        max_prompt_tokens: int,
        max_response_tokens: int,
        batch_size: int = 256,
        dtype: str = "float32",
        trust_remote_code: bool = False,
        format=None,
    ):
        self.tokenizer = load_tokenizer(path, trust_remote_code)
        self.model = load_classifier(path, self.tokenizer, dtype, trust_remote_code).to(
            inference_device()
        )
        self.lengths = Lengths(max_prompt_tokens, max_response_tokens, format=format)
        self.batch_size = batch_size

    def score(self, rows) -> np.ndarray:
        return classifier_scores(self.model, self.tokenizer, rows, self.lengths, self.batch_size)


class LogRatioScorer:
    """log pi_num(y|x) - log pi_den(y|x): the closed-form optimum of the Init-SFT classifier."""

    def __init__(
        self,
        numerator: str,
        denominator: str,
        max_prompt_tokens: int,
        max_response_tokens: int,
        batch_size: int = 256,
        dtype: str = "float32",
        trust_remote_code: bool = False,
        format=None,
    ):
        self.tokenizer = load_tokenizer(numerator, trust_remote_code)
        device = inference_device()
        self.numerator = load_policy(numerator, self.tokenizer, dtype, trust_remote_code).to(device)
        self.denominator = load_policy(denominator, self.tokenizer, dtype, trust_remote_code).to(
            device
        )
        self.lengths = Lengths(max_prompt_tokens, max_response_tokens, format=format)
        self.batch_size = batch_size

    def score(self, rows) -> np.ndarray:
        num = sequence_logprobs(self.numerator, self.tokenizer, rows, self.lengths, self.batch_size)
        den = sequence_logprobs(
            self.denominator, self.tokenizer, rows, self.lengths, self.batch_size
        )
        return num - den


def save_scorer_spec(out_dir: Path, spec: dict) -> None:
    (Path(out_dir) / SCORER_FILE).write_text(json.dumps(spec, indent=2))


def load_scorer(reward_dir: str | Path):
    """Instantiate a reward artifact's scorer; a path of "." means the artifact itself
    (it was written before the artifact was moved into place)."""
    spec = json.loads((Path(reward_dir) / SCORER_FILE).read_text())
    return instantiate(_resolve_self(spec, str(Path(reward_dir))))


def _resolve_self(node, here: str):
    if isinstance(node, dict):
        return {k: _resolve_self(v, here) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_self(v, here) for v in node]
    return here if node == "." else node
