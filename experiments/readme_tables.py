"""The README's result tables, generated: run a table's sweep (or read a finished one) and
rewrite the README between its markers, so no number in them is typed by hand; a table with a
figure also draws it to experiments/figures/NAME.png.

    python experiments/readme_tables.py toy                      # run the sweep, rewrite
    python experiments/readme_tables.py toy --sweep-dir multirun/DATE/TIME   # from a sweep
    python experiments/readme_tables.py --list

A table sits between `<!-- afd:table NAME -->` and `<!-- afd:end NAME -->` in README.md.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from timed_runs import run_train

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def load(sweep: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(sweep).rglob("results.json"))]


def fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def render_toy(sweep: Path, wall: float | None) -> str:
    """The headline sweep over n: gold of each policy and of Best-of-n, and the whole curve."""
    raw = load(sweep)
    by_n = {r["n"]: r for r in raw}
    lines = [
        "| n | gold(pi0) | gold(pi_SFT) | gold(demos) | gold(BoN, init_sft) | win rate vs pi_SFT |",
        "|---|---|---|---|---|---|",
    ]
    for n in sorted(by_n):
        g = by_n[n]["gold"]
        lines.append(
            f"| {n} | {fmt(g['init']['mean'])} | {fmt(g['sft']['mean'])} | "
            f"{fmt(g['demo']['mean'])} | {fmt(g['bon']['mean'])} +- {fmt(g['bon']['sem'])} | "
            f"{fmt(by_n[n]['bon_win_rate_vs_sft'])} |"
        )
    curve = max(raw, key=lambda r: len(r["bon_curve"]))["bon_curve"]
    points = sorted(curve, key=int)
    best = max(points, key=lambda k: curve[k]["gold_mean"])
    values = ", ".join(f"{fmt(curve[k]['gold_mean'])} (n = {k})" for k in points)
    lines += [
        "",
        f"The whole Best-of-n curve from the one pool: {values}. It peaks at n = {best} "
        f"({fmt(curve[best]['gold_mean'], 4)}).",
    ]
    if wall is not None:
        lines.append(f"The sweep took {wall:.0f} s here.")
    return "\n".join(lines)


def render_divergence(sweep: Path, wall: float | None) -> str:
    """The mass-covering vs mode-seeking study, mean +- s.e.m. over seeds."""
    sys.path.insert(0, str(ROOT))
    from afd.reporting import analysis

    frame, raw = analysis.load(sweep)
    table = analysis.by_objective(frame)
    cols = [
        ("gold_policy", "gold(policy)"),
        ("div_precision", "precision"),
        ("div_coverage", "coverage"),
        ("div_entropy", "entropy"),
        ("div_forward_kl", "KL(beta ‖ pi)"),
        ("div_reverse_kl", "KL(pi ‖ beta_eps)"),
        ("gold_bon", "gold(BoN)"),
    ]
    lines = [
        "| objective | " + " | ".join(title for _, title in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for name, row in table.iterrows():
        cells = [f"{row[c]:.3f} +- {row[c + '_sem']:.3f}" for c, _ in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    seeds = sorted({r["seed"] for r in raw})
    lines.append("")
    lines.append(f"{len(seeds)} seeds ({', '.join(map(str, seeds))}), {len(raw)} jobs.")
    if wall is not None:
        lines.append(f"The study took {wall / 60:.1f} minutes here.")
    return "\n".join(lines)


def render_frontier(sweep: Path, wall: float | None) -> str:
    """The reward-KL frontier: gold of one sample and KL to pi_SFT of every method, with the
    policy metrics, mean +- s.e.m. over seeds, and the distilled policy closest to Best-of-16."""
    sys.path.insert(0, str(ROOT))
    from afd.reporting import analysis, frontier

    _, raw = analysis.load(sweep)
    tab = frontier.table(frontier.points(raw))
    titles = {
        "gold": "gold (one sample)",
        "kl_sft": "KL to pi_SFT (nats)",
        "precision": "precision",
        "coverage": "coverage",
        "entropy": "entropy (nats)",
    }
    lines = [
        "| method | " + " | ".join(titles[c] for c in frontier.METRICS) + " |",
        "|---|" + "---|" * len(frontier.METRICS),
    ]
    for name, row in tab.iterrows():
        cells = [
            "-" if row[c] != row[c] else f"{row[c]:.3f} +- {row[c + '_sem']:.3f}"
            for c in frontier.METRICS
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    seeds = sorted({r["seed"] for r in raw})
    lines += ["", f"{len(seeds)} seeds ({', '.join(map(str, seeds))}), {len(raw)} jobs."]
    lines.append(frontier.closest_statement(frontier.closest_distilled(tab, 16)) + ".")
    if wall is not None:
        lines.append(f"The study took {wall / 60:.1f} minutes here.")
    return "\n".join(lines)


def draw_frontier(sweep: Path, path: Path) -> None:
    """The frontier plot of the study (gold against KL to pi_SFT) beside its policy metrics."""
    sys.path.insert(0, str(ROOT))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from afd.reporting import analysis, frontier

    _, raw = analysis.load(sweep)
    tab = frontier.table(frontier.points(raw))
    fig = plt.figure(figsize=(13, 4.5))
    grid = fig.add_gridspec(1, 5)
    frontier.plot_frontier(tab, fig.add_subplot(grid[0, :2]))
    frontier.plot_policy_metrics(tab, [fig.add_subplot(grid[0, 2 + i]) for i in range(3)])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def read_rows(path: str) -> list[dict]:
    return [json.loads(line) for line in (Path(path) / "samples.jsonl").read_text().splitlines()]


def pool_stats(rows: list[dict]) -> dict[str, float]:
    """Entropy estimate (-mean log pi of a whole reply, nats), mean length in tokens and the
    share of replies that ended (EOS or the next turn) of a sample artifact's rows."""
    import numpy as np

    return {
        "entropy": float(-np.mean([r["logprob"] for r in rows])),
        "length": float(np.mean([r["num_tokens"] for r in rows])),
        "finished": float(np.mean([r["finished"] for r in rows])),
    }


