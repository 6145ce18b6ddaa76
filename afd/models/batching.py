"""Tokenising (prompt, response) pairs and padding them into model batches.

A response is tokenised apart from its prompt (joined by one space) and closed with EOS,
so the token boundary is the same in training, sampling and scoring. That is the text
convention of HH-RLHF too ("...\n\nAssistant: Sure, ..."): for byte-level BPE (GPT-2) and
SentencePiece without a dummy prefix (Gemma), tokens of `prompt` + tokens of `" " + response`
equal the tokens of the joined text. A tokenizer that starts every text with BOS (Gemma,
Llama) gets it in front of the prompt, after truncation. Position ids come from the
attention mask, so left and right padding give the same numbers.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from afd.core.errors import ConfigError, DataError
from afd.models.dialogue import PlainText

IGNORE = -100


PROMPT_TRUNCATION = ("left", "right")
LONG_RESPONSES = ("truncate", "drop")


@dataclass(frozen=True)
class Lengths:
    """How a (prompt, response) pair becomes tokens: limits and the dialogue format.

    A long prompt loses its oldest tokens (`prompt_truncation="left"`, which keeps the final
    "Assistant:" cue) or its newest ("right"); under a chat template, its oldest turns. A long
    response keeps its first `max_response_tokens` and gets no EOS
    (`long_responses="truncate"`); with "drop", training stages leave such rows out instead
    (scoring always truncates: every row needs a score). `format` is the policy's: the HH
    text (PlainText) or its chat template (ChatTemplate)."""

    max_prompt_tokens: int = 256
    max_response_tokens: int = 128
    prompt_truncation: str = "left"
    long_responses: str = "truncate"
    format: Any = None  # PlainText() when None

    def __post_init__(self):
        object.__setattr__(self, "format", self.format or PlainText())
        if self.prompt_truncation not in PROMPT_TRUNCATION:
            raise ConfigError(
                f"data.lengths.prompt_truncation must be one of {PROMPT_TRUNCATION}, "
                f"got {self.prompt_truncation!r}"
            )
        if self.long_responses not in LONG_RESPONSES:
            raise ConfigError(
                f"data.lengths.long_responses must be one of {LONG_RESPONSES}, "
                f"got {self.long_responses!r}"
            )


_BOS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def leading_bos(tokenizer) -> list[int]:
    """[BOS] if the tokenizer starts every text with it (Gemma, Llama), else []."""
    if tokenizer not in _BOS:
        bos, with_special = tokenizer.bos_token_id, tokenizer("a")["input_ids"]
        adds = (
            bos is not None
            and bool(with_special)
            and with_special[0] == bos
            and (with_special != tokenizer("a", add_special_tokens=False)["input_ids"])
        )
        _BOS[tokenizer] = [bos] if adds else []
    return list(_BOS[tokenizer])


def truncate(ids: list[int], limit: int, side: str) -> list[int]:
    """At most `limit` ids, cut from the `side` end ("left" drops the oldest)."""
    if len(ids) <= limit:
        return ids
    return ids[len(ids) - limit :] if side == "left" else ids[:limit]


def encode_prompt(tokenizer, prompt: str, lengths: Lengths) -> list[int]:
    if lengths.format.chat:
        bos = leading_bos(tokenizer)
        ids = lengths.format.prompt_ids(tokenizer, prompt, lengths.max_prompt_tokens - len(bos))
        return bos + ids if ids[: len(bos)] != bos else ids
    bos = leading_bos(tokenizer)
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return bos + truncate(ids, lengths.max_prompt_tokens - len(bos), lengths.prompt_truncation)


def encode_response(tokenizer, response: str, lengths: Lengths, add_eos: bool = True) -> list[int]:
    """Response ids closed by EOS; a response cut at the limit gets no EOS (it did not end)."""
    ids = tokenizer(response_text(response, lengths), add_special_tokens=False)["input_ids"]
    if len(ids) > lengths.max_response_tokens:
        return ids[: lengths.max_response_tokens]
    return ids + [tokenizer.eos_token_id] if add_eos else ids


def response_text(response: str, lengths: Lengths) -> str:
    """HH writes a reply after one space; a chat template starts it on its own line."""
    return response if lengths.format.chat else " " + response


def response_fits(tokenizer, response: str, lengths: Lengths) -> bool:
    ids = tokenizer(response_text(response, lengths), add_special_tokens=False)["input_ids"]
    return len(ids) <= lengths.max_response_tokens


def training_rows(
    rows: list[tuple], tokenizer, lengths: Lengths, response_fields=(1,)
) -> tuple[list[tuple], int]:
    """Rows a training stage uses and how many it left out: with `long_responses="drop"`,
    a row any of whose responses (tuple positions `response_fields`) exceeds the limit."""
    if lengths.long_responses != "drop":
        return rows, 0
    kept = [
        r for r in rows if all(response_fits(tokenizer, r[i], lengths) for i in response_fields)
    ]
    if rows and not kept:
        raise DataError(
            f"no training rows left: all {len(rows)} responses are longer than "
            f"data.lengths.max_response_tokens={lengths.max_response_tokens} tokens and "
            "data.lengths.long_responses=drop leaves them out; raise the limit, or truncate"
        )
    return kept, len(rows) - len(kept)


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def pad_batch(
    sequences: list[list[int]],
    pad_id: int,
    side: str = "right",
    labels: list[list[int]] | None = None,
) -> dict[str, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    lab = torch.full((len(sequences), width), IGNORE, dtype=torch.long) if labels else None
    for i, seq in enumerate(sequences):
        span = slice(0, len(seq)) if side == "right" else slice(width - len(seq), width)
        ids[i, span] = torch.tensor(seq, dtype=torch.long)
        mask[i, span] = 1
        if lab is not None:
            lab[i, span] = torch.tensor(labels[i], dtype=torch.long)
    batch = {"input_ids": ids, "attention_mask": mask, "position_ids": position_ids(mask)}
    if lab is not None:
        batch["labels"] = lab
    return batch


def lm_example(tokenizer, prompt: str, response: str, lengths: Lengths, train_on_prompt=False):
    """(token ids, labels): labels copy the response tokens and mask the prompt's."""
    p = encode_prompt(tokenizer, prompt, lengths)
    r = encode_response(tokenizer, response, lengths)
    labels = (p if train_on_prompt else [IGNORE] * len(p)) + r
    return p + r, labels


