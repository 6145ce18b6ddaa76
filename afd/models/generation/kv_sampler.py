"""The sampling loop of the `hf` engine, for pools of replies and for on-policy rollouts alike.

A decoding loop over a Hugging Face KV cache, written for many samples per prompt on few
cores: each distinct prompt is read once and its cache copied to its samples (the prefix is
shared, as inference engines share it); the cache has room for the reply from the start, so a
step writes its own token rather than copying the cache; rows that end leave the batch once
they are an eighth of it (each removal copies the cache), so later steps cost little more than
the rows still writing; tokens are drawn by Gumbel-max on uniform noise from a
stream the caller owns (several times faster than `torch.multinomial` on CPU). It honours
every SamplingSetting: temperature (0: greedy), top-k, top-p, `max_new_tokens`, stop strings
(a row whose text writes one ends there) and banned tokens, EOS included. It returns each
reply's token ids and the log-probability of each under the policy (temperature 1, before
any filtering: what KL and log-ratio rewards need).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from afd.models.attention import grouped_attention
from afd.models.batching import pad_batch
from afd.models.generation.reserved_cache import reserve
from afd.models.generation.settings import SamplingSettings

COMPACT_SHARE = 1 / 8  # ended rows leave the batch once they are this share of it
STOP_WINDOW = 16  # tokens decoded at a row's end to look for a stop string


@dataclass
class Drawn:
    """One reply: its tokens (EOS last if it ended on EOS), the log-probability of each, and
    whether it ended on EOS, on a stop string, or at `max_new_tokens`."""

    ids: list[int]
    logprobs: list[float]
    ended: str  # "eos" | "stop" | "length"


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Logits outside the top-k, then outside the smallest set of mass >= top_p, set to -inf
    (as Hugging Face's warpers do, in that order, after temperature)."""
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -float("inf"))
    if top_p < 1.0:
        ordered, order = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(ordered, dim=-1)
        drop = probs.cumsum(-1) - probs >= top_p  # keep the token that crosses p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), -float("inf"))
    return logits


class KVSampler:
    """Samples a model; `uniform(shape)` supplies the noise (a seeded stream)."""

    def __init__(self, model, tokenizer, settings: SamplingSettings, banned_ids=()):
        self.model, self.tokenizer, self.settings = model, tokenizer, settings
        self.eos_id, self.pad_id = tokenizer.eos_token_id, tokenizer.pad_token_id
        self.banned = sorted({self.pad_id, *banned_ids})  # padding is never a reply's token

    @torch.no_grad()
    def sample(
        self,
        prompts: list[list[int]],
        num_samples: int,
        uniform: Callable[[tuple[int, ...]], torch.Tensor],
    ) -> list[list[Drawn]]:
        """`num_samples` replies to each prompt (token ids), in order."""
        with grouped_attention(self.model):  # left padding must not copy out grouped KV heads
            return self._sample(prompts, num_samples, uniform)

    def _sample(self, prompts, num_samples: int, uniform) -> list[list[Drawn]]:
        model, cfg = self.model, self.settings
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        batch = pad_batch(prompts, self.pad_id, side="left")
        mask = batch["attention_mask"].to(device)
        out = model(
            input_ids=batch["input_ids"].to(device),
            attention_mask=mask,
            position_ids=batch["position_ids"].to(device),
            use_cache=True,
        )
        cache = out.past_key_values
        reserve(cache, cfg.max_new_tokens)  # each step writes its token in place
        logits = out.logits[:, -1, :].float()
        if num_samples > 1:  # every sample of a prompt starts from the prompt's one cache
            cache.batch_repeat_interleave(num_samples)
            logits = logits.repeat_interleave(num_samples, 0)
            mask = mask.repeat_interleave(num_samples, 0)
        position = batch["position_ids"][:, -1].to(device).repeat_interleave(num_samples, 0)
        rows = len(prompts) * num_samples
        drawn = [Drawn([], [], "length") for _ in range(rows)]
        at = torch.arange(rows)  # the row of `drawn` at each position of the batch
        running = torch.arange(rows)  # positions of the rows still writing
        for _ in range(cfg.max_new_tokens):
            live = logits if len(running) == len(at) else logits[running]
            logp = torch.log_softmax(live, -1)  # the policy's own, before bans and filters
            live[:, self.banned] = -float("inf")
            if cfg.greedy:
                nxt = live.argmax(-1)
            else:
                scaled = filter_logits(live / cfg.temperature, cfg.top_k, cfg.top_p)
                u = uniform(tuple(scaled.shape)).to(device).clamp_(1e-20, 1.0)
                nxt = (scaled - torch.log(-torch.log(u))).argmax(-1)
            chosen = logp.gather(-1, nxt[:, None]).squeeze(-1)
            keep = self._record(drawn, at[running], nxt.tolist(), chosen.tolist())
            if not keep:
                break
            keep = torch.tensor(keep)
            running, nxt = running[keep], nxt[keep]
            if len(at) - len(running) >= COMPACT_SHARE * len(at):  # ended rows leave the batch
                cache.batch_select_indices(running.to(device))
                mask, position, at = mask[running], position[running], at[running]
                running = torch.arange(len(running))
            step = nxt.new_full((len(at),), self.pad_id)  # rows that ended idle on padding
            step[running] = nxt
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            position = position + 1
            out = model(
                input_ids=step[:, None],
                attention_mask=mask,
                position_ids=position[:, None],
                past_key_values=cache,
                use_cache=True,
            )
            cache, logits = out.past_key_values, out.logits[:, -1, :].float()
        model.train(was_training)
        return [drawn[i * num_samples : (i + 1) * num_samples] for i in range(len(prompts))]

    def _record(self, drawn, active, tokens: list[int], logps: list[float]) -> list[int]:
        """Append each active row's token; the positions (in `active`) of rows still going."""
        keep = []
        stops = self.settings.stop_strings
        for k, (row, token, lp) in enumerate(zip(active.tolist(), tokens, logps)):
            reply = drawn[row]
            reply.ids.append(token)
            reply.logprobs.append(lp)
            if token == self.eos_id:
                reply.ended = "eos"
            elif stops and self._stopped(reply.ids):
                reply.ended = "stop"
            else:
                keep.append(k)
        return keep

    def _stopped(self, ids: list[int]) -> bool:
        tail = self.tokenizer.decode(ids[-STOP_WINDOW:], skip_special_tokens=True)
        return any(s in tail for s in self.settings.stop_strings)
