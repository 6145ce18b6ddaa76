"""RewardModule: a scalar-head classifier whose logit is the reward.

Trained either as the IRL discriminator (binary cross-entropy, positives vs negatives, e.g.
pi_SFT vs pi0 samples) or as a Bradley-Terry model on preference pairs.
"""

from __future__ import annotations

import lightning as L

from afd.core.errors import ConfigError
from afd.models.scoring import reward_logits
from afd.objectives.losses import binary_accuracy, bradley_terry, discriminator_bce
from afd.runtime.optim import OptimConfig, configure

OBJECTIVES = ("bce", "bt")


class RewardModule(L.LightningModule):
    """`objective="bce"` batches carry `targets`; `"bt"` batches stack chosen then rejected."""

    def __init__(self, model, optim: OptimConfig, total_steps: int, objective: str = "bce"):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ConfigError(f"reward objective must be one of {OBJECTIVES}, got {objective!r}")
        self.model = model
        self.optim = optim
        self.total_steps = total_steps
        self.objective = objective

    def _step(self, batch):
        logits = reward_logits(self.model, batch)
        if self.objective == "bce":
            targets = batch["targets"]
            return (
                discriminator_bce(logits, targets),
                binary_accuracy(logits, targets),
                len(targets),
            )
        chosen, rejected = logits.chunk(2)
        return bradley_terry(chosen, rejected), (chosen > rejected).float().mean(), len(chosen)

    def training_step(self, batch, batch_idx):
        loss, acc, size = self._step(batch)
        # Every process holds an equal share of the global batch: the mean over processes is
        # the global-batch value.
        self.log("train/loss", loss, prog_bar=True, batch_size=size, sync_dist=True)
        self.log("train/accuracy", acc, batch_size=size, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, acc, size = self._step(batch)
        self.log("val/loss", loss, prog_bar=True, batch_size=size, sync_dist=True)
        self.log("val/accuracy", acc, prog_bar=True, batch_size=size, sync_dist=True)

    def on_fit_start(self):
        # from_pretrained returns modules in eval mode; train with the model's own dropout.
        self.model.train()

    def configure_optimizers(self):
        return configure(self.model.parameters(), self.optim, self.total_steps)
