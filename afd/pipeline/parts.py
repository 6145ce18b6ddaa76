"""A job's parts: every swappable piece of the config instantiated once, checked as it is
built (each error names its key), and the stage context made from them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from afd.core.config import Built, plain
from afd.core.context import StageContext
from afd.core.errors import AfdError, ConfigError
from afd.core.field_types import check_field_types
from afd.core.protocols import BuiltFromScratch, HasCorpus, SpansDevices, StartsAhead
from afd.models.batching import Lengths
from afd.runtime.sharding import stage_shards


def make(node, key: str):
    """Instantiate a config node; any failure is a ConfigError naming `key` (and, where the
    value came from elsewhere by interpolation, the key the user set)."""
    check_field_types(node, key, lambda message: with_source(message, node, key))
    try:
        return instantiate(node)
    except InstantiationException as e:
        cause = e.__cause__ or e
        if isinstance(cause, AfdError) and key.split(".")[0] in str(cause):
            raise ConfigError(with_source(str(cause), node, key)) from None
        raise ConfigError(f"{key}: {cause}") from None
    except AfdError as e:
        raise type(e)(with_source(str(e), node, key)) from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{key}: {e}") from None


ENGINES = Path(__file__).resolve().parents[2] / "conf" / "sampling"  # the sampling= choices
SPLITS = ("train", "heldout")
# What every engine means the same by: a pool's own engine takes them from `sampling.`
SHARED_SETTINGS = ("max_new_tokens", "temperature", "top_p", "top_k", "stop_strings")


def pool_engines(cfg: DictConfig) -> dict[str, Any]:
    """The engines `pools.<split>` names for some splits, each built from its conf/sampling
    file with the job's sampling settings, so only the engine differs from `sampling=`."""
    chosen = plain(cfg.pools) if "pools" in cfg else {}
    if not isinstance(chosen, dict):
        raise ConfigError(f"pools must be a mapping of {' / '.join(SPLITS)} to an engine")
    engines = {}
    for split, name in chosen.items():
        if split not in SPLITS:
            raise ConfigError(f"pools.{split}: no such kind of pool (choose from {SPLITS})")
        if name is None:
            continue
        choices = sorted(p.stem for p in ENGINES.glob("*.yaml"))
        if name not in choices:
            raise ConfigError(f"pools.{split}={name!r}: no such engine (choose from {choices})")
        node = OmegaConf.load(ENGINES / f"{name}.yaml")
        for key in SHARED_SETTINGS:
            node[key] = cfg.sampling[key]
        job = cfg.copy()
        with open_dict(job):
            job.sampling = node  # its interpolations (trainer.devices, ...) read this job
        engines[split] = make(job.sampling, f"pools.{split}")
    return engines


def with_source(message: str, node, key: str) -> str:
    """`message` naming `key.a.b`, plus where that value was set when it is an interpolation
    (reward.num_prompts is ${rm.num_prompts}: the user typed rm.num_prompts)."""
    found = re.search(rf"(?<![\w.]){re.escape(key)}((?:\.\w+)+)", message)
    if not found or not isinstance(node, DictConfig):
        return message
    raw = node
    for part in found.group(1).strip(".").split("."):
        if not isinstance(raw, DictConfig) or part not in raw:
            return message
        raw = raw._get_node(part)
    value = raw._value() if hasattr(raw, "_value") else None
    if isinstance(value, str) and value.startswith("${"):
        return f"{message} (set by {value[2:-1]})"
    return message


@dataclass
class JobParts:
    cfg: DictConfig  # the composed config (evaluation settings: bon, eval, rounds, n)
    task: Built
    spec: Any
    options: Any  # ModelOptions
    pretrain: Any  # Pretrain recipe, when the model is built from scratch
    sft: Any
    reward_config: DictConfig
    reward: Any  # RewardRecipe
    divergence: Any  # PolicyRecipe
    iterate: Any  # Distill recipe of iterative rounds
    engine: Any  # GenerationEngine
    pool_engines: dict[str, Any]  # split -> the GenerationEngine of `pools.<split>`, where set
    gold: Built
    tracker: Any  # `logger=`
    lengths: Lengths
    trainer: dict
    seed: int
    cache_dir: str
    cache: bool
    progress: bool
    coverage_samples: int
    unavailable: set = field(default_factory=set)  # Hub ids out of reach (preflight's finding)

    def context(self) -> StageContext:
        """Everything a stage may read; each stage sees only what it declares."""
        return StageContext(
            lengths=self.lengths,
            trainer=self.trainer,
            seed=self.seed,
            spec=self.spec,
            model=self.options,
            load=self.options.load,
            sampling=self.engine.settings,
            engine=self.engine,
            gold=self.gold,
            task=self.task,
            progress=self.progress,
        )

    def start_engines(self) -> None:
        """Engines that can begin their start-up before any policy exists begin it now, in the
        background (vLLM: processes that import it while the first stages train); the pipeline
        calls this as it builds its first stage. Not where
        a SLURM job's tasks sample a shard each: every task opens its own engine then. Two
        engines of one environment share a standby (`start_standby` starts none where one
        waits)."""
        for engine in (self.engine, *self.pool_engines.values()):
            whole = stage_shards(self.trainer, isinstance(engine, SpansDevices)) == 1
            if isinstance(engine, StartsAhead) and whole:
                engine.start_standby()

    def hub_users(self) -> list:
        """The parts that may load something by Hub id."""
        return [self.task.get(), self.spec, self.gold.get()]


def build_parts(cfg: DictConfig) -> JobParts:
    """Every part of the job, instantiated from its config node (in dependency order, so the
    first error is the one to fix)."""
    try:
        lengths = Lengths(**plain(cfg.data.lengths))  # the format comes with the model below
    except TypeError as e:
        raise ConfigError(f"data.lengths: {e}") from None
    task = make(cfg.data.task, "data.task")
    spec = make(cfg.model, "model")
    if isinstance(spec, BuiltFromScratch) and not isinstance(task, HasCorpus):
        raise ConfigError(
            f"model ({type(spec).__name__}) is built from scratch and needs a pretraining corpus, "
            f"but data.task ({type(task).__name__}) has none: use a pretrained model "
            "(model=gpt2, or model.name_or_path=...)"
        )
    return JobParts(
        cfg=cfg,
        task=Built(cfg.data.task, task),
        spec=spec,
        options=spec.options(),
        pretrain=make(cfg.pretrain, "pretrain") if isinstance(spec, BuiltFromScratch) else None,
        sft=make(cfg.sft, "sft"),
        reward_config=cfg.reward,
        reward=make(cfg.reward, "reward"),
        divergence=make(cfg.divergence, "divergence"),
        iterate=make(cfg.iterate, "iterate"),
        engine=make(cfg.sampling, "sampling"),
        pool_engines=pool_engines(cfg),
        gold=Built(cfg.gold, make(cfg.gold, "gold")),
        tracker=make(cfg.logger, "logger"),
        lengths=replace(lengths, format=spec.dialogue_format()),
        trainer=dict(plain(cfg.trainer)),
        seed=cfg.seed,
        cache_dir=cfg.cache_dir,
        cache=cfg.cache,
        progress=cfg.progress,
        coverage_samples=cfg.eval.coverage_samples,
    )