def stage_seconds(artifacts: dict[str, str]) -> dict[str, float]:
    """Build seconds per stage kind, over the job's own artifacts (each counted once)."""
    out: dict[str, float] = {}
    for path in set(artifacts.values()):
        manifest = json.loads((Path(path) / "manifest.json").read_text())
        out[manifest["stage"]] = out.get(manifest["stage"], 0.0) + manifest.get("build_s", 0.0)
    return out


def best_of(rows: list[dict], scores, n: int) -> dict[str, dict]:
    """Per prompt, the reply of highest reward among its first n samples."""
    best: dict[str, tuple[float, dict]] = {}
    for row, score in zip(rows, scores):
        if row["sample"] < n and (
            row["prompt_id"] not in best or score > best[row["prompt_id"]][0]
        ):
            best[row["prompt_id"]] = (float(score), row)
    return {k: v[1] for k, v in best.items()}


def render_harmless_cpu(sweep: Path, wall: float | None) -> str:
    """The Harmless experiment at CPU scale: gold of each policy and of Best-of-n per n, the
    reward model's and the judge's accuracy, the pools' diversity, replies before and after,
    and the build time of every stage."""
    by_n = {r["n"]: r for r in load(sweep) if r.get("divergence", "forward_kl") == "forward_kl"}
    first = by_n[min(by_n)]
    art = first["artifacts"]
    g = first["gold"]
    lines = [
        f"Judge (gold) held-out pairwise accuracy: {fmt(first['judge_accuracy'])} on "
        f"{first['provenance']['gold']['judge_heldout_pairs']} pairs. Init-SFT reward model "
        f"held-out accuracy (pi_SFT vs pi0 samples): {fmt(first['rm_accuracy'])}; its Spearman "
        f"correlation with the judge over the pool: {fmt(first['rm_spearman_gold'])}.",
        "",
        "| policy | gold (mean +- s.e.m.) | win rate vs pi_SFT | KL to pi_SFT (nats) |",
        "|---|---|---|---|",
    ]
    for name, label in (
        ("init", "pi0 (SmolLM2-135M-Instruct)"),
        ("sft", "pi_SFT"),
        ("demo", "demonstrations"),
    ):
        kl = "0" if name == "sft" else "-"
        lines.append(f"| {label} | {fmt(g[name]['mean'])} +- {fmt(g[name]['sem'])} | - | {kl} |")
    curve = first["bon_curve"]
    for n in sorted(by_n):
        b = by_n[n]["gold"]["bon"]
        lines.append(
            f"| Best-of-{n} (Init-SFT reward) | {fmt(b['mean'])} +- {fmt(b['sem'])} | "
            f"{fmt(by_n[n]['bon_win_rate_vs_sft'])} | {fmt(curve[str(n)]['kl_mean'])} |"
        )
    values = ", ".join(f"{fmt(curve[k]['gold_mean'])} (n = {k})" for k in sorted(curve, key=int))
    lines += ["", f"The whole Best-of-n curve (gold) from the one pool: {values}.", ""]
    div = first["div"]
    init_rows, sft_rows = (
        read_rows(art["sample/init/heldout"]),
        read_rows(art["sample/sft/heldout"]),
    )
    pools = {"pi0": pool_stats(init_rows), "pi_SFT": pool_stats(sft_rows)}
    lines += [
        "| pool (held-out prompts) | entropy (nats/reply) | length (tokens) | ended | KL to pi0 |",
        "|---|---|---|---|---|",
    ]
    for name, st in pools.items():
        kl = fmt(div["kl_init"]) if name == "pi_SFT" else "0"
        lines.append(
            f"| {name} | {st['entropy']:.1f} | {st['length']:.1f} | {st['finished']:.2f} | {kl} |"
        )
    lines += [
        "",
        f"pi_SFT's pool: distinct-1 {fmt(div['distinct_1'])}, distinct-2 {fmt(div['distinct_2'])}, "
        f"self-BLEU {fmt(div['self_bleu'])}.",
        "",
    ]
    saved = json.loads((Path(art["score/reward/sft/heldout"]) / "scores.json").read_text())
    by_id = dict(zip(saved["ids"], saved["scores"]))
    chosen = best_of(sft_rows, [by_id[r["id"]] for r in sft_rows], max(by_n))
    firsts = {r["prompt_id"]: r for r in init_rows if r["sample"] == 0}
    sft_firsts = {r["prompt_id"]: r for r in sft_rows if r["sample"] == 0}
    for pid in sorted(chosen)[:2]:
        prompt = chosen[pid]["prompt"].strip().split("Human:")[-1].split("Assistant:")[0]
        lines += [
            f"> **Human:** {' '.join(prompt.split())}",
            f"> - pi0: {firsts[pid]['response'] if pid in firsts else '-'}",
            f"> - pi_SFT: {sft_firsts[pid]['response']}",
            f"> - Best-of-{max(by_n)}: {chosen[pid]['response']}",
            "",
        ]
    times = stage_seconds(art)
    lines.append(
        "Build time per stage (s): "
        + ", ".join(f"{k} {v:.0f}" for k, v in sorted(times.items(), key=lambda kv: -kv[1]))
        + f"; the first job {first['wall_s'] / 60:.1f} min, the second "
        f"{by_n[max(by_n)]['wall_s']:.0f} s."
    )
    if wall is not None:
        lines.append(f"The sweep took {wall / 60:.1f} minutes here.")
    return "\n".join(lines)


