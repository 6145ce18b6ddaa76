"""Reward scorers over (prompt, response) rows: trained classifiers and the log-ratio reward.

A reward artifact holds `scorer.json`, an instantiable spec (`_target_` plus paths), so
Best-of-N and evaluation load any reward the same way.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate

from afd.models.batching import (
    IGNORE,
    ClassifierCollator,
    Lengths,
    encode_prompt,
    lm_example,
    pad_batch,
)
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


LOGIT_BYTES = 1 << 29  # 512 MiB of full-vocabulary logits per forward pass, at the most
TOKENS_PER_BATCH = 1 << 16  # rows x longest row, per forward pass of a classifier


def size_batches(lengths: list[int], max_rows: int, max_cells: int) -> list[list[int]]:
    """Row indices in batches, longest rows first (little padding), each of at most
    `max_rows` rows and `max_cells` rows x longest length."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches, current = [], []
    for i in order:
        width = lengths[current[0]] if current else lengths[i]
        if current and (len(current) >= max_rows or (len(current) + 1) * width > max_cells):
            batches.append(current)
            current = []
        current.append(i)
    return batches + ([current] if current else [])


def run_batches(batches: list[list[int]], fn) -> None:
    """fn(batch) for each batch; a batch that runs out of accelerator memory is split in
    two and retried, down to single rows, instead of failing the stage."""
    for batch in batches:
        try:
            fn(batch)
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise
            torch.cuda.empty_cache()
            half = len(batch) // 2
            run_batches([batch[:half], batch[half:]], fn)


def lm_logits(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) of a right-padded LM batch, with logits computed only from the
    position before its first label on: prompts are most of a dialogue's tokens, and their
    full-vocabulary logits would be read by nothing."""
    labels = batch["labels"]
    labelled = labels != IGNORE
    first = int(labelled.int().argmax(1)[labelled.any(1)].min()) if labelled.any() else 1
    start = max(first - 1, 0)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}
    if start and "logits_to_keep" in inspect.signature(model.forward).parameters:
        logits = model(**inputs, logits_to_keep=labels.size(1) - start).logits
        return logits, labels[:, start:]
    return model(**inputs).logits, labels


@torch.no_grad()
def classifier_scores(
    model, tokenizer, rows, lengths: Lengths, batch_size: int = 256
) -> np.ndarray:
    model.eval()
    collate = ClassifierCollator(tokenizer, lengths, side="right")
    device = next(model.parameters()).device
    encoded = [collate.encode(r["prompt"], r["response"]) for r in rows]
    out = np.zeros(len(rows))

    def score(batch):
        padded = pad_batch([encoded[i] for i in batch], tokenizer.pad_token_id, "right")
        logits = reward_logits(model, {k: v.to(device) for k, v in padded.items()})
        out[batch] = logits.float().cpu().numpy()

    run_batches(size_batches([len(e) for e in encoded], batch_size, TOKENS_PER_BATCH), score)
    return out


@torch.no_grad()
def sequence_logprobs(
    model, tokenizer, rows, lengths: Lengths, batch_size: int = 256
) -> np.ndarray:
    """log pi(y|x) of each row's response (re-tokenised, EOS included), summed over its
    tokens."""
    examples = [lm_example(tokenizer, r["prompt"], r["response"], lengths) for r in rows]
    return example_logprobs(model, tokenizer, examples, batch_size)


@torch.no_grad()
def sampled_logprobs(model, tokenizer, rows, lengths: Lengths, batch_size: int = 256) -> np.ndarray:
    """log pi(y|x) of the very tokens each sampled row holds (`token_ids`: the reply as the
    engine drew it, through EOS or a stop string), as a reference policy scores a pool."""
    examples = []
    for r in rows:
        prompt = encode_prompt(tokenizer, r["prompt"], lengths)
        reply = list(r["token_ids"])
        examples.append((prompt + reply, [IGNORE] * len(prompt) + reply))
    return example_logprobs(model, tokenizer, examples, batch_size)


def example_logprobs(model, tokenizer, examples, batch_size: int) -> np.ndarray:
    """Summed log-probabilities of the labelled tokens of (ids, labels) examples, in bounded
    memory: batches are sized so that their response logits stay under LOGIT_BYTES."""
    model.eval()
    device = next(model.parameters()).device
    cells = max(1, LOGIT_BYTES // (4 * model.get_output_embeddings().weight.shape[0]))
    out = np.zeros(len(examples))

    def score(batch):
        ids = [examples[i][0] for i in batch]
        padded = pad_batch(ids, tokenizer.pad_token_id, "right", [examples[i][1] for i in batch])
        logits, labels = lm_logits(model, {k: v.to(device) for k, v in padded.items()})
        out[batch] = sequence_logprob(logits, labels).cpu().numpy()

    run_batches(size_batches([len(ids) for ids, _ in examples], batch_size, cells), score)
    return out


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
