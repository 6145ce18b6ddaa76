"""The stage graph: data -> [pretrain] -> sft -> [adversarial] -> sample -> reward -> score,
each node cached.

Every node names the config subtree it reads and its upstream artifacts; the cache turns
that into a key, so a node is built once and reused by every job that needs it (a sweep
over `n` trains nothing twice). `status` records, per node, "trained" or "cached".

Policies are named: "init" (pi0), "sft", "policy" (what `cfg.divergence` trains; the SFT
node itself for forward KL) and "round/<k>" (iterative AfD, afd/iterate.py).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from afd.batching import Lengths
from afd.cache import Artifact, StageCache, artifact_key
from afd.finetune import model_options
from afd.launch import StageLauncher
from afd.modules.optim import OptimConfig
from afd.sampling import SamplingConfig
from afd.stages import adversarial as adversarial_stage
from afd.stages import data as data_stage
from afd.stages import policy_metrics as policy_metrics_stage
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
    """Plain containers with interpolations resolved, also inside dicts of config nodes:
    a key must hold `data.task.noise`'s value, never the string "${data.noise}"."""
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    if isinstance(node, dict):
        return {k: plain(v) for k, v in node.items()}
    return node


class Pipeline:
    def __init__(self, cfg: DictConfig, tracker, cache: StageCache | None = None):
        self.cfg = cfg
        self.tracker = tracker
        self.cache = cache or StageCache(cfg.cache_dir, reuse=cfg.cache)
        self.status: dict[str, str] = {}
        self.artifacts: dict[str, Artifact] = {}
        self.lengths = Lengths(**plain(cfg.data.lengths))
        self.sampling = as_dataclass(SamplingConfig, cfg.sampling, "sampling")
        self.model_options = model_options(
            instantiate(cfg.model)
        )  # dtype, LoRA, ... for every stage
        self._gold = None  # one golden reward model per job, however many sets it scores
        self.divergence = instantiate(cfg.divergence)
        # Training stages run through it: in this process, or in one worker process per rank.
        self.launcher = StageLauncher(cfg.trainer)

    def _node(self, label: str, stage: str, config: dict, upstream: dict[str, Artifact], build):
        if label in self.artifacts:
            known = self.artifacts[label]
            key = artifact_key(stage, plain(config), {k: a.key for k, a in upstream.items()})
            if known.key != key:
                raise RuntimeError(f"two {stage} artifacts labelled {label!r} in one job")
            return known
        art = self.cache.get_or_build(stage, plain(config), upstream, build)
        self.status[label] = art.status
        self.artifacts[label] = art
        log.info("%-22s %s  %s", label, art.status, art.path)
        return art

    # -- data and policies -------------------------------------------------------------
    def data(self) -> Artifact:
        task_cfg = self.cfg.data.task
        return self._node(
            "data",
            "data",
            {"task": task_cfg},
            {},
            lambda out: data_stage.build(out, instantiate(task_cfg)),
        )

    def corpus(self) -> Artifact:
        """The pretraining corpus; keyed only by the task knobs it reads."""
        task_cfg = self.cfg.data.task
        task = instantiate(task_cfg)
        if not hasattr(task, "build_corpus"):
            raise ValueError(
                f"model {self.cfg.model._target_} is built from scratch and needs a pretraining "
                f"corpus, but data {task_cfg._target_} has none: use a pretrained model "
                "(model=gpt2, or model.name_or_path=...)"
            )
        config = {"_target_": task_cfg._target_, **{k: task_cfg[k] for k in task.corpus_keys}}
        return self._node(
            "corpus", "corpus", {"task": config}, {}, lambda out: data_stage.build_corpus(out, task)
        )

    def _training(self, name: str) -> dict:
        """The config a training stage reads: its own node, lengths, hardware and seed."""
        return {
            name: self.cfg[name],
            "lengths": self.cfg.data.lengths,
            "trainer": self.cfg.trainer,
            "seed": self.cfg.seed,
        }

    def init_policy(self) -> Artifact:
        spec = instantiate(self.cfg.model)
        if not spec.needs_pretraining:
            key = artifact_key("model", plain(self.cfg.model), {})
            art = Artifact("model", key, Path(spec.name_or_path), "reference")
            self.artifacts["init"], self.status["init"] = art, "reference"
            return art
        corpus = self.corpus()
        config = {**self._training("pretrain"), "model": self.cfg.model}
        return self._node(
            "init",
            "pretrain",
            config,
            {"corpus": corpus},
            lambda out: self.launcher.run(
                pretrain_stage.build,
                out,
                corpus.path,
                spec,
                self._schedule("pretrain"),
                self._optim("pretrain"),
                self.lengths,
                self.cfg.trainer,
                self.cfg.seed,
                self.tracker.lightning_logger("pretrain"),
                self.cfg.progress,
            ),
        )

    def sft_policy(self) -> Artifact:
        data, init = self.data(), self.init_policy()
        c = self.cfg.sft
        return self._node(
            "sft",
            "sft",
            self._training("sft"),
            {"data": data, "init": init},
            lambda out: self.launcher.run(
                sft_stage.build,
                out,
                data.path,
                str(init.path),
                self._schedule("sft"),
                self._optim("sft"),
                self.lengths,
                self.cfg.trainer,
                self.cfg.seed,
                c.val_fraction,
                c.num_demos,
                self.tracker.lightning_logger("sft"),
                self.cfg.progress,
                options=self.model_options,
            ),
        )

    def policy(self, name: str) -> Artifact:
        name = self.canonical(name)
        if name.startswith("round/"):
            from afd.iterate import round_policy

            return round_policy(self, int(name.split("/", 1)[1]))
        policies = {"init": self.init_policy, "sft": self.sft_policy, "policy": self.trained_policy}
        if name not in policies:
            raise ValueError(
                f"unknown policy {name!r}; expected one of {sorted(policies)} or round/<k>"
            )
        return policies[name]()

    def canonical(self, name: str) -> str:
        """The node a policy name stands for: "policy" is "sft" under forward KL, "round/0"
        is "policy", so identical artifacts get one label and are built once."""
        if name == "round/0":
            name = "policy"
        if name == "policy" and self.divergence.alias:
            return self.divergence.alias
        return name

    def trained_policy(self) -> Artifact:
        """The policy `cfg.divergence` trains (adversarial imitation) from pi_SFT or pi0."""
        recipe = self.divergence
        if recipe.alias:
            return self.policy(recipe.alias)
        roles = recipe.policies()
        upstream = {"data": self.data(), **{role: self.policy(n) for role, n in roles.items()}}
        max_new_tokens = self.cfg.sampling.max_new_tokens
        config = {
            "divergence": self.cfg.divergence,
            "lengths": self.cfg.data.lengths,
            "max_new_tokens": max_new_tokens,
            "trainer": self.cfg.trainer,
            "seed": self.cfg.seed,
        }
        paths = {role: str(upstream[role].path) for role in roles}
        return self._node(
            "policy",
            "adversarial",
            config,
            upstream,
            lambda out: self.launcher.run(
                adversarial_stage.build,
                out,
                upstream["data"].path,
                paths,
                recipe,
                recipe.config(max_new_tokens),
                self.lengths,
                self.cfg.trainer,
                self.cfg.seed,
                self.gold_factory(),
                self.tracker.lightning_logger("adv"),
                self.cfg.progress,
                recipe.num_prompts,
                self.model_options,
            ),
        )

    def _schedule(self, name: str) -> Schedule:
        return as_dataclass(Schedule, self.cfg[name].schedule, f"{name}.schedule")

    def _optim(self, name: str) -> OptimConfig:
        return as_dataclass(OptimConfig, self.cfg[name].optim, f"{name}.optim")

    # -- samples, rewards, scores -------------------------------------------------------
    def samples(
        self,
        policy: str,
        split: str,
        num_samples: int,
        num_prompts: int | None = None,
        tag: str = "",
    ) -> Artifact:
        policy = self.canonical(policy)
        data, pol = self.data(), self.policy(policy)
        seed = self.cfg.seed + (TRAIN_SEED_OFFSET if split == "train" else HELDOUT_SEED_OFFSET)
        config = {
            "sampling": self.cfg.sampling,
            "lengths": self.cfg.data.lengths,
            "split": split,
            "num_samples": num_samples,
            "num_prompts": num_prompts,
            "seed": seed,
        }
        label = f"sample/{policy}/{split}" + (f"/{tag}" if tag else "")
        return self._node(
            label,
            "sample",
            config,
            {"data": data, "policy": pol},
            lambda out: sample_stage.build(
                out,
                data.path,
                str(pol.path),
                split,
                num_samples,
                num_prompts,
                self.sampling,
                self.lengths,
                seed,
                self.cfg.progress,
                self.model_options,
            ),
        )

    def _reward_rows(self, source: str, recipe) -> tuple[Artifact, list[dict]]:
        if source == "pairs":
            data = self.data()
            pairs = DataDir(data.path).pairs()
            return data, [
                {"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs
            ]
        if source == "demo":
            data = self.data()
            demos = DataDir(data.path).examples("train")[: recipe.num_prompts]
            return data, [{"prompt": e.prompt, "response": e.response} for e in demos]
        art = self.samples(source, "train", recipe.samples_per_prompt, recipe.num_prompts)
        return art, sample_stage.read_samples(art.path)

    def reward(self, current: str = "sft") -> Artifact:
        """The reward model of `cfg.reward`. `current` stands in for the recipe's "sft"
        policy (iterative AfD trains round k's reward model on round k-1's policy)."""
        current = self.canonical(current)
        label = "reward" if current == "sft" else f"reward/{current}"
        return self._reward_node(label, self.cfg.reward, current)

    def _reward_node(self, label: str, reward_cfg, current: str) -> Artifact:
        recipe = instantiate(reward_cfg)
        swap = lambda name: current if name == "sft" else name  # noqa: E731
        upstream: dict[str, Artifact] = {"data": self.data()}
        rows: dict[str, list[dict]] = {}
        parts: dict[str, str] = {}
        # Composite rewards (ensembles, heterogeneous combinations) are built from parts,
        # each its own cached node, so a sweep over an ensemble's penalty trains none twice.
        for name, part_cfg in (recipe.parts() if hasattr(recipe, "parts") else {}).items():
            upstream[f"part/{name}"] = self._reward_node(f"{label}/{name}", part_cfg, current)
            parts[name] = str(upstream[f"part/{name}"].path)
        for role, source in recipe.sources().items():
            upstream[role], rows[role] = self._reward_rows(swap(source), recipe)
        policies = {}
        for role, name in recipe.policies().items():
            upstream[role] = self.policy(swap(name))
            policies[role] = str(upstream[role].path)
        config = {
            "reward": reward_cfg,
            "lengths": self.cfg.data.lengths,
            "trainer": self.cfg.trainer,
            "seed": self.cfg.seed,
        }
        # Recipes that train declare it (`trains`); the others (log-ratio, composites of parts
        # trained as their own nodes) need no worker processes.
        run = self.launcher.run if getattr(recipe, "trains", True) else (lambda fn, *a: fn(*a))
        return self._node(
            label,
            "reward",
            config,
            upstream,
            lambda out: run(
                recipe.build,
                out,
                RewardInputs(rows, policies, self.model_options, parts),
                self.lengths,
                self.cfg.trainer,
                self.cfg.seed,
                self.tracker.lightning_logger("rm"),
                self.cfg.progress,
            ),
        )

    def gold_scorer(self):
        if self._gold is None:
            self._gold = instantiate(self.cfg.gold)
        return self._gold

    def gold_factory(self):
        """How a training stage gets the gold scorer: this job's own when the stage trains in
        this process; built from its config in each worker process otherwise (a loaded model
        does not travel to workers, and the job's may not be loaded yet)."""
        if not self.launcher.in_workers:
            return self.gold_scorer
        return functools.partial(instantiate, plain(self.cfg.gold))

    def scores(
        self,
        label: str,
        source: Artifact,
        rows: list[dict],
        scorer_name: str,
        reward: Artifact | None = None,
    ) -> Artifact:
        """Score `rows` (read from `source`) with the gold reward or a trained reward
        (`reward`, by default the job's reward model)."""
        if scorer_name == "gold":
            config, upstream = {"gold": self.cfg.gold}, {"rows": source}
            make = self.gold_scorer
        else:
            from afd.scoring import load_scorer

            reward = reward or self.reward()
            config, upstream = {"reward": "trained"}, {"rows": source, "reward": reward}
            make = lambda: load_scorer(reward.path)  # noqa: E731
        return self._node(
            f"score/{scorer_name}/{label}",
            "score",
            config,
            upstream,
            lambda out: score_stage.build(out, rows, make()),
        )

    def policy_metrics(self, policy: str, pool: Artifact) -> Artifact:
        """div/* metrics (where the task knows its demonstrator) and diversity of a policy's
        held-out pool."""
        policy = self.canonical(policy)
        config = {
            "lengths": self.cfg.data.lengths,
            "coverage_samples": self.cfg.eval.coverage_samples,
            "format": policy_metrics_stage.VERSION,
        }
        upstream = {"data": self.data(), "policy": self.policy(policy), "samples": pool}
        demonstrator = getattr(instantiate(self.cfg.data.task), "demonstrator", None)
        return self._node(
            f"policy_metrics/{policy}",
            "policy_metrics",
            config,
            upstream,
            lambda out: policy_metrics_stage.build(
                out,
                sample_stage.read_samples(pool.path),
                str(upstream["policy"].path),
                self.lengths,
                demonstrator,
                self.cfg.eval.coverage_samples,
                self.model_options,
            ),
        )
