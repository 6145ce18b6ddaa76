"""SPINModule: one SPIN iteration's training, the logistic loss of afd/objectives/preference.py
on (demonstration, previous-iterate sample) pairs, whose reference log-probabilities under the
previous iterate were computed once before training (stages.py)."""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import torch
from transformers import PreTrainedTokenizerBase

from afd.models.batching import Lengths, lm_example, pad_batch
from afd.models.scoring import lm_logits
from afd.objectives.losses import sequence_logprob
from afd.objectives.preference import dpo_loss
from afd.runtime.optim import OptimConfig, configure


@dataclass
class SPINCollator:
    """Rows (prompt, demonstration, sample, ref log p(demonstration), ref log p(sample)) into
    one causal-LM batch, demonstrations first and then samples (one forward pass for both),
    plus the reference log-probabilities as `ref_chosen` and `ref_rejected`."""

    tokenizer: PreTrainedTokenizerBase
    lengths: Lengths

    def __call__(self, rows: list[tuple]) -> dict[str, torch.Tensor]:
        examples = [lm_example(self.tokenizer, r[0], r[1], self.lengths) for r in rows]
        examples += [lm_example(self.tokenizer, r[0], r[2], self.lengths) for r in rows]
        batch = pad_batch(
            [ids for ids, _ in examples],
            self.tokenizer.pad_token_id,
            "right",
            [labels for _, labels in examples],
        )
        batch["ref_chosen"] = torch.tensor([float(r[3]) for r in rows])
        batch["ref_rejected"] = torch.tensor([float(r[4]) for r in rows])
        return batch


def without_dropout(model) -> None:
    """Zero every dropout rate (LoRA's included), as DPO trainers do: log pi / pi_ref is then
    exactly 0 before the first update, and the implicit reward carries no dropout noise.
    The model stays in train mode, so gradient checkpointing still applies."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


class SPINModule(L.LightningModule):
    """Minimises ell(beta * [log pi/pi_ref (demonstration) - log pi/pi_ref (sample)]) over
    batches of SPINCollator; `history` keeps every step's loss, implicit-reward margin and
    accuracy (this process's share of the batch)."""

    def __init__(self, model, optim: OptimConfig, total_steps: int, beta: float):
        super().__init__()
        self.model, self.optim, self.total_steps, self.beta = model, optim, total_steps, beta
        self.history: list[dict] = []

    def on_fit_start(self):
        self.model.train()  # from_pretrained returns eval mode
        without_dropout(self.model)

    def training_step(self, batch, batch_idx):
        logp = sequence_logprob(*lm_logits(self.model, batch))
        n = batch["ref_chosen"].size(0)
        out = dpo_loss(logp[:n], logp[n:], batch["ref_chosen"], batch["ref_rejected"], self.beta)
        record = {
            "loss": out.loss.item(),
            "margin": out.margin.item(),
            "accuracy": out.accuracy.item(),
            "chosen_reward": out.chosen_rewards.mean().item(),
            "rejected_reward": out.rejected_rewards.mean().item(),
        }
        self.history.append({"step": int(self.global_step), **record})
        self.log_dict({f"train/{k}": v for k, v in record.items()}, batch_size=n)
        return out.loss

    def configure_optimizers(self):
        return configure(self.model.parameters(), self.optim, self.total_steps)
