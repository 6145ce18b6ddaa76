"""Training progress as log lines when no terminal is attached (afd/core/progress.py)."""

from __future__ import annotations

import lightning as L

from afd.core.progress import EVERY_S, Ticker


class ProgressLog(L.Callback):
    """The Ticker of a Trainer: one line per interval, with the latest logged loss."""

    def __init__(self, what: str, every_s: float = EVERY_S):
        self.what, self.every_s = what, every_s
        self._ticker: Ticker | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self._ticker = Ticker(self.what, int(trainer.estimated_stepping_batches), self.every_s)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = trainer.callback_metrics.get("train/loss")
        extra = f", loss {float(loss):.4f}" if loss is not None else ""
        self._ticker.tick(trainer.global_step or batch_idx + 1, extra)
