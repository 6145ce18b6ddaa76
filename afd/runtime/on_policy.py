"""The training loop every on-policy method shares (adversarial imitation, on-policy BOND):
`steps` steps of `prompts_per_step` rows drawn with replacement on every process, the policy
exported in HF format (ZeRO shards gathered, LoRA merged) with its training curve."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from afd.core.artifacts import write_history
from afd.runtime.trainer import build_trainer, export_trained


class DrawWithReplacement(Sampler):
    """`num_samples` row indices drawn with replacement. Its own class (not RandomSampler),
    so Lightning shards it across processes instead of swapping in a one-epoch sampler."""

    def __init__(self, size: int, num_samples: int, seed: int):
        self.size, self.num_samples, self.seed = size, num_samples, seed

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed)
        yield from torch.randint(self.size, (self.num_samples,), generator=g).tolist()

    def __len__(self):
        return self.num_samples


def train_on_policy(
    module: L.LightningModule,
    rows: list,
    collate,
    *,
    steps: int,
    prompts_per_step: int,
    trainer_kwargs: dict,
    ctx,
    what: str,
    tokenizer,
    out_dir: Path,
) -> None:
    """Fit `module` (which samples its own policy each step and keeps `module.history`) for
    `steps` steps, each process drawing `prompts_per_step` rows per step, then export
    `module.policy` and the curve to `out_dir`."""
    trainer = build_trainer(
        trainer_kwargs,
        ctx.logger,
        ctx.progress,
        what,
        max_epochs=1,
        limit_train_batches=steps,
        limit_val_batches=0,
    )
    draws = steps * prompts_per_step * trainer.num_nodes * trainer.num_devices
    loader = DataLoader(
        rows,
        batch_size=prompts_per_step,
        sampler=DrawWithReplacement(len(rows), draws, ctx.seed),
        collate_fn=collate,
        drop_last=True,
    )
    trainer.fit(module, loader)
    # Collective: ZeRO shards are gathered by every rank, LoRA merged; global rank 0 writes.
    export_trained(trainer, module, tokenizer, out_dir, ctx.model.dtype, attr="policy")
    if trainer.is_global_zero:
        write_history(out_dir, module.history)


def summarise(history: list[dict]) -> dict:
    """Means over the last tenth of training, the numbers a manifest keeps."""
    tail = history[-max(1, len(history) // 10) :]
    keys = sorted({k for r in tail for k in r if k != "step"})
    return {f"final_{k}": float(np.mean([r[k] for r in tail if k in r])) for k in keys}