@dataclass
class LMCollator:
    """Collate (prompt, response) rows into a causal-LM batch, loss on response tokens."""

    tokenizer: PreTrainedTokenizerBase
    lengths: Lengths
    train_on_prompt: bool = False

    def __call__(self, rows: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
        pairs = [
            lm_example(self.tokenizer, p, r, self.lengths, self.train_on_prompt) for p, r in rows
        ]
        return pad_batch(
            [x for x, _ in pairs], self.tokenizer.pad_token_id, "right", [y for _, y in pairs]
        )


@dataclass
class ClassifierCollator:
    """Collate (prompt, response, target) rows into a batch for a scalar-head classifier."""

    tokenizer: PreTrainedTokenizerBase
    lengths: Lengths
    side: str = "right"

    def encode(self, prompt: str, response: str) -> list[int]:
        return encode_prompt(self.tokenizer, prompt, self.lengths) + encode_response(
            self.tokenizer, response, self.lengths
        )

    def __call__(self, rows: list[tuple]) -> dict[str, torch.Tensor]:
        batch = pad_batch(
            [self.encode(r[0], r[1]) for r in rows], self.tokenizer.pad_token_id, self.side
        )
        if len(rows[0]) > 2:
            batch["targets"] = torch.tensor([float(r[2]) for r in rows])
        return batch


@dataclass
class PairCollator:
    """Collate (prompt, chosen, rejected) rows: chosen rows first, then rejected ones."""

    tokenizer: PreTrainedTokenizerBase
    lengths: Lengths

    def __call__(self, rows: list[tuple[str, str, str]]) -> dict[str, torch.Tensor]:
        encode = ClassifierCollator(self.tokenizer, self.lengths).encode
        seqs = [encode(p, c) for p, c, _ in rows] + [encode(p, r) for p, _, r in rows]
        return pad_batch(seqs, self.tokenizer.pad_token_id, "right")
