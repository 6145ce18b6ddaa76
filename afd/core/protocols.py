"""What each swappable part provides, declared once. A part is used through these names;
nothing probes an object for what it can do.

- a task (`data=`) builds its splits; some also build a pretraining corpus, know their
  demonstrator exactly, or load from the Hugging Face Hub;
- a model spec (`model=`) is built from scratch (then pretrained) or loaded;
- a scorer (gold judges, reward models) maps (prompt, response) rows to numbers;
- a generation engine (`sampling=`) opens a generator on a policy directory;
- a stage (every recipe, and the pipeline's own data, sample and score stages) builds one
  artifact from a context and its inputs; reward and policy recipes are stages with more
  to say;
- the graph is what a recipe may ask for its inputs.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable


@runtime_checkable
class Fingerprinted(Protocol):
    """Decides its own cache-key identity (see afd.core.config.fingerprint)."""

    def fingerprint(self) -> Any: ...


# -- data ----------------------------------------------------------------------------------
class Task(Protocol):
    name: str

    def build(self) -> Any:
        """The task's splits as a TaskData (train and held-out demonstrations, pairs, info)."""


@runtime_checkable
class HasCorpus(Protocol):
    """A task that pretrains its own initial policy (the synthetic task)."""

    def build_corpus(self) -> Any: ...

    def corpus_config(self) -> dict:
        """The knobs the corpus reads: its cache key, so other knobs reuse pi0."""


@runtime_checkable
class Demonstrator(Protocol):
    """A demonstrator beta(y|x) known exactly, over an enumerable support."""

    def support(self, meta: dict) -> dict[str, float]: ...

    def log_prob(self, meta: dict, response: str) -> float: ...

    def modes(self, meta: dict) -> dict[str, float]: ...


@runtime_checkable
class KnowsDemonstrator(Protocol):
    demonstrator: Demonstrator


@runtime_checkable
class UsesHub(Protocol):
    """Loads something by Hugging Face Hub id (checked before any stage runs)."""

    def hub_resources(self) -> list: ...


# -- models --------------------------------------------------------------------------------
@runtime_checkable
class BuiltFromScratch(Protocol):
    """A model spec whose initial policy the `pretrain` stage trains on the task's corpus."""

    def build_tokenizer(self, vocabulary: list[str] | None, texts) -> Any: ...

    def build(self, tokenizer) -> Any: ...

    def options(self) -> Any: ...

    def context_length(self) -> int | None: ...

    def attention_head_size(self) -> int: ...

    def dialogue_format(self) -> Any: ...


@runtime_checkable
class Pretrained(Protocol):
    """A model spec that loads existing weights as the initial policy."""

    name_or_path: str

    def source(self) -> Any:
        """What identifies the weights (path or Hub id, and revision or file hash)."""

    def options(self) -> Any: ...

    def context_length(self) -> int | None:
        """Positions the model attends to, where known before loading it."""

    def attention_head_size(self) -> int | None:
        """The width of one attention head, where known before loading it."""

    def dialogue_format(self) -> Any:
        """How the policy reads a dialogue (afd/models/dialogue.py)."""

    def uses_gguf(self, unavailable: set[str]) -> bool:
        """Whether its weights come from a GGUF file (afd/models/gguf.py) rather than
        `name_or_path`, given the Hub ids out of reach."""

    def conversion(self) -> tuple:
        """(GGUFSource, identity) of the conversion stage, when `uses_gguf`."""


@runtime_checkable
class TrainedJudge(Protocol):
    """A gold judge trained by the pipeline (its own cached stage) before it scores."""

    backbone: Any  # the model spec it reads text through

    def scorer(self, judge_dir: str | Path) -> Any:
        """The trained judge in `judge_dir` as a Scorer."""


class Scorer(Protocol):
    def score(self, rows: list[dict]) -> Any:
        """One number per row ({"prompt", "response", ...}), as a float array."""


class Generator(Protocol):
    """Samples replies from one policy."""

    tokenizer: Any  # encodes the prompts it is given

    def generate(
        self,
        prompts: list[list[int]],
        num_samples: int,
        seed: int,
        banned_tokens=(),
        first: int = 0,
    ) -> list[list[Any]]:
        """For each prompt (token ids), `num_samples` Completions, in order. `first` is the
        index of the first prompt in the whole pool, when these are one shard of it."""


class GenerationEngine(Protocol):
    """`sampling=`: the settings every engine honours, and how it opens a policy."""

    settings: Any  # SamplingSettings

    def open(
        self, policy_path: str | Path, load: Any, settings: Any, progress: bool = True
    ) -> AbstractContextManager[Generator]: ...


