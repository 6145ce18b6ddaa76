"""Checks a composed config before any work starts, and builds the job's parts from it; each
error names the offending key."""

from __future__ import annotations

import os
from typing import get_args

from omegaconf import DictConfig

from afd.core.config import check_count, check_number
from afd.core.errors import ConfigError
from afd.core.protocols import ChecksPolicy
from afd.models.devices import inference_device
from afd.pipeline.parts import JobParts, build_parts
from afd.runtime.ranks import slurm_tasks


def _int(cfg, key: str, low: int | None = None, high: int | None = None, hint: str = "") -> int:
    value = cfg
    for part in key.split("."):
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ConfigError(f"{key} must be {bounds}, got {value}{hint}")
    return value


def validate(cfg: DictConfig) -> JobParts:
    """The job's parts, once every value is known to work; the first bad one is a ConfigError
    naming its key."""
    n_max = _int(cfg, "bon.n_max", 1)
    _int(cfg, "n", 1, n_max, hint=f" (raise bon.n_max to sample a larger pool; it is {n_max})")
    _int(cfg, "seed", 0)
    _int(cfg, "eval.init_samples_per_prompt", 1)
    if cfg.bon.num_prompts is not None:
        _int(cfg, "bon.num_prompts", 1)
    for key in ("max_prompt_tokens", "max_response_tokens"):
        _int(cfg, f"data.lengths.{key}", 1)
    _int(cfg, "eval.coverage_samples", 1, n_max, hint=" (bon.n_max samples per prompt)")
    _int(cfg, "rounds", 1)
    for key in ("cache", "progress"):
        if not isinstance(cfg[key], bool):
            raise ConfigError(f"{key} must be true or false, got {cfg[key]!r}")
    parts = build_parts(cfg)
    _trainer(cfg, parts.pretrain is not None)
    _context(parts)
    if _runs_here(cfg):
        key = "model.n_embd / model.n_head" if parts.pretrain is not None else "model.name_or_path"
        on_cpu = inference_device().type == "cpu"
        for engine in (parts.engine, *parts.pool_engines.values()):
            if isinstance(engine, ChecksPolicy):
                engine.check_policy(parts.spec.attention_head_size(), key, on_cpu)
    return parts


def _runs_here(cfg: DictConfig) -> bool:
    """Whether the job runs on this machine's devices: not where a sweep is submitted to SLURM
    from a login node (each job checks its devices again as it starts on its node)."""
    return "cluster" not in cfg or "SLURM_JOB_ID" in os.environ


def _context(parts: JobParts) -> None:
    """Every prompt and reply the stages will feed the policy fits its context."""
    length = parts.spec.context_length()
    lengths, settings = parts.lengths, parts.engine.settings
    reply = max(lengths.max_response_tokens + 1, settings.max_new_tokens)
    if length is not None and lengths.max_prompt_tokens + reply > length:
        where = "model.n_positions" if parts.pretrain is not None else "the model's context"
        raise ConfigError(
            f"{where} is {length} tokens, fewer than data.lengths.max_prompt_tokens "
            f"({lengths.max_prompt_tokens}) + the longest reply ({reply}: "
            "data.lengths.max_response_tokens + EOS, or sampling.max_new_tokens): raise it, or "
            "lower those"
        )


def _trainer_settings(trainer: DictConfig) -> None:
    """The Trainer's own settings, which Lightning would otherwise reject only when the first
    training stage starts."""
    from lightning.fabric.connector import _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS
    from lightning.pytorch.accelerators import AcceleratorRegistry

    accelerators = sorted({"auto", "gpu", *AcceleratorRegistry.available_accelerators()})
    accelerator = trainer.get("accelerator", "auto")
    if accelerator not in accelerators:
        raise ConfigError(f"trainer.accelerator must be one of {accelerators}, got {accelerator!r}")
    precisions = [*get_args(_PRECISION_INPUT_STR), *get_args(_PRECISION_INPUT_STR_ALIAS)]
    precision = trainer.get("precision", "32-true")
    if isinstance(precision, bool) or str(precision) not in precisions:
        raise ConfigError(f"trainer.precision must be one of {precisions}, got {precision!r}")
    if trainer.get("gradient_clip_val") is not None:
        check_number(trainer.gradient_clip_val, "trainer.gradient_clip_val", 0)
    for key in ("accumulate_grad_batches", "log_every_n_steps"):
        if key in trainer:
            check_count(trainer[key], f"trainer.{key}")
    if trainer.get("deterministic", False) not in (True, False, "warn"):
        raise ConfigError(
            f"trainer.deterministic must be true, false or warn, got {trainer.deterministic!r}"
        )


def _trainer(cfg: DictConfig, pretrains: bool) -> None:
    """Process counts that the training stages and the SLURM allocation can agree on."""
    _trainer_settings(cfg.trainer)
    devices, nodes = _int(cfg, "trainer.devices", 1), _int(cfg, "trainer.num_nodes", 1)
    processes = devices * nodes
    batches = (["pretrain.schedule.batch_size"] if pretrains else []) + ["sft.schedule.batch_size"]
    batches += _schedules(cfg.reward, "reward")  # composite rewards: every part's schedule
    if cfg.rounds > 1:
        batches.append("iterate.schedule.batch_size")
    for key in batches:
        size = _int(cfg, key, 1)
        if size % processes:
            raise ConfigError(
                f"{key}={size} is the global batch and must be divisible by the "
                f"{processes} training processes (trainer.devices x trainer.num_nodes)"
            )
    tasks = slurm_tasks()
    if tasks > 1 and tasks != processes:
        raise ConfigError(
            f"this SLURM job has {tasks} tasks but trainer.devices x trainer.num_nodes = "
            f"{processes}: "
            "ask for one task per device (hydra.launcher.tasks_per_node = trainer.devices, "
            "hydra.launcher.nodes = trainer.num_nodes; +cluster=slurm sets both)"
        )
    if tasks == 1 and nodes > 1:
        raise ConfigError(
            f"trainer.num_nodes={nodes} needs SLURM to start one task per device on every node: "
            "run through +cluster=slurm, or srun with --ntasks-per-node=trainer.devices"
        )


def _schedules(node, key: str) -> list[str]:
    """The `schedule.batch_size` keys under a config node (a recipe and its parts)."""
    if not isinstance(node, DictConfig):
        return []
    found = [f"{key}.schedule.batch_size"] if "batch_size" in node.get("schedule", {}) else []
    for name in node:
        if name != "schedule":
            found += _schedules(node[name], f"{key}.{name}")
    return found
