"""Experiment tracking: one W&B run (or CSV file, or nothing) per job.

`conf/logger/*.yaml` picks the backend. Each training stage logs through a Lightning
adapter under its own prefix (`sft/train/loss`, `rm/val/accuracy`) with its own step
counter, so stages that restart at step 0 do not collide in one run.
"""

from __future__ import annotations

import csv
import logging
import netrc
import os
from pathlib import Path
from urllib.parse import urlparse

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from afd.core.errors import ConfigError

log = logging.getLogger(__name__)


class Tracker:
    """No tracking; the base of the real backends (`logger=none`)."""

    def start(self, config: dict, name: str, group: str, output_dir: Path) -> None:
        pass

    def log(self, metrics: dict, step_key: str | None = None, step: int | None = None) -> None:
        pass

    def summary(self, metrics: dict) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass

    def lightning_logger(self, prefix: str) -> Logger:
        return StageLogger(self, prefix)


class CSVTracker(Tracker):
    """Long-format `metrics.csv` (key, step, value) in the job's output dir (`logger=csv`)."""

    def __init__(self, filename: str = "metrics.csv"):
        self.filename = filename
        self._file = None

    def start(self, config, name, group, output_dir):
        self._file = open(Path(output_dir) / self.filename, "w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(["key", "step", "value"])

    def log(self, metrics, step_key=None, step=None):
        for key, value in metrics.items():
            self._writer.writerow([key, step if step is not None else "", value])
        self._file.flush()

    def summary(self, metrics):
        self.log({f"summary/{k}": v for k, v in metrics.items()})

    def finish(self, exit_code=0):
        if self._file:
            self._file.close()
            self._file = None


def wandb_logged_in() -> bool:
    """An API key in the environment or in ~/.netrc for the W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


class WandbTracker(Tracker):
    """A W&B run per job. `mode=auto`: online when logged in, offline otherwise."""

    def __init__(
        self,
        project: str = "afd",
        entity: str | None = None,
        mode: str = "auto",
        tags: list[str] | None = None,
        dir: str | None = None,
    ):
        if mode not in ("auto", "online", "offline", "disabled"):
            raise ConfigError(
                f"logger.mode must be auto, online, offline or disabled; got {mode!r}"
            )
        self.project, self.entity, self.tags, self.dir = project, entity, list(tags or []), dir
        self.mode = mode
        if self.resolved_mode() == "online" and not wandb_logged_in():
            raise ConfigError(
                "logger.mode=online, but there is no W&B login here (no WANDB_API_KEY, no "
                "~/.netrc entry): run `wandb login`, or use logger.mode=auto (offline until you "
                "log in) and `wandb sync` later"
            )
        self.run = None
        self._step_keys: set[str] = set()

    def resolved_mode(self) -> str:
        if os.environ.get("WANDB_MODE"):
            return os.environ["WANDB_MODE"]
        if self.mode == "auto":
            return "online" if wandb_logged_in() else "offline"
        return self.mode

    def start(self, config, name, group, output_dir):
        import wandb

        mode = self.resolved_mode()
        log.info("W&B run %r in group %r, mode %s", name, group, mode)
        self.run = wandb.init(
            project=self.project,
            entity=self.entity,
            name=name,
            group=group,
            tags=self.tags,
            config=config,
            mode=mode,
            dir=self.dir or str(output_dir),
            reinit="finish_previous",
        )

    def log(self, metrics, step_key=None, step=None):
        if step_key is not None:
            if step_key not in self._step_keys:
                self.run.define_metric(step_key, hidden=True)
                self.run.define_metric(step_key.rsplit("/", 1)[0] + "/*", step_metric=step_key)
                self._step_keys.add(step_key)
            metrics = {**metrics, step_key: step}
        self.run.log(metrics)

    def summary(self, metrics):
        self.run.summary.update(metrics)

    def finish(self, exit_code=0):
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None


class StageLogger(Logger):
    """Lightning's view of a tracker: prefixes a stage's metrics and numbers its steps."""

    def __init__(self, tracker: Tracker, prefix: str):
        super().__init__()
        self.tracker, self.prefix = tracker, prefix
        self.history: list[dict] = []

    @property
    def name(self):
        return self.prefix

    @property
    def version(self):
        return 0

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs):
        pass

    @rank_zero_only
    def log_metrics(self, metrics, step=None):
        named = {f"{self.prefix}/{k}": float(v) for k, v in metrics.items() if k != "epoch"}
        self.history.append({"step": step, **named})
        self.tracker.log(named, step_key=f"{self.prefix}/step", step=step)

    def replay(self, history: list[dict]) -> None:
        """Log rows this stage recorded in worker processes (afd/runtime/workers.py), as if
        logged here."""
        for row in history:
            self.history.append(row)
            named = {k: v for k, v in row.items() if k != "step"}
            self.tracker.log(named, step_key=f"{self.prefix}/step", step=row["step"])
