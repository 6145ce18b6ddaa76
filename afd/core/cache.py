"""Content-addressed stage artifacts: keys, locks and atomic publication.

A key hashes the stage name, the config subtree the stage reads and its upstream keys,
so a sweep over `n` reuses SFT and the reward model. An artifact is built in a temporary
directory and renamed into place with its manifest, under a file lock: parallel jobs
never build it twice or read half of it, and a killed build leaves nothing that looks
complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

import afd
from afd.core.files import fsync_dir, fsync_tree

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
# Bump when a stage's on-disk format or semantics change, so old artifacts are not reused.
FORMAT_VERSION = 3
LOCK_WAIT_LOG_S = 60.0  # a job waiting for another's build says so this often


def canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def artifact_key(stage: str, config: dict, upstream: dict[str, str]) -> str:
    payload = canonical(
        {"stage": stage, "format": FORMAT_VERSION, "config": config, "upstream": upstream}
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


@dataclass
class Artifact:
    stage: str
    key: str
    path: Path
    status: str  # "trained" (built by this call) or "cached"

    @property
    def manifest(self) -> dict:
        return json.loads((self.path / MANIFEST).read_text())

    @property
    def metrics(self) -> dict:
        return self.manifest.get("metrics", {})


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    names = ["torch", "transformers", "lightning", "datasets", "hydra-core", "deepspeed"]
    out = {"afd": afd.__version__}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


class StageCache:
    """Artifacts live at `root/<stage>/<key>/`; `reuse=False` rebuilds and republishes."""

    def __init__(self, root: str | Path, reuse: bool = True, lock_timeout_s: float = -1):
        self.root = Path(root).expanduser().resolve()
        self.reuse = reuse
        self.lock_timeout_s = lock_timeout_s
        self._rebuilt: set[str] = set()  # with reuse=False, rebuild once per process, not per use
        self._swept: set[Path] = set()

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def is_complete(self, path: Path) -> bool:
        return (path / MANIFEST).is_file()

    def get_or_build(
        self,
        stage: str,
        config: dict,
        upstream: dict[str, Artifact],
        build: Callable[[Path], dict | None],
    ) -> Artifact:
        """Return the artifact for (stage, config, upstream), building it with `build(tmp_dir)`
        (which writes files and returns metrics) if no complete one exists."""
        key = artifact_key(stage, config, {k: a.key for k, a in upstream.items()})
        final = self.path(stage, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        self._sweep_leftovers(final.parent)
        must_rebuild = not self.reuse and key not in self._rebuilt
        if self.is_complete(final) and not must_rebuild:
            log.info("stage %s: reusing cached artifact %s", stage, final)
            return Artifact(stage, key, final, "cached")
        with self._lock(final, stage):
            if self.is_complete(final) and not must_rebuild:
                log.info("stage %s: reusing artifact %s built by a parallel job", stage, final)
                return Artifact(stage, key, final, "cached")
            _remove_leftovers(final)  # of a build that was killed: its lock is ours now
            tmp = final.parent / f"{key}.tmp-{socket.gethostname()}-{os.getpid()}-{_token()}"
            tmp.mkdir()
            log.info("stage %s: building %s", stage, final)
            start = time.time()
            try:
                metrics = build(tmp) or {}
                manifest = {
                    "stage": stage,
                    "key": key,
                    "config": config,
                    "upstream": {
                        k: {"key": a.key, "path": str(a.path)} for k, a in upstream.items()
                    },
                    "metrics": metrics,
                    "versions": library_versions(),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "host": socket.gethostname(),
                    "build_s": round(time.time() - start, 3),
                }
                (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
                fsync_tree(tmp)  # on disk before it is visible: a crash cannot tear it
                self._publish(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            self._rebuilt.add(key)
        return Artifact(stage, key, final, "trained")

    @contextlib.contextmanager
    def _lock(self, final: Path, stage: str):
        """The build lock of one artifact. A lock held by a live build is waited for, saying
        who holds it and since when; one whose holder died (its process ended) is free, as
        the OS released it, and whatever that build left is removed by the next holder."""
        lock = FileLock(str(final) + ".lock")
        holder = Path(str(final) + ".holder")
        waited = 0.0
        while True:
            try:
                lock.acquire(timeout=LOCK_WAIT_LOG_S)
                break
            except Timeout:
                waited += LOCK_WAIT_LOG_S
                who = holder.read_text().strip() if holder.exists() else "another job"
                log.warning(
                    "stage %s: waited %.0f min for %s, being built by %s",
                    stage,
                    waited / 60,
                    final.name,
                    who,
                )
                if 0 <= self.lock_timeout_s <= waited:
                    raise
        try:
            since = time.strftime("%Y-%m-%d %H:%M:%S")
            holder.write_text(f"{socket.gethostname()} pid {os.getpid()} since {since}\n")
            yield
        finally:
            holder.unlink(missing_ok=True)
            lock.release()

    def _sweep_leftovers(self, folder: Path) -> None:
        """Remove what killed builds and forced rebuilds left in a stage folder, once per
        process: a temporary directory whose lock is free has no live builder."""
        if folder in self._swept:
            return
        self._swept.add(folder)
        keys = {p.name.split(".")[0] for p in folder.glob("*.tmp-*")}
        keys |= {p.name.split(".")[0] for p in folder.glob("*.old-*")}
        for key in keys:
            lock = FileLock(str(folder / key) + ".lock")
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue  # a live build of that key
            try:
                _remove_leftovers(folder / key)
            finally:
                lock.release()

    @staticmethod
    def _publish(tmp: Path, final: Path) -> None:
        if final.exists():  # a forced rebuild: move the old one aside, then swap in
            trash = final.parent / f"{final.name}.old-{_token()}"
            os.rename(final, trash)
            os.rename(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(tmp, final)
        fsync_dir(final.parent)


def _token() -> str:
    return uuid.uuid4().hex[:8]


def _remove_leftovers(final: Path) -> None:
    for leftover in (
        *final.parent.glob(f"{final.name}.tmp-*"),
        *final.parent.glob(f"{final.name}.old-*"),
    ):
        log.info("removing %s, left by a build that did not finish", leftover)
        shutil.rmtree(leftover, ignore_errors=True)
