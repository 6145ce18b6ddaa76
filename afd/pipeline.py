"""The stage graph: data -> [pretrain] -> sft -> sample -> reward -> score, each cached.

Every node names the config subtree it reads and its upstream artifacts; the cache turns
that into a key, so a node is built once and reused by every job that needs it (a sweep
over `n` trains nothing twice). `status` records, per node, "trained" or "cached".
"""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from afd.batching import Lengths
from afd.cache import Artifact, StageCache, artifact_key
from afd.launch import StageLauncher
from afd.modules.optim import OptimConfig
from afd.sampling import SamplingConfig
from afd.stages import data as data_stage
from afd.stages import pretrain as pretrain_stage
from afd.stages import sample as sample_stage
from afd.stages import score as score_stage
from afd.stages import sft as sft_stage
from afd.stages.data import DataDir
from afd.stages.reward import RewardInputs
from afd.training import Schedule, as_dataclass

log = logging.getLogger(__name__)
TRAIN_SEED_OFFSET, HELDOUT_SEED_OFFSET = 0, 1


def plain(node):
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


class Pipeline:
    def __init__(self, cfg: DictConfig, tracker, cache: StageCache | None = None):
        self.cfg = cfg
        self.tracker = tracker
        self.cache = cache or StageCache(cfg.cache_dir, reuse=cfg.cache)
        self.status: dict[str, str] = {}
        self.artifacts: dict[str, Artifact] = {}
        self.lengths = Lengths(**plain(cfg.data.lengths))
        self.sampling = as_dataclass(SamplingConfig, cfg.sampling, "sampling")
        # Training stages run through it: in this process, or in one worker process per rank.
        self.launcher = StageLauncher(cfg.trainer)

    def _node(self, label: str, stage: str, config: dict, upstream: dict[str, Artifact], build):
        if label in self.artifacts:
            return self.artifacts[label]
        art = self.cache.get_or_build(stage, plain(config), upstream, build)
        self.status[label] = art.status
        self.artifacts[label] = art
        log.info("%-22s %s  %s", label, art.status, art.path)
        return art

    # -- data and policies -------------------------------------------------------------
    def data(self) -> Artifact:
        task_cfg = self.cfg.data.task
        return self._node("data", "data", {"task": task_cfg}, {},
                          lambda out: data_stage.build(out, instantiate(task_cfg)))

    def corpus(self) -> Artifact:
        """The pretraining corpus; keyed only by the task knobs it reads."""
        task_cfg = self.cfg.data.task
        task = instantiate(task_cfg)
        if not hasattr(task, "build_corpus"):
            raise ValueError(
                f"model {self.cfg.model._target_} is built from scratch and needs a pretraining "
                f"corpus, but data {task_cfg._target_} has none: use a pretrained model "
                "(model=gpt2, or model.name_or_path=...)")
        config = {"_target_": task_cfg._target_, **{k: task_cfg[k] for k in task.corpus_keys}}
        return self._node("corpus", "corpus", {"task": config}, {},
                          lambda out: data_stage.build_corpus(out, task))

    def _training(self, name: str) -> dict:
        """The config a training stage reads: its own node, lengths, hardware and seed."""
        return {name: self.cfg[name], "lengths": self.cfg.data.lengths,
                "trainer": self.cfg.trainer, "seed": self.cfg.seed}

    def init_policy(self) -> Artifact:
        spec = instantiate(self.cfg.model)
        if not spec.needs_pretraining:
            key = artifact_key("model", plain(self.cfg.model), {})
            art = Artifact("model", key, Path(spec.name_or_path), "reference")
            self.artifacts["init"], self.status["init"] = art, "reference"
            return art
        corpus = self.corpus()
        config = {**self._training("pretrain"), "model": self.cfg.model}
        return self._node("init", "pretrain", config, {"corpus": corpus}, lambda out: self.launcher.run(
            pretrain_stage.build, out, corpus.path, spec, self._schedule("pretrain"),
            self._optim("pretrain"), self.lengths, self.cfg.trainer, self.cfg.seed, self.tracker.lightning_logger("pretrain"), self.cfg.progress))

    def sft_policy(self) -> Artifact:
        data, init = self.data(), self.init_policy()
        c = self.cfg.sft
        return self._node("sft", "sft", self._training("sft"), {"data": data, "init": init},
                          lambda out: self.launcher.run(
            sft_stage.build, out, data.path, str(init.path), self._schedule("sft"), self._optim("sft"),
            self.lengths, self.cfg.trainer, self.cfg.seed, c.val_fraction, c.num_demos,
            self.tracker.lightning_logger("sft"), self.cfg.progress, self.cfg.model.get("dtype", "float32")))

    def policy(self, name: str) -> Artifact:
        policies = {"init": self.init_policy, "sft": self.sft_policy}
        if name not in policies:
            raise ValueError(f"unknown policy {name!r}; expected one of {sorted(policies)}")
        return policies[name]()

    def _schedule(self, name: str) -> Schedule:
        return as_dataclass(Schedule, self.cfg[name].schedule, f"{name}.schedule")

    def _optim(self, name: str) -> OptimConfig:
        return as_dataclass(OptimConfig, self.cfg[name].optim, f"{name}.optim")

    # -- samples, rewards, scores -------------------------------------------------------
    def samples(self, policy: str, split: str, num_samples: int, num_prompts: int | None = None) -> Artifact:
        data, pol = self.data(), self.policy(policy)
        seed = self.cfg.seed + (TRAIN_SEED_OFFSET if split == "train" else HELDOUT_SEED_OFFSET)
        config = {"sampling": self.cfg.sampling, "lengths": self.cfg.data.lengths, "split": split,
                  "num_samples": num_samples, "num_prompts": num_prompts, "seed": seed}
        label = f"sample/{policy}/{split}"
        return self._node(label, "sample", config, {"data": data, "policy": pol}, lambda out: sample_stage.build(
            out, data.path, str(pol.path), split, num_samples, num_prompts, self.sampling,
            self.lengths, seed, self.cfg.progress))

    def _reward_rows(self, source: str, recipe) -> tuple[Artifact, list[dict]]:
        if source == "pairs":
            data = self.data()
            pairs = DataDir(data.path).pairs()
            return data, [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]
        if source == "demo":
            data = self.data()
            demos = DataDir(data.path).examples("train")[: recipe.num_prompts]
            return data, [{"prompt": e.prompt, "response": e.response} for e in demos]
        art = self.samples(source, "train", recipe.samples_per_prompt, recipe.num_prompts)
        return art, sample_stage.read_samples(art.path)

    def reward(self) -> Artifact:
        recipe = instantiate(self.cfg.reward)
        upstream: dict[str, Artifact] = {"data": self.data()}
        rows: dict[str, list[dict]] = {}
        for role, source in recipe.sources().items():
            upstream[role], rows[role] = self._reward_rows(source, recipe)
        policies = {}
        for role, name in recipe.policies().items():
            upstream[role] = self.policy(name)
            policies[role] = str(upstream[role].path)
        config = {"reward": self.cfg.reward, "lengths": self.cfg.data.lengths,
                  "trainer": self.cfg.trainer, "seed": self.cfg.seed}
        # Recipes that train declare it (`trains`); the others need no worker processes.
        run = self.launcher.run if getattr(recipe, "trains", True) else (lambda fn, *a: fn(*a))
        return self._node("reward", "reward", config, upstream, lambda out: run(
            recipe.build, out, RewardInputs(rows, policies), self.lengths, self.cfg.trainer,
            self.cfg.seed, self.tracker.lightning_logger("rm"), self.cfg.progress))

    def scores(self, label: str, source: Artifact, rows: list[dict], scorer_name: str) -> Artifact:
        """Score `rows` (read from `source`) with the gold reward or the trained reward."""
        if scorer_name == "gold":
            config, upstream = {"gold": self.cfg.gold}, {"rows": source}
            make = lambda: instantiate(self.cfg.gold)  # noqa: E731
        else:
            from afd.scoring import load_scorer

            reward = self.reward()
            config, upstream = {"reward": "trained"}, {"rows": source, "reward": reward}
            make = lambda: load_scorer(reward.path)  # noqa: E731
        return self._node(f"score/{scorer_name}/{label}", "score", config, upstream,
                          lambda out: score_stage.build(out, rows, make()))
