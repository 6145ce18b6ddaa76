"""Shared fixtures: composed configs at test sizes and tiny in-process models.

Nothing here touches the network: tokenizers are built from the synthetic task's
vocabulary or trained on the fly, models from small GPT2Configs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from transformers import GPT2Config, GPT2LMHeadModel

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Under pytest-xdist (scripts/test.sh) the cores are shared between the workers: each computes
# with its share, and so do the jobs and workers it starts (OMP_NUM_THREADS), instead of every
# process spinning threads on every core.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, min(2, (os.cpu_count() or 1) // WORKERS))
torch.set_num_threads(THREADS)
if WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

# The test files that take longest (`--durations`, 2 idle cores), slowest first: pytest-xdist
# hands whole files to its workers in collection order (scripts/test.sh), so starting these
# first lets the workers finish together instead of one ending on a long file alone.
SLOWEST_FIRST = (
    "test_real_model.py",
    "test_distributed_stages.py",
    "test_slurm.py",
    "test_faults.py",
    "test_cli.py",
    "test_engines.py",
    "test_strategies.py",
    "test_adversarial.py",
    "test_science.py",
    "test_launch.py",
    "test_sharding.py",
    "test_frontier_study.py",
    "test_divergence_study.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable within a file


# A whole toy pipeline in seconds: few prompts, a very small model, short schedules.
TINY = [
    "data.task.num_train_prompts=240",
    "data.task.num_heldout_prompts=6",
    "data.task.num_corpus=1200",
    "data.task.num_pairs=120",
    "model.n_embd=32",
    "model.n_head=2",
    "model.n_layer=1",
    "pretrain.schedule.epochs=1",
    "sft.schedule.epochs=1",
    "reward.num_prompts=60",
    "bon.n_max=8",
    "eval.coverage_samples=8",
    "n=4",
    "eval.init_samples_per_prompt=2",
    "logger=none",
    "progress=false",
]


def stage_context(**fields):
    """A stage's context for a test that builds a stage directly (seed 0, no progress bars)."""
    from afd.core.context import StageContext

    return StageContext(**{"seed": 0, "progress": False, **fields})


def hf_sample(model, tok, prompts, num_samples, lengths, seed=0, banned=(), **settings):
    """`num_samples` completions per prompt text from the `hf` engine's generator."""
    from afd.models.batching import encode_prompt
    from afd.models.generation.hf import HFGenerator
    from afd.models.generation.settings import SamplingSettings

    defaults = {"max_new_tokens": 6, "temperature": 1.0, "top_p": 1.0, "top_k": 0}
    batch_size = settings.pop("batch_size", 512)
    generator = HFGenerator(
        model, tok, SamplingSettings(**{**defaults, **settings}), batch_size, progress=False
    )
    ids = [encode_prompt(tok, p, lengths) for p in prompts]
    return generator.generate(ids, num_samples, seed, banned)


def compose_config(overrides: list[str], cache_dir: Path | None = None):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        extra = [f"cache_dir={cache_dir}"] if cache_dir else []
        return compose(config_name="config", overrides=[*overrides, *extra])


@pytest.fixture(scope="session")
def toy_cache(tmp_path_factory):
    """One stage cache for the full-size synthetic-task runs, so they share pi0: one for all
    xdist workers (beside their own temporary folders), whose file locks let one worker
    build what another waits for."""
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if WORKERS > 1 else base) / "toy_cache"
    shared.mkdir(exist_ok=True)
    return shared


@pytest.fixture
def tiny_cfg(tmp_path):
    def make(*overrides: str, drop: tuple[str, ...] = ()):
        base = [o for o in TINY if not o.startswith(drop)] if drop else TINY
        cfg = compose_config([*base, *overrides], tmp_path / "cache")
        from omegaconf import open_dict

        with open_dict(cfg):
            cfg.output_dir = str(tmp_path / "out")
        return cfg

    return make


@pytest.fixture(scope="session")
def toy_tokenizer():
    from afd.models.tokenizers import word_tokenizer
    from afd.tasks.toy.grammar import vocabulary

    return word_tokenizer(vocabulary())


def tiny_lm(vocab_size: int, pad_id: int, eos_id: int, seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        bos_token_id=eos_id,
    )
    return GPT2LMHeadModel(config).eval()


@pytest.fixture
def toy_lm(toy_tokenizer):
    return tiny_lm(len(toy_tokenizer), toy_tokenizer.pad_token_id, toy_tokenizer.eos_token_id)


@pytest.fixture(scope="session")
def tiny_hh_models(tmp_path_factory):
    """Local stand-ins for gpt2, the golden reward models and Gemma (tests/tiny_hf.py)."""
    from tiny_hf import save_tiny_hh_models

    return save_tiny_hh_models(tmp_path_factory.mktemp("hh_models"))


@pytest.fixture
def launched(monkeypatch):
    """Records the build functions the pipeline hands to its StageLauncher, which runs them in
    worker processes under a distributed trainer: the training stages and nothing else."""
    from afd.runtime.launch import StageLauncher

    calls: list[str] = []
    original = StageLauncher.run

    def run(self, fn, out_dir, *args, **kwargs):
        calls.append(f"{fn.__module__}.{fn.__qualname__}")
        return original(self, fn, out_dir, *args, **kwargs)

    monkeypatch.setattr(StageLauncher, "run", run)
    return calls


def execute_notebook(name: str, sweep: Path) -> str:
    """Run notebooks/NAME.ipynb on `sweep` (as AFD_SWEEP_DIR) and return the text of its
    outputs, having checked that no cell failed and that it drew its two figures."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    os.environ["AFD_SWEEP_DIR"] = str(sweep)
    try:
        NotebookClient(
            nb,
            timeout=600,
            kernel_name="python3",
            resources={"metadata": {"path": str(ROOT / "notebooks")}},
        ).execute()
    finally:
        del os.environ["AFD_SWEEP_DIR"]
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum(o.output_type == "display_data" and "image/png" in o.data for o in outputs) == 2
    text = "".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs
    )
    return text
