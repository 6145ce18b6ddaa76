"""Where Hugging Face resources come from: a local path, the local cache, or the Hub.

Before any stage runs, the pipeline's preflight (afd/pipeline/preflight.py) lists the Hub
resources the config names (data set, policy, golden reward model) that are not local paths.
When the Hub cannot be reached (one probe with a short timeout, or HF_HUB_OFFLINE set) it puts
the HF libraries in offline mode,
so loaders read the cache and never sit in retries, and fails at once if anything is not
cached, naming it and the config key that points at a local copy.
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from afd.core.errors import AfdError

PROBE_TIMEOUT_S = 5.0
HOW_TO_GET = {
    "model": "huggingface-cli download {repo} --local-dir DIR",
    "dataset": "huggingface-cli download {repo} --repo-type dataset --local-dir DIR",
}


class HubUnavailable(AfdError, RuntimeError):
    """The Hub cannot be reached and the config needs something that is not on this machine."""


@dataclass(frozen=True)
class HubResource:
    """One thing a config loads by Hub id, and the config key that can point it elsewhere."""

    repo_id: str
    repo_type: str  # "model" | "dataset"
    config_key: str
    role: str  # what it is for, in words: "policy", "golden reward model", ...
    files: tuple[str, ...] = ("config.json",)
    local_hint: str = "a directory written by save_pretrained or huggingface-cli download"
    fallback: str | None = None  # what is used instead when it is out of reach

    def is_local(self) -> bool:
        return Path(self.repo_id).expanduser().exists()

    def is_cached(self) -> bool:
        from huggingface_hub import try_to_load_from_cache

        for name in self.files:
            if isinstance(
                try_to_load_from_cache(self.repo_id, name, repo_type=self.repo_type), str
            ):
                return True
        if self.repo_type == "dataset":  # a `datasets` cache from an earlier load_dataset
            try:
                from datasets import config
            except ImportError:
                return False
            return (Path(config.HF_DATASETS_CACHE) / self.repo_id.replace("/", "___")).is_dir()
        return False

    def advice(self) -> str:
        fetch = HOW_TO_GET[self.repo_type].format(repo=self.repo_id)
        return (
            f"  - {self.role} {self.repo_id!r}: set {self.config_key}=PATH ({self.local_hint}); "
            f"on a machine with network: {fetch}"
        )


def endpoint() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


def _head(url: str, timeout_s: float, answer: list) -> None:
    try:
        urllib.request.urlopen(
            urllib.request.Request(url, method="HEAD"), timeout=timeout_s
        ).close()
        answer.append(None)
    except urllib.error.HTTPError:
        answer.append(None)  # any HTTP status means the Hub is there
    except (urllib.error.URLError, OSError, ValueError) as e:
        answer.append(str(getattr(e, "reason", e)))


def probe(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None if `url` answers at all (any HTTP status), else why it could not be reached.
    Bounded by `timeout_s` in all: the socket timeout does not cover a DNS lookup that
    hangs (no resolver reachable), so the request runs in a thread we stop waiting for."""
    answer: list = []
    worker = threading.Thread(target=_head, args=(url, timeout_s, answer), daemon=True)
    worker.start()
    worker.join(timeout_s + 0.5)
    return answer[0] if answer else f"no answer within {timeout_s:.0f} s"


def go_offline() -> None:
    """Make huggingface_hub, transformers and datasets read only the local cache."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True  # read at call time by transformers' is_offline_mode()
    try:
        from datasets import config

        config.HF_HUB_OFFLINE = config.HF_DATASETS_OFFLINE = True
    except ImportError:
        pass
