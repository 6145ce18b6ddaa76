"""One place that turns rows, a collator and a LightningModule into a fitted model.

Every training stage calls `fit`; the Trainer's hardware settings (accelerator, devices,
strategy, precision) come from `conf/trainer/*.yaml`, the schedule from the stage's own
config, so changing hardware never changes what a stage means.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

log = logging.getLogger(__name__)


@dataclass
class Schedule:
    epochs: float = 1.0
    batch_size: int = 32
    max_steps: int = -1  # overrides epochs when > 0
    val_batches: int = 50
    eval_every_steps: int = 0  # 0: once per epoch

    def total_steps(self, num_rows: int, accumulate: int = 1) -> int:
        if self.max_steps > 0:
            return self.max_steps
        per_epoch = math.ceil(num_rows / self.batch_size / accumulate)
        return max(1, math.ceil(self.epochs * per_epoch))


def as_dataclass(cls, value, where: str):
    """Build a config dataclass from a mapping (Hydra passes nested nodes as DictConfig)."""
    if isinstance(value, cls):
        return value
    if isinstance(value, DictConfig):
        value = OmegaConf.to_container(value, resolve=True)
    try:
        return cls(**dict(value))
    except TypeError as e:
        raise ValueError(f"{where}: {e}") from None


def trainer_kwargs(trainer_cfg) -> dict:
    """Plain Trainer kwargs, with a fresh strategy object per Trainer (Lightning mutates it)."""
    cfg = OmegaConf.to_container(trainer_cfg, resolve=True) if isinstance(trainer_cfg, DictConfig) else dict(trainer_cfg)
    cfg = copy.deepcopy(cfg)
    strategy = cfg.get("strategy")
    if isinstance(strategy, dict) and "_target_" in strategy:
        cfg["strategy"] = instantiate(strategy)
    return cfg


def fit(module: L.LightningModule, train_rows, val_rows, collate, schedule: Schedule,
        trainer_cfg, logger, seed: int, progress: bool = True) -> L.Trainer:
    kwargs = trainer_kwargs(trainer_cfg)
    accumulate = kwargs.get("accumulate_grad_batches", 1)
    total = schedule.total_steps(len(train_rows), accumulate)
    generator = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(train_rows, batch_size=schedule.batch_size, shuffle=True,
                              collate_fn=collate, generator=generator, drop_last=len(train_rows) > schedule.batch_size)
    val_loader = (
        DataLoader(val_rows, batch_size=schedule.batch_size, shuffle=False, collate_fn=collate)
        if val_rows else None
    )
    per_epoch = max(1, len(train_loader))
    eval_every = schedule.eval_every_steps or per_epoch
    trainer = L.Trainer(
        max_steps=total,
        max_epochs=math.ceil(total * accumulate / per_epoch),  # max_steps stops first
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=schedule.val_batches if val_loader is not None else 0,
        val_check_interval=min(eval_every, per_epoch) if eval_every < per_epoch else None,
        check_val_every_n_epoch=max(1, eval_every // per_epoch) if eval_every >= per_epoch else 1,
        **kwargs,
    )
    log.info("training %s for %d steps on %d rows", type(module).__name__, total, len(train_rows))
    trainer.fit(module, train_loader, val_loader)
    return trainer


def final_metrics(logger) -> dict:
    """The last logged value of each metric of a stage's training (from a StageLogger)."""
    out: dict = {}
    for row in getattr(logger, "history", []):
        out.update({k: v for k, v in row.items() if k != "step"})
    return out
