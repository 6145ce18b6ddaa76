"""The README's result tables, generated: run a table's sweep (or read a finished one) and
rewrite the README between its markers, so no number in them is typed by hand.

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


@dataclass
class Table:
    args: list[str]  # the sweep, as typed after `python -m afd.train`
    render: Callable[[Path, float | None], str]


TABLES = {
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
    if args.sweep_dir:
        body = table.render(args.sweep_dir, None)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            run_train(table.args, Path(tmp))
            body = table.render(Path(tmp) / "multirun", time.perf_counter() - start)
    README.write_text(replace(README.read_text(), args.table, body))
    print(body)


if __name__ == "__main__":
    main()
