"""The one Trainer builder, and the one place that turns rows, a collator and a LightningModule
into a fitted model.

Every training stage trains through `build_trainer` (most through `fit`); the Trainer's
hardware settings (accelerator, devices, strategy, precision) come from
`conf/trainer/*.yaml`, the schedule from the stage's own config, so changing hardware never
changes what a stage means: `batch_size` is the global batch, split evenly over however many
processes train.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, Sampler

from afd.core.config import as_dataclass, check_number
from afd.core.errors import ConfigError
from afd.core.progress import terminal_attached
from afd.models.loading import DTYPES
from afd.runtime.optim import OptimConfig
from afd.runtime.progress import ProgressLog
from afd.runtime.ranks import cluster_environment
from afd.runtime.strategies import export_hf_model

log = logging.getLogger(__name__)


@dataclass
class Schedule:
    epochs: float
    batch_size: int  # the global batch, over every training process
    max_steps: int = -1  # overrides epochs when > 0
    val_batches: int = 50
    eval_every_steps: int = 0  # 0: once per epoch

    def __post_init__(self):
        check_number(self.epochs, "epochs", 0, above=True)
        check_number(self.batch_size, "batch_size", 1, integer=True)
        check_number(self.max_steps, "max_steps", -1, integer=True)
        check_number(self.val_batches, "val_batches", 0, integer=True)
        check_number(self.eval_every_steps, "eval_every_steps", 0, integer=True)

    def total_steps(self, num_rows: int, accumulate: int = 1) -> int:
        if self.max_steps > 0:
            return self.max_steps
        per_epoch = math.ceil(num_rows / self.batch_size / accumulate)
        return max(1, math.ceil(self.epochs * per_epoch))


def training_config(recipe, key: str) -> None:
    """Turn a recipe's `schedule` and `optim` nodes into their dataclasses; an error names
    `key.schedule` or `key.optim`."""
    recipe.schedule = as_dataclass(Schedule, recipe.schedule, f"{key}.schedule")
    recipe.optim = as_dataclass(OptimConfig, recipe.optim, f"{key}.optim")


def trainer_kwargs(trainer_cfg) -> dict:
    """Plain Trainer kwargs, with a fresh strategy object per Trainer (Lightning mutates it)."""
    cfg = (
        OmegaConf.to_container(trainer_cfg, resolve=True)
        if isinstance(trainer_cfg, DictConfig)
        else dict(trainer_cfg)
    )
    cfg = copy.deepcopy(cfg)
    strategy = cfg.get("strategy")
    if isinstance(strategy, dict) and "_target_" in strategy:
        cfg["strategy"] = instantiate(strategy)
    return cfg


class ShardedBatches(Sampler):
    """Global batches in one seeded order whatever the number of processes; each rank takes its
    share of every batch (a strided slice), so a run on N processes sees the data of one process."""

    def __init__(self, batches: BatchSampler, rank: int, world: int):
        self.batches, self.rank, self.world = batches, rank, world
        self.batch_size = batches.batch_size // world  # per process (DeepSpeed reads it)

    def __iter__(self):
        for batch in self.batches:
            yield batch[self.rank :: self.world]

    def __len__(self) -> int:
        return len(self.batches)


class RowsDataModule(L.LightningDataModule):
    """Rows to loaders, built once the Trainer knows this process's rank and the world size.

    `batch_size` is the global batch: the schedule means the same on one device or many, and one
    process draws exactly the batches that `DataLoader(shuffle=True, generator=seeded)` would.
    """

    def __init__(self, train_rows, val_rows, collate, batch_size: int, seed: int):
        super().__init__()
        self.train_rows, self.val_rows, self.collate = train_rows, val_rows, collate
        self.batch_size, self.seed = batch_size, seed

    def train_dataloader(self):
        rank, world = self.trainer.global_rank, self.trainer.world_size
        generator = torch.Generator().manual_seed(self.seed)
        batches = BatchSampler(
            RandomSampler(self.train_rows, generator=generator),
            self.batch_size,
            drop_last=len(self.train_rows) > self.batch_size,
        )
        return DataLoader(
            self.train_rows,
            batch_sampler=ShardedBatches(batches, rank, world),
            collate_fn=self.collate,
            generator=generator,
        )

    def val_dataloader(self):
        rank, world = self.trainer.global_rank, self.trainer.world_size
        # Equal shares: a process without validation rows would wait forever in the metric sync.
        usable = len(self.val_rows) - len(self.val_rows) % world
        share = self.val_rows[:usable][rank::world]
        return DataLoader(
            share,
            batch_size=max(1, self.batch_size // world),
            shuffle=False,
            collate_fn=self.collate,
        )


def build_trainer(kwargs: dict, logger, progress: bool, what: str, **loop) -> L.Trainer:
    """A Trainer with the job's hardware settings (`kwargs`, from `trainer_kwargs`) and the
    stage's loop limits; afd checkpoints through its stage cache, not Lightning's. `what` names
    the training in the log; with no terminal, progress is a log line every half minute."""
    bar = progress and terminal_attached()
    return L.Trainer(
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        plugins=[cluster_environment()],
        callbacks=[] if bar or not progress else [ProgressLog(what)],
        **loop,
        **kwargs,
    )


def manual_trainer_kwargs(trainer_cfg) -> tuple[dict, float | None]:
    """Trainer kwargs for manual optimisation, and the gradient-clipping norm the module must
    apply itself: Lightning refuses gradient clipping and accumulation there, so clipping
    moves into the module (or DeepSpeed's config). Under DDP a step may backpropagate through
    one of several models at a time, so DDP must expect parameters a backward pass skips."""
    kwargs = trainer_kwargs(trainer_cfg)
    processes = int(kwargs.get("devices", 1)) * int(kwargs.get("num_nodes", 1))
    if kwargs.get("strategy") == "ddp" or (
        kwargs.get("strategy", "auto") == "auto" and processes > 1
    ):
        kwargs["strategy"] = "ddp_find_unused_parameters_true"
    elif type(kwargs.get("strategy")) is DDPStrategy:
        kwargs["strategy"]._ddp_kwargs["find_unused_parameters"] = True
    clip = kwargs.pop("gradient_clip_val", None)
    if kwargs.pop("accumulate_grad_batches", 1) != 1:
        raise ConfigError(
            "trainer.accumulate_grad_batches must be 1 for on-policy training (each step "
            "samples the policy afresh); raise the recipe's prompts per step instead"
        )
    strategy = kwargs.get("strategy")
    if clip and isinstance(strategy, DeepSpeedStrategy):
        strategy.config.setdefault("gradient_clipping", clip)  # DeepSpeed clips in its engine
        clip = None
    return kwargs, clip


def check_batch(batch_size: int, processes: int, where: str) -> None:
    """Every process needs an equal, non-empty share of each global batch."""
    if batch_size % processes or batch_size < processes:
        raise ValueError(
            f"{where}={batch_size} is the global batch and must be divisible "
            f"by the number of training processes (trainer.devices x trainer.num_nodes = "
            f"{processes})"
        )


def fit(
    module: L.LightningModule,
    train_rows,
    val_rows,
    collate,
    schedule: Schedule,
    trainer_cfg,
    logger,
    seed: int,
    progress: bool,
    what: str,
) -> L.Trainer:
    """Train `module` (called `what` in the log); call it on every process of a multi-process
    run (afd/runtime/launch.py)."""
    kwargs = trainer_kwargs(trainer_cfg)
    accumulate = kwargs.get("accumulate_grad_batches", 1)
    total = schedule.total_steps(len(train_rows), accumulate)
    per_epoch = max(1, len(train_rows) // schedule.batch_size)  # full global batches (drop_last)
    eval_every = schedule.eval_every_steps or per_epoch
    trainer = build_trainer(
        kwargs,
        logger,
        progress,
        what,
        max_steps=total,
        max_epochs=math.ceil(total * accumulate / per_epoch),  # max_steps stops first
        limit_val_batches=schedule.val_batches if val_rows else 0,
        val_check_interval=min(eval_every, per_epoch) if eval_every < per_epoch else None,
        check_val_every_n_epoch=max(1, eval_every // per_epoch) if eval_every >= per_epoch else 1,
        use_distributed_sampler=False,  # RowsDataModule shards global batches itself
    )
    check_batch(schedule.batch_size, trainer.world_size, "schedule.batch_size")
    data = RowsDataModule(train_rows, val_rows or [], collate, schedule.batch_size, seed)
    log.info(
        "training %s for %d steps on %d rows (%d processes)",
        what,
        total,
        len(train_rows),
        trainer.world_size,
    )
    trainer.fit(module, datamodule=data)
    return trainer


def export_trained(
    trainer: L.Trainer,
    module: L.LightningModule,
    tokenizer,
    out_dir,
    dtype: str = "float32",
    attr: str = "model",
) -> None:
    """Write the trained `module.<attr>` and its tokenizer as a plain Hugging Face directory.

    Collective: every process calls it. Under DeepSpeed ZeRO the weights are gathered from their
    partitions (fp32 masters when training in 16 bits); LoRA adapters are merged in; the weights
    are written in `dtype`, the model options' (what later stages load them in); only global
    rank 0 writes.
    """
    config = getattr(module, attr).config
    if getattr(config, "use_cache", None) is False:
        config.use_cache = True  # checkpointing was for training; generation wants the cache
    export_hf_model(trainer, module, out_dir, attr=attr, dtype=DTYPES[dtype])
    if trainer.is_global_zero:
        tokenizer.save_pretrained(out_dir)


def final_metrics(logger) -> dict:
    """The last logged value of each metric of a stage's training (from a StageLogger)."""
    out: dict = {}
    for row in logger.history if logger is not None else []:
        out.update({k: v for k, v in row.items() if k != "step"})
    return out
