"""On-policy sampling inside training: the live model's current weights, token ids out.

Adversarial training samples the current policy at every step through the `hf` engine's loop
(afd/models/generation/kv_sampler.py), drawing from a random stream the sampler owns, so
successive calls continue it. A reply ends at EOS (kept, as the training collators keep it),
at a stop string (cut before it and closed by EOS, as sample sets cut their text there) or at
`max_new_tokens`. Rollouts stay on this loop whatever `sampling=` says: the weights change at
every step, and handing them to another engine each time would cost more than it saves (and
under ZeRO-3 they are partitioned across the processes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from afd.models.batching import IGNORE, pad_batch
from afd.models.generation.kv_sampler import Drawn, KVSampler
from afd.models.generation.settings import Completion, SamplingSettings, cut_at_stop


@dataclass
class Rollouts:
    """`responses[i]` answers `prompts[i]` (prompt token ids); EOS ends a finished one."""

    prompts: list[list[int]]
    responses: list[list[int]]

    def lm_batch(self, pad_id: int) -> dict[str, torch.Tensor]:
        """Right-padded prompt + response with labels on the response tokens only."""
        seqs = [p + r for p, r in zip(self.prompts, self.responses)]
        labels = [[IGNORE] * len(p) + r for p, r in zip(self.prompts, self.responses)]
        return pad_batch(seqs, pad_id, "right", labels)


class OnPolicySampler:
    """Samples a live model (the one being trained) with its current weights."""

    def __init__(
        self,
        tokenizer,
        settings: SamplingSettings,
        generator: torch.Generator,
        banned_ids=(),
    ):
        self.tokenizer, self.settings, self.generator = tokenizer, settings, generator
        self.eos_id = tokenizer.eos_token_id
        self.banned_ids = list(banned_ids)

    def rollouts(self, model, prompts: list[list[int]], num_samples: int) -> Rollouts:
        """`num_samples` replies per prompt, grouped by prompt (prompt 0's samples first)."""
        sampler = KVSampler(model, self.tokenizer, self.settings, self.banned_ids)
        uniform = lambda shape: torch.rand(shape, generator=self.generator)  # noqa: E731
        drawn = sampler.sample(prompts, num_samples, uniform)
        rows = [p for p in prompts for _ in range(num_samples)]
        return Rollouts(rows, [self._response(d) for group in drawn for d in group])

    def _response(self, drawn: Drawn) -> list[int]:
        """The reply's tokens as training reads them: a reply that wrote a stop string keeps
        the tokens before it and is closed by EOS."""
        if drawn.ended != "stop":
            return list(drawn.ids)
        ids = drawn.ids
        decode = lambda part: self.tokenizer.decode(part, skip_special_tokens=True)  # noqa: E731
        text, _ = cut_at_stop(decode(ids), self.settings.stop_strings)
        keep = max(m for m in range(len(ids) + 1) if len(decode(ids[:m])) <= len(text))
        return ids[:keep] + [self.eos_id]

    def completions(self, rollouts: Rollouts) -> list[Completion]:
        """The replies of `rollouts` as text, the form gold judges and scorers read."""
        out = []
        for ids in rollouts.responses:
            finished = bool(ids) and ids[-1] == self.eos_id
            body = ids[:-1] if finished else ids
            text = self.tokenizer.decode(body, skip_special_tokens=True).strip()
            out.append(Completion(text, finished, len(body), list(ids)))
        return out
