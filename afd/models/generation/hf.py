"""`sampling=hf`: the policy's own Hugging Face model, sampled by afd's KV-cache loop (each
prompt read once for all its samples, ended rows leaving the batch, Gumbel-max draws), in
batches of prompts sorted by length. Each batch is seeded from (seed, batch index), so a run
is reproducible. A reply ends at EOS, at the first stop string (e.g. the next "\\nHuman:"
turn), or at `max_new_tokens`.
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
from afd.models.devices import inference_device
from afd.models.generation.kv_sampler import Drawn, KVSampler
from afd.models.generation.settings import Completion, SamplingSettings, decode
from afd.models.loading import load_policy
from afd.models.options import LoadOptions
from afd.models.tokenizers import load_tokenizer


def banned_ids(tokenizer, tokens) -> list[int]:
    """Token ids of `tokens` the tokenizer knows; an unknown one is not banned (it would map
    to UNK, which in GPT-2's tokenizer is EOS itself)."""
    vocab = tokenizer.get_vocab()
    return [vocab[t] for t in tokens if t in vocab]


class HFGenerator:
    """Samples one loaded policy: prompts grouped into batches of at most `batch_size` rows
    (prompts x samples), shortest prompts together, each batch seeded from (seed, batch
    index), through the KV-cache loop of afd/models/generation/kv_sampler.py."""

    def __init__(self, model, tokenizer, settings: SamplingSettings, batch_size: int, progress):
        self.model, self.tokenizer, self.settings = model, tokenizer, settings
        self.batch_size, self.progress = batch_size, progress

    def generate(
        self,
        prompts: list[list[int]],
        num_samples: int,
        seed: int,
        banned_tokens=(),
        first: int = 0,
    ) -> list[list[Completion]]:
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        sampler = KVSampler(
            self.model, self.tokenizer, self.settings, banned_ids(self.tokenizer, banned_tokens)
        )
        order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
        per_batch = max(1, self.batch_size // num_samples)
        batches = [order[i : i + per_batch] for i in range(0, len(order), per_batch)]
        bar = self.progress and terminal_attached()
        ticker = Ticker("sampling", len(prompts)) if self.progress and not bar else None
        out: list[list[Completion] | None] = [None] * len(prompts)
        for b, batch in enumerate(tqdm(batches, desc="sampling", disable=not bar, leave=False)):
            # a shard (first > 0) draws from streams of its own
            noise = torch.Generator().manual_seed(seed * 1_000_003 + b + (first << 40))
            uniform = lambda shape, g=noise: torch.rand(shape, generator=g)  # noqa: E731
            drawn = sampler.sample([prompts[i] for i in batch], num_samples, uniform)
            for i, replies in zip(batch, drawn):
                out[i] = [self.completion(d) for d in replies]
            if ticker:
                ticker.tick(sum(len(x) for x in batches[: b + 1]))
        return out

    def completion(self, drawn: Drawn) -> Completion:
        done = decode(self.tokenizer, drawn.ids, self.settings.stop_strings)
        done.token_ids, done.logprob = list(drawn.ids), float(sum(drawn.logprobs))
        return done


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
