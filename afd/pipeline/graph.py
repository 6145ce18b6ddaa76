"""The stage graph: data -> [corpus -> pretrain] -> sft -> [policy recipe] -> sample -> reward
-> score, each node a cached artifact.

A node is a Stage (a recipe, or one of afd/pipeline/stages) built in a context that holds only
the fields the stage declares it reads; its cache key hashes the stage's own fields, that
context and its upstream keys (afd/core/context.py), so a node is built once and reused by
every job that needs it (a sweep over `n` trains nothing twice). `status` records, per node,
"trained", "cached" or "reference".

Policies are named: "init" (pi0), "sft", "policy" (what the `divergence=` recipe builds, asked
through `PolicyRecipe.policy(graph)`; pi_SFT itself for forward KL) and "round/<k>"
(iterative AfD, afd/pipeline/rounds.py). Reward recipes (`reward=`) declare their sources and
policies; the graph turns them into upstream nodes. No recipe is known here by name.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import instantiate

from afd.core.cache import Artifact, StageCache, artifact_key
from afd.core.config import fingerprint
from afd.core.errors import AfdError, ConfigError
from afd.core.protocols import (
    BuiltFromScratch,
    CompositeReward,
    HasCorpus,
    ShardedStage,
    SpansDevices,
    Stage,
    TrainedJudge,
)
from afd.pipeline.parts import JobParts
from afd.pipeline.stages.convert import ConvertStage
from afd.pipeline.stages.data import CorpusStage, DataStage
from afd.pipeline.stages.judge import JudgeStage
from afd.pipeline.stages.policy_metrics import REFERENCES, PolicyMetricsStage
from afd.pipeline.stages.sample import SampleStage
from afd.pipeline.stages.score import ScoreStage
from afd.runtime.faults import kill_inside
from afd.runtime.launch import StageLauncher
from afd.runtime.sharding import run_sharded, stage_shards

log = logging.getLogger(__name__)
TRAIN_SEED_OFFSET, HELDOUT_SEED_OFFSET = 0, 1
LOG_PREFIX = {"pretrain": "pretrain", "sft": "sft", "reward": "rm", "adversarial": "adv"}


class Pipeline:
    def __init__(self, parts: JobParts, tracker, cache: StageCache | None = None):
        self.parts = parts
        self.tracker = tracker
        self.cache = cache or StageCache(parts.cache_dir, reuse=parts.cache)
        self.status: dict[str, str] = {}
        self.artifacts: dict[str, Artifact] = {}
        self.seed = parts.seed
        self.divergence = parts.divergence
        self.context = parts.context()
        # Training stages run through it: in this process, or in one worker process per rank.
        self.launcher = StageLauncher(parts.trainer)
        self._rewards: dict[str, object] = {}
        self._engines_started = False

    @classmethod
    def from_config(cls, cfg, tracker, cache: StageCache | None = None) -> Pipeline:
        """The graph of a composed config, its parts checked and built by `validate`."""
        from afd.pipeline.validate import validate

        return cls(validate(cfg), tracker, cache)

    # -- nodes --------------------------------------------------------------------------
    def _node(self, label: str, stage: str, config: dict, upstream: dict[str, Artifact], build):
        if label in self.artifacts:
            known = self.artifacts[label]
            key = artifact_key(stage, config, {k: a.key for k, a in upstream.items()})
            if known.key != key:
                raise RuntimeError(f"two {stage} artifacts labelled {label!r} in one job")
            return known
        art = self.cache.get_or_build(stage, config, upstream, build)
        self.status[label] = art.status
        self.artifacts[label] = art
        log.info("%-22s %s  %s", label, art.status, art.path)
        return art

    def build(
        self,
        label: str,
        stage: Stage,
        upstream: dict[str, Artifact],
        log_as: str | None = None,
        **context: object,
    ) -> Artifact:
        """The artifact `stage` builds from `upstream`, keyed by the stage, the context fields
        it reads (with `context` overriding some, e.g. a round's seed) and the upstream keys.
        Training stages log under `log_as` (default: by their stage) and run in worker
        processes when the trainer is distributed."""
        ctx = self.context.only(tuple(stage.reads)).replace(**context)
        if stage.trains:
            prefix = log_as or LOG_PREFIX.get(stage.stage, stage.stage)
            ctx = ctx.with_logger(self.tracker.lightning_logger(prefix))
        config = {"stage": fingerprint(stage), "context": ctx.fingerprint()}

        def make(out: Path):
            self._start_engines()
            inputs = {role: a.path for role, a in upstream.items()}
            try:
                if stage.trains:
                    metrics = self.launcher.run(stage.build, out, ctx, inputs)
                elif isinstance(stage, ShardedStage) and stage.shards > 1:
                    metrics = run_sharded(stage, out, ctx, inputs, self.launcher.trainer)
                else:
                    metrics = stage.build(out, ctx, inputs)
            except AfdError as e:  # the stage and its policy, in the message the user reads
                raise type(e)(f"stage {label}: {e}") from e
            kill_inside(stage.stage)  # a test's fault: built, not yet published
            return metrics

        return self._node(label, stage.stage, config, upstream, make)

    def _start_engines(self) -> None:
        """At the first stage this job builds, its sampling engines begin their start-up in
        the background (vLLM's import overlaps that stage and the ones after it). A job whose
        every stage is cached starts none."""
        if not self._engines_started:
            self._engines_started = True
            self.parts.start_engines()

    def label_of(self, artifact: Artifact) -> str:
        """The label a policy artifact has in this job ("sft", "policy", "round/1", ...)."""
        return next(label for label, a in self.artifacts.items() if a.key == artifact.key)

    # -- data and policies --------------------------------------------------------------
    def data(self) -> Artifact:
        return self.build("data", DataStage(), {})

    def corpus(self) -> Artifact:
        task = self.parts.task.get()
        if not isinstance(task, HasCorpus):
            raise ConfigError(
                f"model {type(self.parts.spec).__name__} is built from scratch and needs a "
                f"pretraining corpus, but data.task ({type(task).__name__}) has none: use a "
                "pretrained model (model=gpt2, or model.name_or_path=...)"
            )
        return self.build("corpus", CorpusStage(task.corpus_config()), {})

    def init_policy(self) -> Artifact:
        spec = self.parts.spec
        if isinstance(spec, BuiltFromScratch):
            pretrain = self.parts.pretrain
            seed = {} if pretrain.seed is None else {"seed": pretrain.seed}
            return self.build("init", pretrain, {"corpus": self.corpus()}, **seed)
        return self.weights(spec, "init")

    def weights(self, spec, label: str) -> Artifact:
        """A pretrained model's directory: its GGUF file converted (a cached stage), or the
        Hub id or local directory itself, used in place."""
        if spec.uses_gguf(self.parts.unavailable):
            return self.build(label, ConvertStage(*spec.conversion()), {})
        if label not in self.artifacts:
            source = spec.source()
            key = artifact_key("model", source, {})
            art = Artifact("model", key, Path(source["name_or_path"]), "reference")
            self.artifacts[label], self.status[label] = art, "reference"
        return self.artifacts[label]

    def provenance(self) -> dict:
        """What actually ran, beyond the config-group names: the initial policy's weights
        (path or Hub id, and the converted GGUF file's hash) and the gold judge."""
        spec, gold = self.parts.spec, self.parts.gold.get()
        init = self.init_policy()
        if isinstance(spec, BuiltFromScratch):
            model = {"built_from_scratch": type(spec).__name__, "path": str(init.path)}
        else:
            model = {**spec.source(), "path": str(init.path)}
            if init.stage == "convert":
                model["gguf"] = {**init.metrics, "package": spec.conversion()[0].package}
        judge = {"config": fingerprint(gold)}
        inputs = self.gold_inputs()
        if "judge" in inputs:
            judge.update(path=str(inputs["judge"].path), **inputs["judge"].metrics)
        return {"model": model, "gold": judge}

    def gold_inputs(self) -> dict[str, Artifact]:
        """What reading the gold judge needs: its trained artifact, for a judge the pipeline
        trains (afd/tasks/judge.py), else nothing."""
        gold = self.parts.gold.get()
        if not isinstance(gold, TrainedJudge):
            return {}
        backbone = self.weights(gold.backbone, "judge/backbone")
        return {"judge": self.build("judge", JudgeStage(gold), {"backbone": backbone})}

    def sft_policy(self) -> Artifact:
        return self.build("sft", self.parts.sft, {"data": self.data(), "init": self.init_policy()})

    def policy(self, name: str) -> Artifact:
        """The artifact of a named policy: init, sft, policy or round/<k>."""
        if name.startswith("round/"):
            from afd.pipeline.rounds import round_policy

            return round_policy(self, int(name.split("/", 1)[1]))
        policies = {
            "init": self.init_policy,
            "sft": self.sft_policy,
            "policy": lambda: self.divergence.policy(self),
        }
        if name not in policies:
            raise ValueError(
                f"unknown policy {name!r}; expected one of {sorted(policies)} or round/<k>"
            )
        return policies[name]()

    # -- samples, rewards, scores -------------------------------------------------------
    def samples(
        self,
        policy: str,
        split: str,
        num_samples: int,
        num_prompts: int | None = None,
        tag: str = "",
    ) -> Artifact:
        return self.samples_of(self.policy(policy), split, num_samples, num_prompts, tag)

    def samples_of(
        self,
        art: Artifact,
        split: str,
        num_samples: int,
        num_prompts: int | None = None,
        tag: str = "",
    ) -> Artifact:
        """`samples` of any policy artifact (a recipe's intermediate iterate, say)."""
        offset = TRAIN_SEED_OFFSET if split == "train" else HELDOUT_SEED_OFFSET
        engine = self.parts.pool_engines.get(split)  # `pools.<split>`, else the job's engine
        context = {} if engine is None else {"engine": engine}
        spans = isinstance(engine or self.context.engine, SpansDevices)
        shards = stage_shards(self.launcher.trainer, spans)
        stage = SampleStage(split, num_samples, num_prompts, self.seed + offset, shards)
        label = f"sample/{self.label_of(art)}/{split}" + (f"/{tag}" if tag else "")
        return self.build(label, stage, {"data": self.data(), "policy": art}, **context)

    def reward(self, current: str = "sft") -> Artifact:
        """The reward model of `reward=`. `current` stands in for the recipe's "sft" policy
        (iterative AfD trains round k's reward model on round k-1's policy)."""
        name = self.label_of(self.policy(current))
        label = "reward" if name == "sft" else f"reward/{name}"
        return self._reward_node(label, self.parts.reward_config, current)

    def _reward_recipe(self, label: str, node):
        if label not in self._rewards:
            top = node is self.parts.reward_config
            self._rewards[label] = self.parts.reward if top else instantiate(node)
        return self._rewards[label]

    def _reward_node(self, label: str, node, current: str) -> Artifact:
        recipe = self._reward_recipe(label, node)
        swap = lambda name: current if name == "sft" else name  # noqa: E731
        upstream: dict[str, Artifact] = {"data": self.data()}
        # Composite rewards (ensembles, heterogeneous combinations) are built from parts, each
        # its own cached node, so a sweep over an ensemble's penalty trains none twice.
        if isinstance(recipe, CompositeReward):
            for name, part in recipe.parts().items():
                upstream[f"part/{name}"] = self._reward_node(f"{label}/{name}", part, current)
        num_prompts, per_prompt = recipe.rows_per_source()
        for role, source in recipe.sources().items():
            if source in ("demo", "pairs"):
                upstream[role] = self.data()
            else:
                upstream[role] = self.samples(swap(source), "train", per_prompt, num_prompts)
        for role, name in recipe.policies().items():
            upstream[role] = self.policy(swap(name))
        return self.build(label, recipe, upstream)

    def scores(self, rows: Artifact, scorer, label: str) -> Artifact:
        """Scores of a sample artifact's rows by the gold judge (`scorer="gold"`) or by a
        reward artifact."""
        if scorer == "gold":
            upstream = {"rows": rows, **self.gold_inputs()}
            stage = ScoreStage("samples", "gold", shards=self._score_shards())
            return self.build(f"score/gold/{label}", stage, upstream)
        upstream = {"rows": rows, "reward": scorer}
        stage = ScoreStage("samples", "reward", shards=self._score_shards())
        return self.build(f"score/reward/{label}", stage, upstream)

    def _score_shards(self) -> int:
        return stage_shards(self.launcher.trainer)

    def demo_scores(self, num_prompts: int | None) -> Artifact:
        """Gold scores of the first `num_prompts` held-out demonstrations."""
        stage = ScoreStage("demos", "gold", num_prompts, self._score_shards())
        upstream = {"rows": self.data(), **self.gold_inputs()}
        return self.build("score/gold/demo/heldout", stage, upstream)

    def policy_metrics(self, policy: str, pool: Artifact) -> Artifact:
        """div/* metrics (where the task knows its demonstrator), diversity, and KL to pi_SFT
        and to pi0 of a policy's held-out pool."""
        art = self.policy(policy)
        stage = PolicyMetricsStage(self.parts.coverage_samples)
        upstream = {"policy": art, "samples": pool}
        for name in REFERENCES:
            reference = self.policy(name)
            if reference.key != art.key:
                upstream[f"reference_{name}"] = reference
        return self.build(f"policy_metrics/{self.label_of(art)}", stage, upstream)
