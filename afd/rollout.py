"""On-policy sampling inside training: token ids out, no text round trip, no gradient.

Adversarial training samples the current policy at every step, so this is a small loop
over a KV cache with Gumbel-max sampling on `torch.rand` (several times faster than
`torch.multinomial` on CPU), seeded by a generator the caller owns. Responses end at EOS
(kept, as the training collators keep it) or at `max_new_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from afd.batching import IGNORE, pad_batch


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


@torch.no_grad()
def sample(
    model,
    prompts: list[list[int]],
    num_samples: int,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    generator: torch.Generator,
    temperature: float = 1.0,
    banned_ids: list[int] = (),
) -> Rollouts:
    """`num_samples` responses per prompt, grouped by prompt (prompt 0's samples first)."""
    was_training = model.training
    model.eval()
    rows = [p for p in prompts for _ in range(num_samples)]
    batch = pad_batch(rows, pad_id, side="left")
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
    for _ in range(max_new_tokens):
        logits = out.logits[:, -1, :].float()
        logits[:, [pad_id, *banned_ids]] = -float("inf")  # padding is never a reply's token
        if temperature == 0:
            nxt = logits.argmax(-1)
        else:
            u = torch.rand(logits.shape, generator=generator).to(device).clamp_(1e-20, 1.0)
            nxt = (logits / temperature - torch.log(-torch.log(u))).argmax(-1)
        nxt = torch.where(finished, torch.full_like(nxt, pad_id), nxt)
        tokens.append(nxt)
        finished = finished | (nxt == eos_id)
        if bool(finished.all()):
            break
        mask = torch.cat([mask, (~finished | (nxt == eos_id)).long()[:, None]], dim=1)
        position = position + 1
        out = model(
            input_ids=nxt[:, None],
            attention_mask=mask,
            position_ids=position[:, None],
            past_key_values=out.past_key_values,
            use_cache=True,
        )
    model.train(was_training)
    generated = torch.stack(tokens, 1).tolist() if tokens else [[] for _ in rows]
    responses = []
    for ids in generated:
        cut = ids.index(eos_id) + 1 if eos_id in ids else len(ids)
        responses.append([t for t in ids[:cut] if t != pad_id])
    return Rollouts(rows, responses)
