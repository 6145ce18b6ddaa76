"""A W&B report of one sweep (wandb-workspaces), built from the jobs' results.json.

Its run set is the sweep's W&B group (experiment and sweep, `run_identity` of
afd/pipeline/job.py). Panels:
gold reward against n (each job's exact Best-of-n curve, `bon_curve/*` logged over
`bon_curve/n`, and the swept n's), gold reward per policy, and one ablation section per swept
setting other than n and seed with a bar chart per metric present (`div/*`, `gold/*`, `rm/*`),
grouped by that setting. `afd.report --wandb` saves it (which needs a W&B login); building it
needs none beyond resolving the project.
"""

from __future__ import annotations

from pathlib import Path

from afd.reporting.sweep import REPLICATE_KEYS, ablation_metrics, swept_keys

POLICIES = ("init", "sft", "demo", "bon")


def group_key(results: list[dict], key: str) -> str:
    """The W&B config path of a swept setting: a config-group choice (divergence=reverse_kl) is
    logged under run.choices, a plain value (seed=1, data.task.noise=0.1) at its own path."""
    if any(key in r.get("choices", {}) for r in results):
        return f"config.run.choices.{key}"
    return f"config.{key}"


def project_of(sweep_dir: str | Path) -> str | None:
    """The W&B project the sweep's jobs logged to (their `logger.project`), if any."""
    from omegaconf import OmegaConf

    for config in sorted(Path(sweep_dir).rglob(".hydra/config.yaml")):
        project = OmegaConf.select(OmegaConf.load(config), "logger.project")
        if project:
            return str(project)
    return None


def build_report(
    results: list[dict], project: str, entity: str | None = None, title: str | None = None
):
    """The report object (not saved). `results`: the sweep's results.json contents."""
    import wandb_workspaces.reports.v2 as wr

    groups = sorted({r["group"] for r in results if r.get("group")})
    if len(groups) != 1:
        raise ValueError(
            f"a report covers one sweep (one W&B group); these results span "
            f"{groups}: were they written before runs carried their group?"
        )
    group, experiment = groups[0], results[0]["experiment"]
    # Without an entity the report takes the logged-in user's default one; so do its run sets.
    report = wr.Report(
        project=project,
        **({"entity": entity} if entity else {}),
        title=title or f"{experiment}: {group}",
        description=f"afd sweep {group}",
    )
    entity = report.entity

    def runset(name: str, groupby: list[str] | None = None):
        return wr.Runset(
            entity=entity,
            project=project,
            name=name,
            filters=f"Metric('Group') == '{group}'",
            groupby=groupby or [],
        )

    keys = swept_keys(results)
    blocks = [
        wr.H1(f"{experiment}: gold reward against n"),
        wr.P(
            f"W&B group {group}: {len(results)} jobs, swept over {', '.join(keys) or 'nothing'}. "
            "Best-of-n is exact for every n up to bon.n_max, from one pool of samples per prompt."
        ),
        wr.PanelGrid(
            runsets=[runset(group)],
            panels=[
                wr.LinePlot(
                    title="Best-of-n gold reward (every n)",
                    x="bon_curve/n",
                    y=["bon_curve/gold_mean"],
                    log_x=True,
                ),
                wr.LinePlot(
                    title="Best-of-n proxy reward (every n)",
                    x="bon_curve/n",
                    y=["bon_curve/proxy_mean"],
                    log_x=True,
                ),
                wr.ScatterPlot(title="gold reward of each job's n", x="n", y="gold/bon/mean"),
                wr.BarPlot(
                    title="gold reward per policy", metrics=[f"gold/{p}/mean" for p in POLICIES]
                ),
            ],
        ),
    ]
    metrics = ablation_metrics(results, keys)
    for key in (k for k in keys if k not in REPLICATE_KEYS):
        by = group_key(results, key)
        blocks += [
            wr.H2(f"Ablation: {key}"),
            wr.P(f"Mean and standard error over the jobs with each value of {key}."),
            wr.PanelGrid(
                runsets=[runset(f"{group} by {key}", [by])],
                panels=[
                    wr.BarPlot(
                        title=m,
                        metrics=[m],
                        groupby=by,
                        groupby_aggfunc="mean",
                        groupby_rangefunc="stderr",
                    )
                    for m in metrics
                ]
                + [
                    wr.LinePlot(
                        title=f"Best-of-n gold reward by {key}",
                        x="bon_curve/n",
                        y=["bon_curve/gold_mean"],
                        groupby=by,
                        groupby_aggfunc="mean",
                        groupby_rangefunc="stderr",
                        log_x=True,
                    )
                ],
            ),
        ]
    report.blocks = blocks
    return report
