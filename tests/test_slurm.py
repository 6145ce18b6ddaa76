"""Sweeps on a real SLURM cluster: slurmctld, slurmd, slurmdbd and MariaDB on this machine.

The module's fixture starts a private cluster with slurm/localcluster/up.sh (installing the
Debian packages if needed: CI runs as root on a fresh machine) and stops it with down.sh, which
fails if a daemon survives. Sweeps go through `+cluster=slurm`, Hydra's submitit launcher and
the project's own configs, at the TINY test size.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import ROOT, TINY

LOCALCLUSTER = ROOT / "slurm" / "localcluster"
SIZE = [o for o in TINY if not o.startswith(("n=", "logger="))]
pytestmark = pytest.mark.slow


def free_port_base(tries: int = 50) -> int:
    """A base port whose next four ports (slurmctld, slurmd, slurmdbd, mariadb) are free."""
    for _ in range(tries):
        base = random.randrange(20000, 30000, 4)
        try:
            for port in range(base, base + 4):
                with socket.socket() as s:
                    s.bind(("0.0.0.0", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no four consecutive free ports")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("the local SLURM cluster needs root and apt (CI runs as root on Debian)")
    # Outside pytest's private temp dir: the munge and mysql users must reach their files.
    state = Path(f"/tmp/afd-slurm-pytest-{os.getpid()}")
    env = {**os.environ, "AFD_SLURM_DIR": str(state), "AFD_SLURM_PORT_BASE": str(free_port_base())}
    up = subprocess.run(
        [str(LOCALCLUSTER / "up.sh")], env=env, capture_output=True, text=True, timeout=900
    )
    try:
        assert up.returncode == 0, up.stderr[-4000:]
        for line in Path(up.stdout.strip()).read_text().splitlines():
            if line.startswith("export "):
                key, _, value = line[len("export ") :].partition("=")
                env[key] = value.strip("'\"")
        yield {"env": env, "work": tmp_path_factory.mktemp("slurm_work")}
    finally:
        down = subprocess.run(
            [str(LOCALCLUSTER / "down.sh"), "--purge"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert down.returncode == 0, down.stderr[-3000:]  # no daemon may outlive the tests


def sweep(slurm, *overrides: str, timeout: int = 600):
    """`python -m afd.train +experiment=toy +cluster=slurm ... -m ...` as a user types it, from
    the shared directory; returns the process, the new sweep directory and the seconds taken."""
    work = slurm["work"]
    before = set(work.glob("multirun/*/*"))
    env = {
        **slurm["env"],
        "PYTHONPATH": str(ROOT),
        "WANDB_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        "AFD_SHARED_DIR": str(work),
    }
    args = [
        "+experiment=toy",
        "+cluster=slurm",
        *SIZE,
        "logger=csv",
        "trainer.log_every_n_steps=1",
        f"hydra.launcher.partition={env['AFD_SLURM_PARTITION']}",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.timeout_min=10",
        "hydra.launcher.result_timeout_s=2",
        *overrides,
    ]
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "afd.train", *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    (sweep_dir,) = set(work.glob("multirun/*/*")) - before
    return proc, sweep_dir, time.monotonic() - start


def sacct(slurm, job: str, timeout: float = 60) -> list[dict]:
    """The array's jobs once SLURM has closed them all (results come back before that)."""
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(
            ["sacct", "-X", "-n", "-P", "-j", job, "--format=JobID,State,Start,End"],
            env=slurm["env"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        jobs = [
            dict(zip(("id", "state", "start", "end"), line.split("|"), strict=True))
            for line in out.splitlines()
        ]
        if jobs and all(j["state"] not in ("PENDING", "RUNNING", "COMPLETING") for j in jobs):
            return jobs
        assert time.monotonic() < deadline, jobs
        time.sleep(1)


def array_id(sweep_dir: Path) -> str:
    names = [p.name for p in (sweep_dir / ".submitit").iterdir() if p.is_dir()]
    ids = {n.split("_")[0] for n in names}
    assert len(ids) == 1, names
    return ids.pop()


def results(sweep_dir: Path) -> dict[int, dict]:
    return {r["n"]: r for r in (json.loads(p.read_text()) for p in sweep_dir.rglob("results.json"))}


def pretrain_loss_curve(sweep_dir: Path) -> list[float]:
    """The pretrain stage's logged loss curve, from the job that trained it."""
    (job_dir,) = [
        p.parent
        for p in sweep_dir.rglob("results.json")
        if json.loads(p.read_text())["stages"]["init"] == "trained"
    ]
    with open(job_dir / "metrics.csv") as f:
        rows = csv.DictReader(f)
        return [float(row["value"]) for row in rows if row["key"] == "pretrain/train/loss"]


@pytest.fixture(scope="module")
def n_sweep(slurm):
    proc, sweep_dir, seconds = sweep(slurm, "-m", "n=2,4,8")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    return sweep_dir


def test_sweep_runs_as_parallel_array_jobs_sharing_the_cache(slurm, n_sweep):
    by_n = results(n_sweep)
    assert sorted(by_n) == [2, 4, 8]
    jobs = sacct(slurm, array_id(n_sweep))
    assert len(jobs) == 3 and {j["state"] for j in jobs} == {"COMPLETED"}, jobs
    # Two CPUs, one per job: two jobs ran at the same time, so they met at the cache's locks...
    spans = sorted((j["start"], j["end"]) for j in jobs)
    assert spans[1][0] < spans[0][1], spans
    # ...and every stage was still built by exactly one job, the others reusing it.
    built = Counter(
        label for r in by_n.values() for label, status in r["stages"].items() if status == "trained"
    )
    assert set(built.values()) == {1} and set(built) == set(by_n[2]["stages"]), built
    cache = slurm["work"] / ".afd_cache"
    for stage_dir in cache.iterdir():
        if stage_dir.name.startswith("."):
            continue
        names = [p.name for p in stage_dir.iterdir() if not p.name.endswith(".lock")]
        assert all(".tmp-" not in n for n in names), names  # nothing half-built left behind
    # One shared pool of samples: each job's Best-of-n is the exact curve every job computed.
    for n, r in by_n.items():
        assert r["artifacts"] == by_n[2]["artifacts"]
        for other in by_n.values():
            point = other["bon_curve"][str(n)]["gold_mean"]
            assert point == pytest.approx(r["gold"]["bon"]["mean"])
    assert "| toy |" in (n_sweep / "summary.md").read_text()


def test_hard_crash_is_reported_failed_and_does_not_hang(slurm, n_sweep):
    """A job SIGKILLed mid-sweep (no result, no Python cleanup): the sweep still ends, fails,
    names the job and its SLURM state, and the other job's results are there."""
    proc, sweep_dir, seconds = sweep(
        slurm,
        "+hydra.callbacks.crash._target_=afd.runtime.faults.CrashJob",
        "+hydra.callbacks.crash.when.n=4",
        "-m",
        "n=2,4",
        timeout=300,
    )
    assert proc.returncode != 0
    assert seconds < 120, seconds  # the stages come from the cache; the rest is detection
    assert "ended without a result (SLURM state FAILED)" in proc.stderr, proc.stderr[-3000:]
    assert sorted(results(sweep_dir)) == [2]
    failures = [json.loads(p.read_text()) for p in sweep_dir.rglob("failure.json")]
    assert len(failures) == 1 and failures[0]["slurm_state"] == "FAILED"
    assert "n=4" in failures[0]["overrides"]
    assert "Failed jobs:" in (sweep_dir / "summary.md").read_text()
    states = {j["id"].split("_")[1]: j["state"] for j in sacct(slurm, array_id(sweep_dir))}
    assert states == {"0": "COMPLETED", "1": "FAILED"}
    queue = subprocess.run(["squeue", "-h"], env=slurm["env"], capture_output=True, text=True)
    assert queue.stdout.strip() == ""  # nothing left running or pending (sacct waited for it)


def test_one_task_per_device_trains_like_one_process(slurm, n_sweep):
    """trainer=ddp with two SLURM tasks: task 0 runs the job, task 1 follows its training stages
    and samples (and scores) its shard of each pool, and the stage's loss curve is the
    one-process curve of the sweep above."""
    # reward=logratio trains no reward model: two training stages are enough here.
    proc, sweep_dir, _ = sweep(
        slurm, "trainer=ddp", "trainer.accelerator=cpu", "reward=logratio", "-m", "n=4"
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    (job,) = sacct(slurm, array_id(sweep_dir))
    assert job["state"] == "COMPLETED"
    logs = sorted((sweep_dir / ".submitit").rglob("*_log.out"))
    assert len(logs) == 2  # two tasks
    r = results(sweep_dir)[4]
    assert {r["stages"][s] for s in ("init", "sft")} == {"trained"}
    follower = "\n".join(p.read_text() for p in sweep_dir.rglob("*.log"))
    # task 1 ran its rank of both training stages and its shard of every pool the job drew and
    # of every score it computed (the demonstrations' gold scores come from the sweep above)
    sharded = [
        stage
        for stage, status in r["stages"].items()
        if stage.startswith(("sample/", "score/")) and status == "trained"
    ]
    assert any(stage.startswith("sample/") for stage in sharded)
    assert f"task 1: task 0 is done after {2 + len(sharded)} published calls" in follower
    one_process, two_tasks = pretrain_loss_curve(n_sweep), pretrain_loss_curve(sweep_dir)
    assert len(two_tasks) == len(one_process) >= 10
    assert two_tasks == pytest.approx(one_process, rel=2e-5, abs=2e-5)
