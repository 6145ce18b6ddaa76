"""The plumbing of multi-process training stages, without training: trainer configs, global
batch sharding, the worker launch of a stage call, SLURM follower tasks and config checks."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from conftest import TINY, compose_config
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from afd.core.errors import ConfigError
from afd.pipeline.validate import validate
from afd.reporting.tracking import StageLogger, Tracker
from afd.runtime import follow as following
from afd.runtime import ranks
from afd.runtime.launch import StageLauncher, needs_workers, processes
from afd.runtime.trainer import ShardedBatches

TESTS = Path(__file__).resolve().parent
TRAINERS = [
    "cpu",
    "gpu",
    "ddp",
    "deepspeed_stage_2",
    "deepspeed_stage_2_offload",
    "deepspeed_stage_3",
    "deepspeed_stage_3_offload",
]


@pytest.mark.parametrize("name", TRAINERS)
def test_trainer_configs_compose_and_build_their_strategy(name):
    trainer = compose_config([f"trainer={name}"]).trainer
    assert processes(trainer) == trainer.devices * trainer.num_nodes
    assert needs_workers(trainer) == (name not in ("cpu", "gpu"))
    strategy = trainer.strategy
    if name.startswith("deepspeed"):
        built = instantiate(strategy)
        zero = built.config["zero_optimization"]
        assert zero["stage"] == int(name.split("_")[2])
        assert ("offload_optimizer" in zero) == name.endswith("offload")
        assert ("offload_param" in zero) == (name == "deepspeed_stage_3_offload")


def test_sharded_batches_split_each_global_batch():
    rows = list(range(50))

    def batches(rank, world, seed=3):
        generator = torch.Generator().manual_seed(seed)
        sampler = BatchSampler(RandomSampler(rows, generator=generator), 8, drop_last=True)
        loader = DataLoader(
            rows, batch_sampler=ShardedBatches(sampler, rank, world), generator=generator
        )
        return [b.tolist() for epoch in range(2) for b in loader]

    one = batches(0, 1)
    # One process draws exactly what DataLoader(shuffle=True, generator=seeded) draws.
    generator = torch.Generator().manual_seed(3)
    plain = DataLoader(rows, batch_size=8, shuffle=True, drop_last=True, generator=generator)
    assert one == [b.tolist() for epoch in range(2) for b in plain]
    halves = [batches(r, 2) for r in (0, 1)]
    assert len(halves[0]) == len(halves[1]) == len(one) == 12
    for whole, a, b in zip(one, *halves, strict=True):
        assert len(a) == len(b) == 4 and sorted(a + b) == sorted(whole)


def record_stage(out_dir: Path, value: float, logger=None, note: str = "") -> dict:
    """A stage build function run through the launcher: writes a file, logs two steps."""
    (out_dir / "artifact.txt").write_text(f"{value} {note}")
    for step in (0, 1):
        logger.log_metrics({"train/loss": value + step}, step=step)
    return {"value": value, "from_pid": __import__("os").getpid()}


def test_stage_call_runs_in_a_worker_and_replays_its_logs(tmp_path, monkeypatch):
    import os

    class Recorder(Tracker):
        def __init__(self):
            self.rows = []

        def log(self, metrics, step_key=None, step=None):
            self.rows.append((step_key, step, metrics))

    monkeypatch.setenv("PYTHONPATH", str(TESTS))  # the worker imports this module by name
    tracker = Recorder()
    out = tmp_path / "artifact.tmp-1"
    out.mkdir()
    launcher = StageLauncher({"devices": 1, "num_nodes": 1, "strategy": "ddp"})
    metrics = launcher.run(record_stage, out, 2.5, StageLogger(tracker, "sft"), note="hi")
    assert metrics["value"] == 2.5 and metrics["from_pid"] != os.getpid()
    assert (out / "artifact.txt").read_text() == "2.5 hi"
    assert tracker.rows == [
        ("sft/step", 0, {"sft/train/loss": 2.5}),
        ("sft/step", 1, {"sft/train/loss": 3.5}),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact.tmp-1"]  # call files gone


def failing_stage(out_dir: Path) -> dict:
    raise ValueError("this stage cannot train")


def test_worker_failure_names_the_stage_and_the_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    launcher = StageLauncher({"devices": 1, "strategy": "ddp"})
    with pytest.raises(RuntimeError, match="failing_stage failed .*ValueError: this stage cannot"):
        launcher.run(failing_stage, tmp_path / "out")


def stage_that_dies_at_exit(out_dir: Path) -> dict:
    """Finishes its work, then its process aborts at interpreter exit, as a native thread torn
    down while still running does."""
    import atexit
    import os

    (out_dir / "artifact.txt").write_text("done")
    atexit.register(os.abort)
    return {"value": 1.0}


def test_death_after_a_finished_stage_keeps_its_work(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    out = tmp_path / "out"
    out.mkdir()
    launcher = StageLauncher({"devices": 1, "strategy": "ddp"})
    with caplog.at_level("WARNING", logger="afd.runtime.workers"):
        metrics = launcher.run(stage_that_dies_at_exit, out)
    assert metrics == {"value": 1.0}
    assert (out / "artifact.txt").read_text() == "done"
    assert "exited with code -6 after finishing the stage" in caplog.text


def stage_that_dies_midway(out_dir: Path) -> dict:
    import os

    os.abort()  # no traceback, no result: what a segfault leaves


def test_death_inside_a_stage_fails_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    launcher = StageLauncher({"devices": 1, "strategy": "ddp"})
    with pytest.raises(RuntimeError, match="exit code -6.*no traceback recorded"):
        launcher.run(stage_that_dies_midway, tmp_path / "out")


def stage_with_a_process_group(out_dir: Path, probe: Path) -> dict:
    """Joins a one-process gloo group, as Lightning does, and records at interpreter exit
    whether the group was still alive."""
    import atexit

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{out_dir / 'store'}", rank=0, world_size=1)
    atexit.register(lambda: probe.write_text(str(dist.is_initialized())))
    return {}


def test_worker_leaves_its_process_group_before_exit(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    out, probe = tmp_path / "out", tmp_path / "probe.txt"
    out.mkdir()
    StageLauncher({"devices": 1, "strategy": "ddp"}).run(stage_with_a_process_group, out, probe)
    assert probe.read_text() == "False"


def slurm_task(monkeypatch, rank: int, tasks: int = 2):
    monkeypatch.setenv("SLURM_NTASKS", str(tasks))
    monkeypatch.setenv("SLURM_PROCID", str(rank))
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")


def test_follower_runs_every_published_call_then_stops(tmp_path, monkeypatch):
    slurm_task(monkeypatch, rank=1)
    assert ranks.is_follower() and ranks.slurm_tasks() == 2
    ran = []
    monkeypatch.setattr(following, "run_call", lambda path: ran.append(path.name))
    leader = ranks.Leader(ranks.rendezvous_dir(tmp_path))
    assert leader.directory == tmp_path.resolve() / ".ranks" / "77.0.0"

    def lead():
        leader.start()
        for _ in range(3):
            leader.next_call().write_bytes(b"call")
        leader.finish()

    thread = threading.Thread(target=lead)
    thread.start()
    assert following.follow(tmp_path) == 3
    thread.join()
    assert ran == ["0000.call", "0001.call", "0002.call"]


def test_follower_gives_up_without_a_leader(tmp_path, monkeypatch):
    slurm_task(monkeypatch, rank=1)
    with pytest.raises(RuntimeError, match="stopped its heartbeat"):
        following.follow(tmp_path, stale_s=1.0)


def test_interactive_slurm_shell_is_not_a_multi_task_job(monkeypatch):
    slurm_task(monkeypatch, rank=1)
    monkeypatch.setenv("SLURM_JOB_NAME", "interactive")
    assert not ranks.external_ranks() and not ranks.is_follower()


@pytest.mark.parametrize(
    "overrides, env_tasks, message",
    [
        (
            ["trainer=ddp", "trainer.devices=3"],
            None,
            "pretrain.schedule.batch_size=64 is the global",
        ),
        (["trainer=ddp", "trainer.num_nodes=2"], None, "trainer.num_nodes=2 needs SLURM"),
        (
            ["trainer=ddp"],
            4,
            "this SLURM job has 4 tasks but trainer.devices x trainer.num_nodes = 2",
        ),
        (["trainer=ddp", "trainer.devices=auto"], None, "trainer.devices must be an integer"),
        # every training stage's global batch: ensemble members, heterogeneous parts, rounds
        (
            [
                "trainer=ddp",
                "trainer.devices=4",
                "reward=ensemble",
                "reward.member.schedule.batch_size=30",
            ],
            None,
            "reward.member.schedule.batch_size=30",
        ),
        (
            [
                "trainer=ddp",
                "trainer.devices=4",
                "reward=irl_bt",
                "reward.components.bt.schedule.batch_size=6",
            ],
            None,
            "reward.components.bt.schedule",
        ),
        (
            ["trainer=ddp", "trainer.devices=4", "rounds=2", "iterate.schedule.batch_size=30"],
            None,
            "iterate.schedule.batch_size=30",
        ),
    ],
)
def test_bad_process_counts_fail_before_any_work(overrides, env_tasks, message, monkeypatch):
    if env_tasks:
        slurm_task(monkeypatch, rank=0, tasks=env_tasks)
    size = [o for o in TINY if not o.startswith("reward.num_prompts")]  # composites have none
    cfg = compose_config([*size, *overrides])
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        validate(cfg)


def test_two_processes_validate(monkeypatch):
    slurm_task(monkeypatch, rank=0, tasks=2)
    validate(compose_config([*TINY, "trainer=deepspeed_stage_3"]))
    # a round's batch counts only when there are rounds
    validate(compose_config([*TINY, "trainer=ddp", "iterate.schedule.batch_size=31"]))


def test_crash_hook_matches_only_its_jobs():
    from afd.runtime.faults import CrashJob

    hook = CrashJob(when=OmegaConf.create({"n": 4, "reward.name": "init_sft"}))
    assert hook.matches(compose_config(["n=4"]))
    assert not hook.matches(compose_config(["n=8"]))
    with pytest.raises(ValueError, match="how must be one of"):
        CrashJob(when={}, how="explode")


@pytest.mark.parametrize(
    "trainer, gpus",
    [
        (["trainer=deepspeed_stage_3", "trainer.devices=4", "trainer.num_nodes=2"], 4),
        (["trainer=ddp", "trainer.accelerator=cpu"], None),
    ],
)
def test_cluster_config_asks_one_task_per_device(trainer, gpus, monkeypatch, tmp_path):
    from conftest import CONF
    from hydra import compose, initialize_config_dir

    import afd.train  # noqa: F401  registers the afd.gpus_per_node resolver

    monkeypatch.setenv("AFD_SHARED_DIR", str(tmp_path))
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["+cluster=slurm", *trainer], return_hydra_config=True)
    # Hydra resolves the launcher's config before it sets up HydraConfig: no ${hydra:...} here.
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    sweep_dir, cache_dir = str(cfg.hydra.sweep.dir), cfg.cache_dir
    assert launcher["_target_"].endswith("AfdSlurmLauncher")
    assert launcher["tasks_per_node"] == cfg.trainer.devices
    assert launcher["nodes"] == cfg.trainer.num_nodes
    assert launcher["gpus_per_node"] == gpus
    assert launcher["srun_args"] == ["--kill-on-bad-exit=1"] and launcher["max_num_timeout"] > 0
    assert cache_dir == f"{tmp_path}/.afd_cache"
    assert sweep_dir.startswith(f"{tmp_path}/multirun/")
