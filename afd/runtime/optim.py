"""The optimiser every training module shares: AdamW with linear warm-up and cosine decay."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from afd.core.config import check_number
from afd.core.errors import ConfigError


@dataclass
class OptimConfig:
    lr: float
    weight_decay: float = 0.0
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1  # the cosine decays to this share of lr
    betas: tuple[float, float] = (0.9, 0.95)

    def __post_init__(self):
        check_number(self.lr, "lr", 0, above=True)
        check_number(self.weight_decay, "weight_decay", 0)
        check_number(self.warmup_steps, "warmup_steps", 0, integer=True)
        check_number(self.min_lr_ratio, "min_lr_ratio", 0, 1)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas}")


def lr_factor(cfg: OptimConfig, step: int, total_steps: int) -> float:
    """Multiplier of the base learning rate at `step`: linear warm-up, then cosine decay."""
    if step < cfg.warmup_steps:
        return (step + 1) / max(1, cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def configure(params, cfg: OptimConfig, total_steps: int):
    decay, no_decay = [], []
    for p in params:
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # No empty groups: DeepSpeed drops them, and the scheduler would then step one group too many
    # (LoRA leaves no trainable bias or norm weight).
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=tuple(cfg.betas))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(cfg, step, total_steps))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
