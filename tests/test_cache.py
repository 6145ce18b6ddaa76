"""Stage cache: keys, reuse, forced rebuilds, parallel builders and killed builds."""

import json
import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import pytest

from afd.core.cache import MANIFEST, Artifact, StageCache, artifact_key


def test_key_depends_on_config_and_upstream_only():
    a = artifact_key("sft", {"lr": 1, "epochs": 2}, {"init": "k1"})
    assert a == artifact_key("sft", {"epochs": 2, "lr": 1}, {"init": "k1"})  # order-free
    assert a != artifact_key("sft", {"lr": 2, "epochs": 2}, {"init": "k1"})
    assert a != artifact_key("sft", {"lr": 1, "epochs": 2}, {"init": "k2"})
    assert a != artifact_key("reward", {"lr": 1, "epochs": 2}, {"init": "k1"})


def test_build_once_then_reuse(tmp_path):
    calls = []

    def build(out: Path):
        calls.append(out)
        (out / "weights.txt").write_text("w")
        return {"loss": 0.5}

    cache = StageCache(tmp_path)
    first = cache.get_or_build("sft", {"lr": 1}, {}, build)
    second = StageCache(tmp_path).get_or_build("sft", {"lr": 1}, {}, build)
    assert (first.status, second.status) == ("trained", "cached")
    assert first.path == second.path and len(calls) == 1
    assert second.metrics == {"loss": 0.5}
    assert (second.path / "weights.txt").read_text() == "w"
    manifest = json.loads((second.path / MANIFEST).read_text())
    assert manifest["config"] == {"lr": 1} and "torch" in manifest["versions"]


def test_upstream_change_invalidates(tmp_path):
    cache = StageCache(tmp_path)
    up1 = Artifact("data", "a" * 20, tmp_path, "cached")
    up2 = Artifact("data", "b" * 20, tmp_path, "cached")
    one = cache.get_or_build("sft", {}, {"data": up1}, lambda out: None)
    two = cache.get_or_build("sft", {}, {"data": up2}, lambda out: None)
    assert one.path != two.path and two.status == "trained"


def test_reuse_false_rebuilds_once_per_run(tmp_path):
    calls = []
    StageCache(tmp_path).get_or_build("s", {}, {}, lambda out: calls.append(1))
    fresh = StageCache(tmp_path, reuse=False)
    assert fresh.get_or_build("s", {}, {}, lambda out: calls.append(2)).status == "trained"
    assert fresh.get_or_build("s", {}, {}, lambda out: calls.append(3)).status == "cached"
    assert calls == [1, 2]


def test_failed_build_leaves_nothing(tmp_path):
    def broken(out: Path):
        (out / "half.bin").write_text("x")
        raise RuntimeError("boom")

    cache = StageCache(tmp_path)
    with pytest.raises(RuntimeError):
        cache.get_or_build("s", {}, {}, broken)
    leftovers = [p.name for p in (tmp_path / "s").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []
    assert cache.get_or_build("s", {}, {}, lambda out: None).status == "trained"


def _slow_build(root: str, marker: str) -> None:
    def build(out: Path):
        with open(marker, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(1.0)
        (out / "data.txt").write_text("done")

    art = StageCache(root).get_or_build("slow", {"x": 1}, {}, build)
    assert (art.path / "data.txt").read_text() == "done"


def test_parallel_jobs_build_once(tmp_path):
    marker = tmp_path / "builds.txt"
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_slow_build, args=(str(tmp_path / "c"), str(marker))) for _ in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert len(marker.read_text().split()) == 1


def _killed_build(root: str) -> None:
    def build(out: Path):
        (out / "partial.bin").write_text("x")
        time.sleep(60)

    StageCache(root).get_or_build("victim", {}, {}, build)


def test_killed_build_leaves_no_complete_artifact(tmp_path):
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_killed_build, args=(str(tmp_path),))
    proc.start()
    stage_dir = tmp_path / "victim"
    for _ in range(200):
        if stage_dir.exists() and any(".tmp-" in p.name for p in stage_dir.iterdir()):
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    cache = StageCache(tmp_path)
    key = artifact_key("victim", {}, {})
    assert not cache.is_complete(cache.path("victim", key))
    art = cache.get_or_build("victim", {}, {}, lambda out: (out / "ok").write_text("1") and None)
    assert art.status == "trained"
    assert not any(".tmp-" in p.name for p in stage_dir.iterdir())  # the stale build is swept
