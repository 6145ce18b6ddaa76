"""Batched generation: many prompts x many samples per call, left padding, EOS handling.

Rows are sorted by prompt length so batches carry little padding; each batch is seeded
from (seed, batch index) so a run is reproducible. A response ends at EOS, at the
first stop string (e.g. the next "\\n\\nHuman:" turn), or at `max_new_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from afd.batching import Lengths, encode_prompt, pad_batch


@dataclass
class SamplingConfig:
    max_new_tokens: int = 32
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    batch_size: int = 256
    stop_strings: list[str] = field(default_factory=list)


@dataclass
class Generated:
    response: str
    finished: bool
    num_tokens: int


def _cut(text: str, stops) -> tuple[str, bool]:
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _decode(tokenizer, ids: list[int], stops) -> Generated:
    eos = tokenizer.eos_token_id
    finished = eos in ids
    ids = ids[: ids.index(eos)] if finished else ids
    ids = [i for i in ids if i != tokenizer.pad_token_id]
    text, stopped = _cut(tokenizer.decode(ids, skip_special_tokens=True), stops)
    return Generated(text.strip(), finished or stopped, len(ids))


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: list[str],
    num_samples: int,
    cfg: SamplingConfig,
    lengths: Lengths,
    seed: int,
    banned_tokens: list[str] = (),
    progress: bool = True,
) -> list[list[Generated]]:
    """Return, for each prompt, `num_samples` independent responses."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    model.eval()
    encoded = [encode_prompt(tokenizer, p, lengths) for p in prompts]
    rows = sorted(
        ((i, j) for i in range(len(prompts)) for j in range(num_samples)),
        key=lambda r: (len(encoded[r[0]]), r),
    )
    banned = [tokenizer.convert_tokens_to_ids(t) for t in banned_tokens]
    banned = [[b] for b in banned if b is not None and b != tokenizer.unk_token_id]
    device = next(model.parameters()).device
    out: list[list[Generated | None]] = [[None] * num_samples for _ in prompts]
    greedy = cfg.temperature == 0
    starts = range(0, len(rows), cfg.batch_size)
    for b, start in enumerate(tqdm(starts, desc="sampling", disable=not progress, leave=False)):
        chunk = rows[start : start + cfg.batch_size]
        batch = pad_batch([encoded[i] for i, _ in chunk], tokenizer.pad_token_id, side="left")
        torch.manual_seed(seed * 1_000_003 + b)
        gen = model.generate(
            input_ids=batch["input_ids"].to(device),
            attention_mask=batch["attention_mask"].to(device),
            do_sample=not greedy,
            temperature=None if greedy else cfg.temperature,
            top_p=None if greedy else cfg.top_p,
            top_k=None if greedy else cfg.top_k,
            max_new_tokens=cfg.max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bad_words_ids=banned or None,
            # Rows that wrote a stop string (a new "Human:" turn) stop early; the text is
            # cut at the stop string below either way.
            stop_strings=list(cfg.stop_strings) or None,
            tokenizer=tokenizer if cfg.stop_strings else None,
        )
        new = gen[:, batch["input_ids"].size(1) :].tolist()
        for (i, j), ids in zip(chunk, new):
            out[i][j] = _decode(tokenizer, ids, cfg.stop_strings)
    return out
