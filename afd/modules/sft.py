"""SFTModule: forward-KL trajectory matching, i.e. token NLL on demonstration responses.

Also pretrains the synthetic task's initial policy (`train_on_prompt=True`: plain
language modelling on the base corpus).
"""

from __future__ import annotations

import lightning as L

from afd.losses import forward_kl_nll
from afd.modules.optim import OptimConfig, configure


class SFTModule(L.LightningModule):
    def __init__(self, model, optim: OptimConfig, total_steps: int):
        super().__init__()
        self.model = model
        self.optim = optim
        self.total_steps = total_steps

    def _loss(self, batch):
        out = self.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
        )
        return forward_kl_nll(out.logits, batch["labels"])

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].size(0))
        return loss

    def validation_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("val/loss", loss, prog_bar=True, batch_size=batch["input_ids"].size(0))
        return loss

    def on_fit_start(self):
        # from_pretrained returns modules in eval mode; train with the model's own dropout.
        self.model.train()

    def configure_optimizers(self):
        return configure(self.model.parameters(), self.optim, self.total_steps)
