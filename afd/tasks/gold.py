"""Gold reward scorers, the judges of every result (`conf/gold/*.yaml`).

On the synthetic task the gold reward is programmatic and exact (it reads each row's
`meta`); on real text it is a golden reward model (`RewardModelGold`): a Hugging Face
sequence classifier over (prompt, response), batched, truncated to its max length with
the response kept whole where possible, and read at the last real token.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch

from afd.core.config import check_number
from afd.core.errors import ConfigError
from afd.models.batching import leading_bos, pad_batch
from afd.models.dialogue import PlainText
from afd.models.loading import check_dtype, check_model_source
from afd.models.scoring import TOKENS_PER_BATCH, run_batches, size_batches
from afd.tasks.toy.gold import GOLD_REWARDS


class ToyGold:
    """r*(x, y) of the synthetic task; `kind` = helpful | harmless | hh."""

    def __init__(self, kind: str | None):
        if kind is None:
            raise ConfigError(
                "gold=toy scores only the synthetic task (data=toy): for other data choose a "
                "judge, e.g. gold=gpt2_large_harmless, or gold.name_or_path=DIR of a reward model"
            )
        if kind not in GOLD_REWARDS:
            raise ConfigError(f"gold.kind must be one of {sorted(GOLD_REWARDS)}, got {kind!r}")
        self.kind = kind
        self.fn = GOLD_REWARDS[kind]

    def score(self, rows) -> np.ndarray:
        missing = [i for i, r in enumerate(rows[:1]) if "type" not in (r.get("meta") or {})]
        if missing:
            raise ValueError(
                "the synthetic gold reward needs each row's meta (request type and "
                "arguments); these rows do not come from data=toy"
            )
        return np.array([self.fn(r["meta"], r["response"]) for r in rows], dtype=float)


def fit_pair(prompt: list[int], response: list[int], budget: int) -> tuple[list[int], list[int]]:
    """Cut (prompt, response) ids to `budget` tokens in all. The response keeps its start and
    gives up tokens only beyond what leaves the prompt half the budget; the prompt keeps its
    end (the turns nearest the reply)."""
    if len(prompt) + len(response) <= budget:
        return prompt, response
    response = response[: budget - min(len(prompt), budget // 2)]
    keep = budget - len(response)
    return (prompt[len(prompt) - keep :] if keep else []), response


class RewardModelGold:
    """A golden reward model from the Hub or disk; `format` renders the pair for it."""

    def __init__(
        self,
        name_or_path: str,
        format=None,
        max_length: int = 512,
        batch_size: int = 16,
        dtype: str = "float32",
        trust_remote_code: bool = False,
        padding_side: str = "right",
        fresh_head: bool = False,
    ):
        if not name_or_path:
            raise ConfigError("gold.name_or_path is empty: give a Hub id or a local directory")
        check_model_source(str(name_or_path), "gold.name_or_path")
        check_number(max_length, "gold.max_length", 2, integer=True)
        check_number(batch_size, "gold.batch_size", 1, integer=True)
        if padding_side not in ("left", "right"):
            raise ConfigError(f"gold.padding_side must be 'left' or 'right', got {padding_side!r}")
        check_dtype(dtype, "gold.dtype")
        self.name_or_path = str(name_or_path)
        self.format = format or PlainText()
        self.max_length, self.batch_size = max_length, batch_size
        self.dtype, self.trust_remote_code, self.padding_side = (
            dtype,
            trust_remote_code,
            padding_side,
        )
        self.fresh_head = fresh_head  # a language model read through a new one-output head
        self._model = self._tokenizer = None  # loaded on first use: validation must stay cheap

    def hub_resources(self) -> list:
        from afd.core.hub import HubResource

        return [HubResource(self.name_or_path, "model", "gold.name_or_path", "golden reward model")]

    def load(self):
        if self._model is None:
            from transformers import AutoModelForSequenceClassification

            from afd.models.devices import inference_device
            from afd.models.loading import DTYPES, resize_for_tokenizer
            from afd.models.tokenizers import load_tokenizer

            tok = load_tokenizer(self.name_or_path, self.trust_remote_code)
            model = AutoModelForSequenceClassification.from_pretrained(
                self.name_or_path,
                dtype=DTYPES[self.dtype],
                trust_remote_code=self.trust_remote_code,
                **({"num_labels": 1} if self.fresh_head else {}),
            )
            if model.config.num_labels != 1:
                raise ValueError(
                    f"gold.name_or_path {self.name_or_path!r} has {model.config.num_labels} "
                    "outputs; a golden reward model must have one"
                )
            resize_for_tokenizer(
                model, tok
            )  # pad distinct from EOS: the pooled token is the last real one
            self._model, self._tokenizer = model.eval(), tok
            self._device = inference_device()
            self._positions = "position_ids" in inspect.signature(model.forward).parameters
        return self._model, self._tokenizer

    def encode(self, prompt: str, response: str) -> list[int]:
        _, tok = self.load()
        head, tail = self.format.render(tok, prompt, response)
        bos = leading_bos(tok)
        p = tok(head, add_special_tokens=False)["input_ids"]
        if bos and p[:1] == bos:  # a chat template that renders BOS itself: keep one, in front
            p = p[1:]
        r = tok(tail, add_special_tokens=False)["input_ids"] if tail else []
        p, r = fit_pair(p, r, self.max_length - len(bos))
        return bos + p + r

    @torch.no_grad()
    def score(self, rows) -> np.ndarray:
        """Rewards of `rows`. The model visits the GPU only while it scores: between score
        sets the GPU is free for the stages that train (a 7B judge holds 17 GB)."""
        model, tok = self.load()
        device = self._device
        model.to(device)
        try:
            return self._score(model, tok, rows, device)
        finally:
            if device.type == "cuda":
                model.to("cpu")
                torch.cuda.empty_cache()

    def _score(self, model, tok, rows, device) -> np.ndarray:
        encoded = [self.encode(r["prompt"], r["response"]) for r in rows]
        out = np.zeros(len(rows))

        def score(idx):
            batch = pad_batch([encoded[i] for i in idx], tok.pad_token_id, self.padding_side)
            inputs = {
                k: v.to(device) for k, v in batch.items() if k != "position_ids" or self._positions
            }
            out[idx] = model(**inputs).logits[:, 0].float().cpu().numpy()

        # longest first, little padding per batch; a batch out of memory is split, not fatal
        lengths = [len(e) for e in encoded]
        run_batches(size_batches(lengths, self.batch_size, TOKENS_PER_BATCH), score)
        return out
