"""What a sweep's jobs have in common and where they differ: the settings swept, the metrics
each job logged, and which of them an ablation compares. Shared by the offline report and the
W&B report."""

from __future__ import annotations

from collections import defaultdict

from afd.reporting.metrics import flatten, tracked_metrics

# Metric families a results.json may carry beyond the tracked ones, nested ({"div": {...}}) or
# flat ("div/forward_kl"): reported under their "/"-joined names.
EXTRA_FAMILIES = ("div",)
REPLICATE_KEYS = ("n", "seed")  # swept, but not ablations: n has its own curve, seeds average


def job_metrics(results: dict) -> dict[str, float]:
    """The numbers a job logged, by their W&B names."""
    metrics = dict(tracked_metrics(results))
    extra = {k: v for k, v in results.items() if k.split("/")[0] in EXTRA_FAMILIES}
    for name, value in flatten(extra).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[name] = value
    return metrics


def override_values(results: dict) -> dict[str, str]:
    """`key -> value` of a job's command-line overrides (`+experiment=toy` -> experiment)."""
    pairs = (o.lstrip("+~").split("=", 1) for o in results.get("overrides", []) if "=" in o)
    return {key: value for key, value in pairs}


def swept_keys(raw: list[dict]) -> list[str]:
    """Overrides that take more than one value across the sweep's jobs, in command-line order."""
    values: dict[str, set] = defaultdict(set)
    for r in raw:
        for key, value in override_values(r).items():
            values[key].add(value)
    return [k for k, v in values.items() if len(v) > 1 or len(raw) == 1 and k == "n"]


def ablation_metrics(raw: list[dict], keys: list[str]) -> list[str]:
    """Metrics to compare across an ablation: Best-of-n ones only when n is not swept."""
    names = sorted({m for r in raw for m in job_metrics(r)})
    depends_on_n = ("gold/bon/", "bon/") if "n" in keys else ()
    return [
        m
        for m in names
        if m.startswith(("div/", "gold/", "rm/", "bon/win_rate"))
        and not m.endswith(("/sem", "_sem"))
        and not (depends_on_n and m.startswith(depends_on_n))
    ]
