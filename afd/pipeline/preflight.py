"""Before any stage runs: the Hub resources the config names (data set, policy, golden reward
model) that are not local paths. When the Hub cannot be reached (one probe with a short
timeout, or HF_HUB_OFFLINE set) the HF libraries go offline, so loaders read the cache and
never sit in retries, and the job fails at once if anything is not cached, naming it and the
config key that points at a local copy.
"""

from __future__ import annotations

import logging

from afd.core.hub import PROBE_TIMEOUT_S, HubResource, HubUnavailable, endpoint, go_offline, probe
from afd.core.protocols import UsesHub

log = logging.getLogger(__name__)


def hub_resources(parts) -> list[HubResource]:
    """The Hub resources of the job's parts (task, model spec, gold judge) that are not local."""
    needed = []
    for part in parts:
        if isinstance(part, UsesHub):
            needed += [r for r in part.hub_resources() if not r.is_local()]
    return needed


def preflight(parts, timeout_s: float = PROBE_TIMEOUT_S) -> set[str]:
    """Fail fast, before any stage, if the config needs the Hub and the Hub is out of reach.
    Returns the Hub ids out of reach that a part can do without (it has a fallback)."""
    from huggingface_hub import constants

    needed = hub_resources(parts)
    if not needed:
        return set()
    reason = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else probe(endpoint(), timeout_s)
    if reason is None:
        return set()
    go_offline()
    unavailable = [r for r in needed if not r.is_cached()]
    missing = [r for r in unavailable if r.fallback is None]
    for r in unavailable:
        if r.fallback is not None:
            log.info("%s %s is out of reach (%s): using %s", r.role, r.repo_id, reason, r.fallback)
    if missing:
        lines = "\n".join(r.advice() for r in missing)
        raise HubUnavailable(
            f"cannot reach the Hugging Face Hub at {endpoint()} ({reason}), and these are not in "
            f"the local cache ({constants.HF_HUB_CACHE}):\n{lines}\n"
            "Point the keys above at local copies, or run where the Hub is reachable once to fill "
            "the cache (HF_HOME selects it)."
        )
    return {r.repo_id for r in unavailable}
