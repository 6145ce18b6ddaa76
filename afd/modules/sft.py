"""SFTModule: forward-KL trajectory matching, i.e. token NLL on demonstration responses.

Also pretrains the synthetic task's initial policy (`train_on_prompt=True`: plain
language modelling on the base corpus).
"""

from __future__ import annotations

import lightning as L
import torch

from afd.losses import token_nll_sum
from afd.modules.optim import OptimConfig, configure


class SFTModule(L.LightningModule):
    def __init__(self, model, optim: OptimConfig, total_steps: int):
        super().__init__()
        self.model = model
        self.optim = optim
        self.total_steps = total_steps

    def _nll(self, batch):
        out = self.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
        )
        return token_nll_sum(out.logits, batch["labels"])

    def _global_sum(self, value: torch.Tensor) -> torch.Tensor:
        if self.trainer.world_size == 1:
            return value
        return self.trainer.strategy.reduce(value.detach().float(), reduce_op="sum")

    def training_step(self, batch, batch_idx):
        nll, tokens = self._nll(batch)
        # Normalise by the tokens of the whole global batch: the gradients that data-parallel
        # processes average are then exactly the gradient of one process's token mean.
        global_tokens = self._global_sum(tokens).clamp(min=1)
        loss = nll / global_tokens * self.trainer.world_size
        mean = self._global_sum(nll) / global_tokens  # the global-batch loss, on every rank
        self.log("train/loss", mean.detach(), prog_bar=True, batch_size=batch["input_ids"].size(0))
        return loss

    def validation_step(self, batch, batch_idx):
        nll, tokens = self._nll(batch)
        loss = nll / tokens.clamp(min=1)
        self.log(
            "val/loss", loss, prog_bar=True, batch_size=batch["input_ids"].size(0), sync_dist=True
        )
        return loss

    def on_fit_start(self):
        # from_pretrained returns modules in eval mode; train with the model's own dropout.
        self.model.train()

    def configure_optimizers(self):
        return configure(self.model.parameters(), self.optim, self.total_steps)
