"""Sample pools and their scores split over the tasks of a multi-task SLURM job (task 0, this
process, and a follower task, a subprocess with its own SLURM rank) or over the devices of one
node (a process per device): each samples (and scores) a contiguous shard, and the job joins
them into one artifact in order."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
from conftest import ROOT, TINY, compose_config

from afd.core.artifacts import read_samples, read_scores
from afd.models.batching import encode_prompt
from afd.models.generation.hf import HFGenerator
from afd.models.loading import load_policy
from afd.models.tokenizers import load_tokenizer
from afd.pipeline.graph import HELDOUT_SEED_OFFSET, Pipeline
from afd.reporting.tracking import Tracker
from afd.runtime import ranks
from afd.runtime.sharding import (
    DEVICES,
    device_env,
    local_devices,
    run_sharded,
    shard_folder,
    stage_shards,
)
from afd.tasks.data_dir import DataDir

SAMPLES = 3


@pytest.mark.slow
def test_a_pool_is_sampled_in_shards_by_every_task_and_joined_in_order(tmp_path, monkeypatch):
    # one task per device: the job's trainer has two (its training stages are not at issue)
    cfg = compose_config([*TINY, "trainer=ddp", "trainer.accelerator=cpu"], tmp_path / "cache")
    one_task = Pipeline.from_config(cfg, Tracker())
    init = one_task.init_policy()  # pretrained before there are tasks
    whole = one_task.samples_of(init, "heldout", SAMPLES)
    task = {"SLURM_NTASKS": "2", "SLURM_JOB_ID": "91", "SLURM_JOB_NAME": "train"}
    for key, value in {**task, "SLURM_PROCID": "0"}.items():
        monkeypatch.setenv(key, value)
    env = {**os.environ, "SLURM_PROCID": "1", "SLURM_LOCALID": "1", "PYTHONPATH": str(ROOT)}
    follow = f"from afd.runtime.follow import follow; follow({cfg.cache_dir!r})"
    follower = subprocess.Popen([sys.executable, "-c", follow], env=env)
    try:
        with ranks.leading(cfg.cache_dir):
            two_tasks = Pipeline.from_config(cfg, Tracker())
            assert two_tasks.init_policy().key == init.key  # only pools are sharded
            pool = two_tasks.samples_of(two_tasks.init_policy(), "heldout", SAMPLES)
            gold = two_tasks.scores(pool, "gold", "init/heldout")
        assert follower.wait(timeout=300) == 0
    finally:
        follower.kill()
    assert pool.status == "trained" and pool.key != whole.key  # hf's draws depend on the split
    assert pool.manifest["metrics"]["shards"] == 2
    # its gold scores, scored in two shards, are the ones of one process (not keyed by shards)
    assert gold.manifest["metrics"]["shards"] == 2
    one_process = one_task.scores(pool, "gold", "init/heldout/again")
    assert one_process.key == gold.key and one_process.status == "cached"
    expected = one_task.context.gold.get().score(read_samples(pool.path))
    assert read_scores(gold.path).tolist() == pytest.approx(list(expected))
    data = DataDir(two_tasks.data().path)
    examples = data.examples("heldout")
    rows = read_samples(pool.path)
    assert [r["prompt_id"] for r in rows] == [e.id for e in examples for _ in range(SAMPLES)]
    assert [r["sample"] for r in rows] == list(range(SAMPLES)) * len(examples)
    # each half is what its task's engine draws for its prompts, the second half from streams
    # of its own (first = its first prompt's index in the pool)
    ctx = two_tasks.context
    tokenizer = load_tokenizer(init.path)
    model = load_policy(init.path, tokenizer, ctx.load.dtype, ctx.load.trust_remote_code)
    generator = HFGenerator(model, tokenizer, ctx.engine.settings, 512, progress=False)
    seed = cfg.seed + HELDOUT_SEED_OFFSET
    half = (len(examples) + 1) // 2
    for first, part in ((0, examples[:half]), (half, examples[half:])):
        prompts = [encode_prompt(tokenizer, e.prompt, ctx.lengths) for e in part]
        drawn = generator.generate(prompts, SAMPLES, seed, data.demonstrator_only_tokens, first)
        expected = [c.token_ids for replies in drawn for c in replies]
        got = rows[first * SAMPLES : (first + len(part)) * SAMPLES]
        assert [r["token_ids"] for r in got] == expected, first


@pytest.mark.slow
def test_a_pool_and_its_scores_are_split_over_the_devices_of_one_node(tmp_path, monkeypatch):
    """A job on one node with several devices starts one shard process per device itself
    (`AFD_INFERENCE_DEVICES` names two CPU "devices" here): the pool is the one two SLURM
    tasks draw (same shards, same seeds, same key), and its scores those of one process."""
    cfg = compose_config(TINY, tmp_path / "cache")
    one_process = Pipeline.from_config(cfg, Tracker())
    init = one_process.init_policy()
    whole = one_process.samples_of(init, "heldout", SAMPLES)
    monkeypatch.setenv(DEVICES, "cpu,cpu")
    two_devices = Pipeline.from_config(cfg, Tracker())
    pool = two_devices.samples_of(two_devices.init_policy(), "heldout", SAMPLES)
    gold = two_devices.scores(pool, "gold", "init/heldout")
    assert pool.status == "trained" and pool.key != whole.key  # hf's draws depend on the split
    assert pool.manifest["metrics"]["shards"] == 2 and gold.manifest["metrics"]["shards"] == 2
    assert not list((tmp_path / "cache").rglob("*.shards")) and not list(
        (tmp_path / "cache").rglob("*.launch")
    )
    rows = read_samples(pool.path)
    data = DataDir(two_devices.data().path)
    examples = data.examples("heldout")
    assert [r["prompt_id"] for r in rows] == [e.id for e in examples for _ in range(SAMPLES)]
    # the second half is the second device's: its prompts drawn from their own streams
    ctx = two_devices.context
    tokenizer = load_tokenizer(init.path)
    model = load_policy(init.path, tokenizer, ctx.load.dtype, ctx.load.trust_remote_code)
    generator = HFGenerator(model, tokenizer, ctx.engine.settings, 512, progress=False)
    half = (len(examples) + 1) // 2
    prompts = [encode_prompt(tokenizer, e.prompt, ctx.lengths) for e in examples[half:]]
    drawn = generator.generate(
        prompts, SAMPLES, cfg.seed + HELDOUT_SEED_OFFSET, data.demonstrator_only_tokens, half
    )
    assert [r["token_ids"] for r in rows[half * SAMPLES :]] == [
        c.token_ids for replies in drawn for c in replies
    ]
    expected = one_process.context.gold.get().score(rows)
    assert read_scores(gold.path).tolist() == pytest.approx(list(expected))


def test_the_devices_a_job_shards_over(monkeypatch):
    monkeypatch.delenv("AFD_INFERENCE_DEVICE", raising=False)
    monkeypatch.delenv(DEVICES, raising=False)
    assert local_devices({"devices": 4}) == ["cpu"]  # one process computes on every core
    assert stage_shards({"devices": 4}) == 1
    monkeypatch.setenv("AFD_INFERENCE_DEVICE", "cuda:1")
    assert local_devices({"devices": 4}) == ["cuda:1"]
    monkeypatch.setenv(DEVICES, "cuda:0, cuda:2")
    assert local_devices({"devices": 1}) == ["cuda:0", "cuda:2"]
    assert stage_shards({"devices": 1}) == 2
    assert stage_shards({"devices": 1}, spans_devices=True) == 1  # vLLM's own data parallel
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6")
    assert device_env("cuda:2") == {"CUDA_VISIBLE_DEVICES": "6", "AFD_INFERENCE_DEVICE": "cuda"}
    assert device_env("cpu") == {"AFD_INFERENCE_DEVICE": "cpu"}


@dataclass
class FailsOnShardOne:
    """A stage whose second shard fails."""

    shards: int = 2

    def build_shard(self, shard_dir, ctx, inputs, shard):
        if shard == 1:
            raise ValueError("shard one cannot be built")
        shard_folder(shard_dir, shard).mkdir()

    def gather(self, out_dir, shard_dir):
        return {}


def test_a_failed_shard_process_names_its_shard_and_its_error(tmp_path, monkeypatch):
    monkeypatch.setenv(DEVICES, "cpu,cpu")
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests"))  # the stage's module, in the shards
    with pytest.raises(RuntimeError, match="shard 1 failed.*shard one cannot be built"):
        run_sharded(FailsOnShardOne(), tmp_path / "out", None, {}, {"accelerator": "cpu"})
    assert not (tmp_path / "out.shards").exists() and not (tmp_path / "out.launch").exists()


def test_a_follower_tasks_failed_shard_is_named_by_task_zero(tmp_path, monkeypatch):
    """Under SLURM every task builds its shard in its own process; task 0 names the error of
    the follower's, which gives up instead of waiting for more calls."""
    for key, value in {
        "SLURM_NTASKS": "2",
        "SLURM_JOB_ID": "92",
        "SLURM_JOB_NAME": "train",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SLURM_PROCID", "0")
    env = {**os.environ, "SLURM_PROCID": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    follow = f"from afd.runtime.follow import follow; follow({str(tmp_path)!r})"
    follower = subprocess.Popen([sys.executable, "-c", follow], env=env, stderr=subprocess.PIPE)
    try:
        with ranks.leading(tmp_path):
            with pytest.raises(
                RuntimeError, match="task 1 failed its shard: ValueError: shard one"
            ):
                run_sharded(FailsOnShardOne(), tmp_path / "out", None, {}, {"accelerator": "cpu"})
        assert follower.wait(timeout=120) != 0
        assert b"shard one cannot be built" in follower.stderr.read()
    finally:
        follower.kill()
    assert not (tmp_path / "out.shards").exists()
