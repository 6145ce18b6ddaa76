"""Faults lose nothing: a job killed hard (SIGKILL) inside any stage resumes to the very
results of an undisturbed run, two jobs on one cache build each stage once, and the worker
processes of a distributed stage die with their job. The kill inside a stage comes from the
job itself (AFD_FAULT_KILL, afd/runtime/faults.py) at the worst moment: the artifact built in
its temporary directory, not yet published."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, TINY

JOB = [
    "+experiment=toy",
    *(o for o in TINY if not o.startswith(("logger=", "progress="))),
    "logger=none",
    "progress=false",
]
STAGES = ["data", "corpus", "pretrain", "sft", "sample", "score", "reward", "policy_metrics"]
IGNORED = {"wall_s", "stages", "artifacts", "overrides", "group", "provenance"}


def start(cwd: Path, cache: Path, *extra: str, kill: str | None = None) -> subprocess.Popen:
    env = {
        **os.environ,
        **({"AFD_FAULT_KILL": kill} if kill else {}),
        "AFD_CACHE_DIR": str(cache),
        "PYTHONPATH": str(ROOT),
        "WANDB_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
    }
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "afd.train", *JOB, *extra],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: killed with everything it started
    )


def finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def results(cwd: Path) -> dict:
    (path,) = cwd.rglob("results.json")
    return {k: v for k, v in json.loads(path.read_text()).items() if k not in IGNORED}


def built(cache: Path) -> dict[str, int]:
    """Complete artifacts per stage, and nothing half-built."""
    leftovers = [p for p in cache.glob("*/*") if ".tmp-" in p.name or ".old-" in p.name]
    assert not leftovers, leftovers
    return {d.name: len(list(d.glob("*/manifest.json"))) for d in cache.iterdir() if d.is_dir()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    finish(start(root / "run", root / "cache"))
    return results(root / "run"), built(root / "cache")


@pytest.mark.slow
def test_a_job_killed_in_each_stage_in_turn_resumes_to_the_same_results(tmp_path, reference):
    expected, stages = reference
    cache = tmp_path / "cache"
    for i, stage in enumerate(STAGES):
        published = len(list((cache / stage).glob("*/manifest.json")))
        proc = start(tmp_path / f"killed{i}", cache, kill=stage)
        log, _ = proc.communicate(timeout=600)
        assert proc.returncode == -signal.SIGKILL, log[-2000:]
        assert f"killing this job inside stage {stage}" in log
        # the killed build left its files in a temporary directory, and nothing published
        assert list((cache / stage).glob("*.tmp-*"))
        assert len(list((cache / stage).glob("*/manifest.json"))) == published
    finish(start(tmp_path / "resumed", cache))
    # bit-identical to the run nobody disturbed, each stage built exactly once
    assert results(tmp_path / "resumed") == expected
    assert built(cache) == stages


@pytest.mark.slow
def test_two_jobs_on_one_cache_build_each_stage_once(tmp_path, reference):
    expected, stages = reference
    cache = tmp_path / "cache"
    jobs = [start(tmp_path / f"job{i}", cache) for i in range(2)]
    logs = [finish(job) for job in jobs]
    assert all(results(tmp_path / f"job{i}") == expected for i in range(2))
    assert built(cache) == stages
    assert any("built by a parallel job" in log for log in logs)


def processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text in (proc / "cmdline").read_text():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_workers_die_with_their_job(tmp_path):
    """trainer=ddp trains in two worker processes; killing only the job's own process (not its
    group) must not leave them training, and a rerun then builds the stage cleanly (in its own
    process: the trainer is not part of a stage's key, and the lock must be free)."""
    cache = tmp_path / "cache"
    proc = start(tmp_path / "killed", cache, "trainer=ddp")
    for text in proc.stdout:
        if "worker process(es)" in text:
            break
    deadline = time.monotonic() + 120
    while len(processes_mentioning(str(cache))) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(processes_mentioning(str(cache))) >= 2  # the job and its workers
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 30
    while processes_mentioning(str(cache)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not processes_mentioning(str(cache)), "orphaned workers still running"
    assert not list((cache / "pretrain").glob("*/manifest.json"))  # killed before publishing
    finish(start(tmp_path / "rerun", cache))
    assert built(cache)["pretrain"] == 1
