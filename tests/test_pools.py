"""`pools.train` / `pools.heldout`: one kind of pool on another engine than `sampling=`, keyed
by that engine, with the job's sampling settings; bad values fail naming the key."""

import re
from types import SimpleNamespace

import pytest
from conftest import compose_config

from afd.core.cache import artifact_key
from afd.core.errors import ConfigError
from afd.models.generation.hf import HFEngine
from afd.models.generation.vllm import VLLMEngine
from afd.pipeline.graph import Pipeline
from afd.pipeline.validate import validate
from afd.reporting.tracking import Tracker

SMALL = ["logger=none", "data.task.num_corpus=50", "model.n_embd=64", "model.n_head=2"]


def sample_keys(tmp_path, *overrides) -> dict[str, tuple[str, object]]:
    """The key and engine of pi0's training and held-out pools, nothing built."""
    pipeline = Pipeline.from_config(compose_config([*SMALL, *overrides], tmp_path), Tracker())
    seen = {}
    build = pipeline.build

    def node(label, stage, config, upstream, make):
        key = artifact_key(stage, config, {k: a.key for k, a in upstream.items()})
        return SimpleNamespace(key=key, path=tmp_path / key)

    def recording_build(label, stage, upstream, **context):
        art = build(label, stage, upstream, **context)
        seen[label] = (art.key, context.get("engine", pipeline.parts.engine))
        return art

    pipeline._node, pipeline.build = node, recording_build
    init = pipeline.init_policy()
    pipeline.artifacts["init"] = init
    for split in ("train", "heldout"):
        pipeline.samples_of(init, split, 2)
    return {split: seen[f"sample/init/{split}"] for split in ("train", "heldout")}


def test_one_kind_of_pool_on_another_engine_is_keyed_by_it(tmp_path):
    plain = sample_keys(tmp_path)
    mixed = sample_keys(tmp_path, "pools.heldout=vllm", "sampling.temperature=0.7")
    hot = sample_keys(tmp_path, "sampling.temperature=0.7")
    assert isinstance(plain["heldout"][1], HFEngine) and isinstance(mixed["heldout"][1], VLLMEngine)
    # the training pools keep the job's engine and key; the held-out ones are vLLM's ...
    assert mixed["train"] == hot["train"] and isinstance(mixed["train"][1], HFEngine)
    assert mixed["heldout"][0] != hot["heldout"][0]
    # ... sampled with the job's settings, not vllm.yaml's
    assert mixed["heldout"][1].settings == hot["heldout"][1].settings
    assert mixed["heldout"][1].settings.temperature == 0.7
    # and a job whose engine is vLLM draws the same held-out pool
    assert (
        sample_keys(tmp_path, "sampling=vllm", "sampling.temperature=0.7")["heldout"][0]
        == (mixed["heldout"][0])
    )


@pytest.mark.parametrize(
    "override, message",
    [
        ("pools.heldout=sglang", "pools.heldout='sglang': no such engine (choose from ['hf',"),
        ("+pools.test=hf", "pools.test: no such kind of pool"),
    ],
)
def test_bad_pools_name_their_key(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(compose_config([*SMALL, override]))


def test_a_job_starts_its_vllm_engines_ahead_once_each(tmp_path, monkeypatch):
    """When a job starts its engines ahead, each engine that can does (vLLM's import overlaps
    the first stages): `sampling=` and a pool's engine each once; hf has nothing to start."""
    started = []
    monkeypatch.setattr(VLLMEngine, "start_standby", lambda self: started.append(self))
    parts = validate(compose_config([*SMALL, "sampling=vllm", "pools.heldout=vllm"], tmp_path))
    parts.start_engines()
    assert len(started) == 2 and started[0] is parts.engine
    assert started[1] is parts.pool_engines["heldout"]
    started.clear()
    validate(compose_config([*SMALL, "pools.heldout=vllm"], tmp_path)).start_engines()
    assert len(started) == 1 and isinstance(started[0], VLLMEngine)
    started.clear()
    parts = validate(compose_config(SMALL, tmp_path))
    parts.start_engines()
    assert isinstance(parts.engine, HFEngine) and started == []


def test_no_engine_starts_ahead_where_a_slurm_job_s_tasks_sample_shards(tmp_path, monkeypatch):
    """On a multi-task SLURM job each task samples its shard with an engine of its own."""
    import afd.runtime.sharding as sharding

    started = []
    monkeypatch.setattr(VLLMEngine, "start_standby", lambda self: started.append(self))
    monkeypatch.setattr(sharding.ranks, "leader", lambda: object())
    monkeypatch.setattr(sharding.ranks, "slurm_tasks", lambda: 2)
    validate(compose_config([*SMALL, "sampling=vllm"], tmp_path)).start_engines()
    assert started == []


def test_engines_start_at_the_first_stage_a_job_builds(tmp_path, monkeypatch):
    """A job starts its engines ahead when it first builds a stage, once; a job whose stages
    are all cached starts none (no import competing with the evaluation it reads back)."""
    started = []
    monkeypatch.setattr(VLLMEngine, "start_standby", lambda self: started.append(self))
    cfg = compose_config([*SMALL, "sampling=vllm"], tmp_path)
    built = Pipeline.from_config(cfg, Tracker())
    built.data()
    built.corpus()
    assert started == [built.parts.engine]
    cached = Pipeline.from_config(cfg, Tracker())
    cached.data()
    cached.corpus()
    assert cached.status == {"data": "cached", "corpus": "cached"}
    assert started == [built.parts.engine]


def test_device_checks_wait_for_the_node_when_a_sweep_goes_to_slurm(tmp_path, monkeypatch):
    """A sweep submitted from a login node without GPUs is not held to what vLLM cannot do on
    CPU: the job checks again as it starts on its node, before any stage."""
    import torch

    import afd.pipeline.validate as validation

    tp2 = ["sampling=vllm", "sampling.tensor_parallel_size=2"]
    monkeypatch.setattr(validation, "inference_device", lambda: torch.device("cpu"))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(ConfigError, match="on CPU the vLLM engine runs in one process"):
        validate(compose_config([*SMALL, *tp2], tmp_path))
    cfg = compose_config([*SMALL, *tp2, "+cluster=slurm"], tmp_path)
    assert validate(cfg).engine.tensor_parallel_size == 2
    monkeypatch.setenv("SLURM_JOB_ID", "42")  # the job on its node (one without a GPU)
    with pytest.raises(ConfigError, match="sampling.tensor_parallel_size=2, but on CPU"):
        validate(cfg)
