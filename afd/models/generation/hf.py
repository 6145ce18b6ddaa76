"""`sampling=hf`: Hugging Face `generate` over batches of many prompts x many samples.

Rows are sorted by prompt length so batches carry little padding (left padding); each batch
is seeded from (seed, batch index), so a run is reproducible. A reply ends at EOS, at the
first stop string (e.g. the next "\\n\\nHuman:" turn), or at `max_new_tokens`.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from afd.core.config import qualified_name
from afd.core.errors import ConfigError
from afd.core.progress import Ticker, terminal_attached
from afd.models.batching import pad_batch
from afd.models.devices import inference_device
from afd.models.generation.settings import Completion, SamplingSettings, decode
from afd.models.loading import load_policy
from afd.models.options import LoadOptions
from afd.models.tokenizers import load_tokenizer


def banned_ids(tokenizer, tokens) -> list[int]:
    """Token ids of `tokens` the tokenizer knows (an unknown one maps to UNK: not banned)."""
    ids = [tokenizer.convert_tokens_to_ids(t) for t in tokens]
    return [i for i in ids if i is not None and i != tokenizer.unk_token_id]


class HFGenerator:
    """Samples one loaded policy with `model.generate`."""

    def __init__(self, model, tokenizer, settings: SamplingSettings, batch_size: int, progress):
        self.model, self.tokenizer, self.settings = model, tokenizer, settings
        self.batch_size, self.progress = batch_size, progress

    @torch.no_grad()
    def generate(
        self, prompts: list[list[int]], num_samples: int, seed: int, banned_tokens=()
    ) -> list[list[Completion]]:
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        model, tokenizer, cfg = self.model.eval(), self.tokenizer, self.settings
        rows = sorted(
            ((i, j) for i in range(len(prompts)) for j in range(num_samples)),
            key=lambda r: (len(prompts[r[0]]), r),
        )
        banned = [[b] for b in banned_ids(tokenizer, banned_tokens)]
        device = next(model.parameters()).device
        out: list[list[Completion | None]] = [[None] * num_samples for _ in prompts]
        starts = range(0, len(rows), self.batch_size)
        bar = self.progress and terminal_attached()
        ticker = Ticker("sampling", len(rows)) if self.progress and not bar else None
        for b, start in enumerate(tqdm(starts, desc="sampling", disable=not bar, leave=False)):
            if ticker:
                ticker.tick(start)
            chunk = rows[start : start + self.batch_size]
            batch = pad_batch([prompts[i] for i, _ in chunk], tokenizer.pad_token_id, "left")
            torch.manual_seed(seed * 1_000_003 + b)
            gen = model.generate(
                input_ids=batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
                do_sample=not cfg.greedy,
                temperature=None if cfg.greedy else cfg.temperature,
                top_p=None if cfg.greedy else cfg.top_p,
                top_k=None if cfg.greedy else cfg.top_k,
                max_new_tokens=cfg.max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                bad_words_ids=banned or None,
                # Rows that wrote a stop string (a new "Human:" turn) stop early; the text is
                # cut at the stop string either way.
                stop_strings=list(cfg.stop_strings) or None,
                tokenizer=tokenizer if cfg.stop_strings else None,
            )
            new = gen[:, batch["input_ids"].size(1) :].tolist()
            for (i, j), ids in zip(chunk, new):
                out[i][j] = decode(tokenizer, ids, cfg.stop_strings)
        return out


@dataclass
class HFEngine:
    """The `_target_` of conf/sampling/hf.yaml."""

    max_new_tokens: int
    temperature: float
    top_p: float
    top_k: int
    stop_strings: list[str]
    batch_size: int

    def __post_init__(self):
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int):
            raise ConfigError(f"sampling.batch_size must be an integer, got {self.batch_size!r}")
        if self.batch_size < 1:
            raise ConfigError(f"sampling.batch_size must be >= 1, got {self.batch_size}")
        self.settings = SamplingSettings(
            self.max_new_tokens, self.temperature, self.top_p, self.top_k, self.stop_strings
        )

    def fingerprint(self) -> dict:
        """The engine's own options; the settings are keyed apart (ctx.sampling)."""
        return {"_target_": qualified_name(self), "batch_size": self.batch_size}

    @contextmanager
    def open(
        self,
        policy_path: str | Path,
        load: LoadOptions,
        settings: SamplingSettings,
        progress: bool = True,
    ):
        """A generator on the policy at `policy_path`, loaded as `load` says."""
        tokenizer = load_tokenizer(policy_path, load.trust_remote_code)
        model = load_policy(policy_path, tokenizer, load.dtype, load.trust_remote_code)
        model.to(inference_device())
        yield HFGenerator(model, tokenizer, settings, self.batch_size, progress)