@runtime_checkable
class SpansDevices(Protocol):
    """An engine that spreads over several devices of a node (vLLM's data parallel)."""

    def on_one_device(self) -> Any:
        """The same engine on one device: what each task of a multi-task job runs."""


@runtime_checkable
class StartsAhead(Protocol):
    """An engine whose start-up is mostly work done before any policy is known (vLLM's
    import), which it can begin in the background."""

    def start_standby(self) -> None:
        """Begin that work now, so that the next `open()` only loads its policy."""


@runtime_checkable
class ChecksPolicy(Protocol):
    """An engine that cannot run every policy everywhere, and says so before any stage runs."""

    def check_policy(self, head_size: int | None, key: str, on_cpu: bool) -> None:
        """Raise ConfigError naming `key` (or the engine's own key) if a policy of this head
        size cannot run on this engine, on CPU or on GPUs."""


# -- stages and recipes --------------------------------------------------------------------
@runtime_checkable
class ShardedStage(Protocol):
    """A stage whose work splits over devices (the tasks of a multi-task SLURM job, or one
    process per GPU of one node): each builds one shard, then the job joins them into the
    artifact."""

    shards: int  # the devices it splits over; 1: built whole by `build`

    def build_shard(self, shard_dir: Path, ctx: Any, inputs: dict[str, Path], shard: int) -> None:
        """Write shard number `shard` of the artifact under `shard_dir`."""

    def gather(self, out_dir: Path, shard_dir: Path) -> dict:
        """Join the shards under `shard_dir` into the artifact in `out_dir`; its metrics."""


class Stage(Protocol):
    """One cached artifact. `build(out_dir, ctx, inputs)` writes it and returns its metrics.

    `ctx` holds only the context fields named in `reads` and `inputs` the paths of the
    upstream artifacts; the cache key hashes exactly the stage's own fields, those context
    fields and the upstream keys, so nothing that changes the artifact is left out of it.
    """

    stage: ClassVar[str]  # the cache folder
    reads: ClassVar[tuple[str, ...]]
    trains: ClassVar[bool]  # runs in training worker processes under a distributed trainer

    def build(self, out_dir: Path, ctx: Any, inputs: dict[str, Path]) -> dict: ...


class RewardRecipe(Stage, Protocol):
    """`reward=`: a reward model trained (or formed) from rows of its sources."""

    name: str

    def sources(self) -> dict[str, str]:
        """Row sources by role: "positive"/"negative" -> demo | init | sft, or "pairs"."""

    def policies(self) -> dict[str, str]:
        """Policies it loads by role (e.g. "backbone" -> sft)."""

    def rows_per_source(self) -> tuple[int | None, int]:
        """(training prompts, samples per prompt) its sampled sources need."""


@runtime_checkable
class CompositeReward(Protocol):
    """A reward made of other reward recipes, each its own cached artifact."""

    def parts(self) -> dict[str, Any]:
        """Part name -> reward recipe config node."""


class PolicyRecipe(Protocol):
    """`divergence=`: how the job's policy is trained from the demonstrations."""

    name: str
    level: str

    def policy(self, graph: Graph) -> Any:
        """The policy's artifact, built (or reused) through `graph`."""


class Graph(Protocol):
    """What a recipe may ask of the pipeline for its inputs."""

    def data(self) -> Any: ...

    def policy(self, name: str) -> Any:
        """init, sft, policy, or round/<k>."""

    def samples(
        self,
        policy: str,
        split: str,
        num_samples: int,
        num_prompts: int | None = None,
        tag: str = "",
    ) -> Any:
        """`num_samples` replies of a named policy to a split's prompts."""

    def samples_of(
        self,
        art: Any,
        split: str,
        num_samples: int,
        num_prompts: int | None = None,
        tag: str = "",
    ) -> Any:
        """The same for any policy artifact (a recipe's own intermediate iterate)."""

    def reward(self, current: str = "sft") -> Any: ...

    def scores(self, rows: Any, scorer: Any, label: str) -> Any:
        """Scores of a sample artifact's rows by "gold" or by a reward artifact."""

    def label_of(self, artifact: Any) -> str:
        """A policy artifact's name in this job (e.g. "sft")."""

    def gold_inputs(self) -> dict[str, Any]:
        """The upstream a stage that reads the gold judge needs (a trained judge's artifact)."""

    def build(self, label: str, stage: Stage, upstream: dict[str, Any], **context: Any) -> Any:
        """The artifact `stage` builds from `upstream` (context overrides, e.g. a seed)."""
