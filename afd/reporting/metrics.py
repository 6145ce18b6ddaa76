"""The metric names a job reports, one meaning each (the design card's names)."""

from __future__ import annotations


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}/{k}" if prefix else str(k)
        out.update(flatten(v, key) if isinstance(v, dict) else {key: v})
    return out


def tracked_metrics(results: dict) -> dict:
    """A job's results.json as the tracker's metrics."""
    m = {f"gold/{p}/{s}": results["gold"][p][s] for p in results["gold"] for s in ("mean", "sem")}
    m.update(
        {
            "bon/win_rate_vs_sft": results["bon_win_rate_vs_sft"],
            "bon/win_rate_vs_policy": results.get("bon_win_rate_vs_policy"),
            "bon/kl_analytic": results["bon_kl_analytic"],
            "bon/kl": results.get("bon_kl"),
            "rm/accuracy": results["rm_accuracy"],
            "rm/spearman_gold": results["rm_spearman_gold"],
            "n": results["n"],
        }
    )
    m.update({f"div/{k}": v for k, v in results.get("div", {}).items() if not k.endswith("_sem")})
    return m


def log_bon_curve(tracker, curve: dict) -> None:
    """The exact Best-of-n curve as a series over n, so W&B plots gold reward against n."""
    for n in sorted(curve, key=int):
        point = {f"bon_curve/{k}": v for k, v in curve[n].items() if isinstance(v, (int, float))}
        tracker.log(point, step_key="bon_curve/n", step=int(n))