def render_harmless_divergences(sweep: Path, wall: float | None) -> str:
    """harmless_cpu's policies by divergence: forward KL (pi_SFT) and reverse KL (adversarial
    imitation from pi_SFT), with the metrics that apply to real text, replies side by side, and
    the adversarial stage's curve and time."""
    jobs = {r["divergence"]: r for r in load(sweep)}
    pools = {
        name: read_rows(
            r["artifacts"][
                "sample/sft/heldout" if name == "forward_kl" else "sample/policy/heldout"
            ]
        )
        for name, r in jobs.items()
    }
    lines = [
        "| divergence | gold (mean +- s.e.m.) | KL to pi_SFT | KL to pi0 | entropy (nats/reply) "
        "| length (tokens) | ended | distinct-1 | distinct-2 | self-BLEU "
        "| gold of Best-of-n on it |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in jobs.items():
        g, div, st = r["gold"]["policy"], r["div"], pool_stats(pools[name])
        kl_sft = "0" if name == "forward_kl" else f"{div['kl_sft']:.2f}"
        bon = r["gold"]["bon"]
        lines.append(
            f"| {name} | {fmt(g['mean'])} +- {fmt(g['sem'])} | {kl_sft} | {div['kl_init']:.2f} | "
            f"{st['entropy']:.1f} | {st['length']:.1f} | {st['finished']:.2f} | "
            f"{fmt(div['distinct_1'])} | {fmt(div['distinct_2'])} | {fmt(div['self_bleu'])} | "
            f"{fmt(bon['mean'])} +- {fmt(bon['sem'])} (n = {r['n']}) |"
        )
    lines.append("")
    if "reverse_kl" in jobs:
        adv = jobs["reverse_kl"]
        manifest = json.loads((Path(adv["artifacts"]["policy"]) / "manifest.json").read_text())
        history = json.loads((Path(adv["artifacts"]["policy"]) / "history.json").read_text())
        curve = ", ".join(f"{h['gold']:.2f} (step {h['step']})" for h in history if "gold" in h)
        accuracy = manifest["metrics"].get("final_disc_accuracy", float("nan"))
        lines += [
            f"Adversarial stage: {len(history)} steps in {manifest['build_s'] / 60:.1f} min; "
            f"discriminator accuracy over its last steps {accuracy:.2f}; "
            f"gold of the step's rollouts: {curve}.",
            "",
        ]
    firsts = {
        name: {row["prompt_id"]: row for row in rows if row["sample"] == 0}
        for name, rows in pools.items()
    }
    common = sorted(set.intersection(*(set(f) for f in firsts.values())))
    for pid in common[:2]:
        any_row = next(iter(firsts.values()))[pid]
        prompt = any_row["prompt"].strip().split("Human:")[-1].split("Assistant:")[0]
        lines.append(f"> **Human:** {' '.join(prompt.split())}")
        lines += [f"> - {name}: {firsts[name][pid]['response']}" for name in firsts]
        lines.append("")
    if wall is not None:
        lines.append(f"The sweep took {wall / 60:.1f} minutes here.")
    return "\n".join(lines).rstrip("\n")


@dataclass
class Table:
    args: list[str]  # the sweep, as typed after `python -m afd.train`
    render: Callable[[Path, float | None], str]
    figure: Callable[[Path, Path], None] | None = None  # draws the sweep's figure to a path


FIGURES = ROOT / "experiments" / "figures"


TABLES = {
    "harmless_cpu": Table(
        ["+experiment=harmless_cpu", "-m", "n=4,16", "progress=false", "logger=none"],
        render_harmless_cpu,
    ),
    "toy": Table(["+experiment=toy", "-m", "n=4,16,64", "progress=false"], render_toy),
    "divergence": Table(
        [
            "+experiment=toy_divergence",
            "-m",
            "divergence=forward_kl,reverse_kl,js",
            "seed=0,1,2",
            "progress=false",
            "logger=none",
        ],
        render_divergence,
    ),
    "harmless_cpu_divergences": Table(
        [
            "+experiment=harmless_cpu",
            "-m",
            "divergence=forward_kl,reverse_kl",
            "progress=false",
            "logger=none",
        ],
        render_harmless_divergences,
    ),
    "frontier": Table(
        [
            "+experiment=toy_frontier",
            "-m",
            "divergence=forward_kl,bond_forward,bond_reverse,bond_jeffreys,spin,reverse_kl",
            "seed=0,1,2",
            "progress=false",
            "logger=none",
        ],
        render_frontier,
        draw_frontier,
    ),
}


def replace(text: str, name: str, body: str) -> str:
    pattern = re.compile(
        rf"(<!-- afd:table {re.escape(name)} -->\n).*?(\n<!-- afd:end {re.escape(name)} -->)",
        re.S,
    )
    if not pattern.search(text):
        sys.exit(f"README.md has no markers for table {name!r}")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("table", nargs="?", choices=sorted(TABLES))
    parser.add_argument("--sweep-dir", type=Path, help="read a finished sweep instead")
    parser.add_argument("--list", action="store_true", help="the tables and their sweeps")
    args = parser.parse_args()
    if args.list or not args.table:
        for name, table in TABLES.items():
            print(f"{name}: python -m afd.train {' '.join(table.args)}")
        return
    table = TABLES[args.table]
    figure = FIGURES / f"{args.table}.png"
    if args.sweep_dir:
        body = table.render(args.sweep_dir, None)
        if table.figure:
            table.figure(args.sweep_dir, figure)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            run_train(table.args, Path(tmp))
            body = table.render(Path(tmp) / "multirun", time.perf_counter() - start)
            if table.figure:
                table.figure(Path(tmp) / "multirun", figure)
    README.write_text(replace(README.read_text(), args.table, body))
    print(body)


if __name__ == "__main__":
    main()
