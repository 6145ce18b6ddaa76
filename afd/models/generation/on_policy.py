"""On-policy sampling inside training: token ids out, no gradient, the live model's weights.

Adversarial training samples the current policy at every step, so this is a small loop over
a KV cache with Gumbel-max sampling on `torch.rand` (several times faster than
`torch.multinomial` on CPU), drawing from a random stream the sampler owns, so successive
calls continue it. It honours the same SamplingSettings as every engine: temperature,
top-k, top-p, stop strings (the reply is cut before one and closed by EOS) and banned
tokens. Replies end at EOS (kept, as the training collators keep it) or at `max_new_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from afd.models.batching import IGNORE, pad_batch
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


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Logits outside the top-k, then outside the smallest set of mass >= top_p, set to -inf
    (as Hugging Face's warpers do, in that order, after temperature)."""
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -float("inf"))
    if top_p < 1.0:
        ordered, order = torch.sort(logits, descending=True, dim=-1)
        mass = torch.softmax(ordered, dim=-1).cumsum(-1)
        drop = mass - torch.softmax(ordered, dim=-1) >= top_p  # keep the token that crosses p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), -float("inf"))
    return logits


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
        self.eos_id, self.pad_id = tokenizer.eos_token_id, tokenizer.pad_token_id
        self.banned_ids = list(banned_ids)

    @torch.no_grad()
    def rollouts(self, model, prompts: list[list[int]], num_samples: int) -> Rollouts:
        """`num_samples` replies per prompt, grouped by prompt (prompt 0's samples first)."""
        rows = [p for p in prompts for _ in range(num_samples)]
        generated = self._sample_ids(model, rows)
        responses = []
        for ids in generated:
            cut = ids.index(self.eos_id) + 1 if self.eos_id in ids else len(ids)
            responses.append(self._apply_stops([t for t in ids[:cut] if t != self.pad_id]))
        return Rollouts(rows, responses)

    def completions(self, rollouts: Rollouts) -> list[Completion]:
        """The replies of `rollouts` as text, the form gold judges and scorers read."""
        out = []
        for ids in rollouts.responses:
            finished = bool(ids) and ids[-1] == self.eos_id
            body = ids[:-1] if finished else ids
            text = self.tokenizer.decode(body, skip_special_tokens=True).strip()
            out.append(Completion(text, finished, len(body), list(ids)))
        return out

    def _apply_stops(self, ids: list[int]) -> list[int]:
        """A reply that wrote a stop string keeps the tokens before it and is closed by EOS."""
        stops = self.settings.stop_strings
        if not stops:
            return ids
        decode = lambda part: self.tokenizer.decode(part, skip_special_tokens=True)  # noqa: E731
        text, stopped = cut_at_stop(decode(ids), stops)
        if not stopped:
            return ids
        keep = max(m for m in range(len(ids) + 1) if len(decode(ids[:m])) <= len(text))
        return ids[:keep] + [self.eos_id]

    def _sample_ids(self, model, rows: list[list[int]]) -> list[list[int]]:
        cfg = self.settings
        was_training = model.training
        model.eval()
        batch = pad_batch(rows, self.pad_id, side="left")
        device = next(model.parameters()).device
        mask = batch["attention_mask"].to(device)
        out = model(
            input_ids=batch["input_ids"].to(device),
            attention_mask=mask,
            position_ids=batch["position_ids"].to(device),
            use_cache=True,
        )
        position = batch["position_ids"][:, -1].to(device)
        finished = torch.zeros(len(rows), dtype=torch.bool, device=device)
        tokens = []
        for _ in range(cfg.max_new_tokens):
            logits = out.logits[:, -1, :].float()
            logits[:, [self.pad_id, *self.banned_ids]] = -float("inf")  # never a reply's token
            if cfg.greedy:
                nxt = logits.argmax(-1)
            else:
                logits = filter_logits(logits / cfg.temperature, cfg.top_k, cfg.top_p)
                u = torch.rand(logits.shape, generator=self.generator).to(device).clamp_(1e-20, 1.0)
                nxt = (logits - torch.log(-torch.log(u))).argmax(-1)
            nxt = torch.where(finished, torch.full_like(nxt, self.pad_id), nxt)
            tokens.append(nxt)
            finished = finished | (nxt == self.eos_id)
            if bool(finished.all()):
                break
            mask = torch.cat([mask, (~finished | (nxt == self.eos_id)).long()[:, None]], dim=1)
            position = position + 1
            out = model(
                input_ids=nxt[:, None],
                attention_mask=mask,
                position_ids=position[:, None],
                past_key_values=out.past_key_values,
                use_cache=True,
            )
        model.train(was_training)
        return torch.stack(tokens, 1).tolist() if tokens else [[] for _ in rows]
