"""The reward-KL frontier study: its analysis (afd/reporting/frontier.py) on hand-made results,
its experiment config, and, at test size, the one-line study run by
experiments/frontier_study.py (tiny model, few on-policy steps, two seeds) with the analysis
notebook executed on its results."""

import json
import math
import os
import re
import subprocess
import sys

import matplotlib
import pytest
from conftest import ROOT, TINY, compose_config, execute_notebook

from afd.reporting import frontier

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TEST_CONF = ROOT / "tests" / "conf"
SEARCHPATH = f"hydra.searchpath=[file://{TEST_CONF}]"
POLICIES = ("bond_forward", "bond_reverse", "bond_jeffreys", "spin", "reverse_kl")


# -- hand-made results ----------------------------------------------------------------------------
def curve(points: dict[int, tuple[float, float]]) -> dict:
    """A results.json `bon_curve` from {n: (gold_mean, kl_mean)}."""
    return {
        str(n): {"gold_mean": g, "gold_sem": 0.01, "kl_mean": kl, "kl_analytic": 9.0}
        for n, (g, kl) in points.items()
    }


def result(divergence: str, seed: int, gold: float, kl_sft=None, bon=None, **div) -> dict:
    div = {"precision": 0.5, "coverage": 0.4, "entropy": 10.0, "kl_init": 3.0, **div}
    if kl_sft is not None:
        div["kl_sft"] = kl_sft
    return {
        "divergence": divergence,
        "seed": seed,
        "gold": {"sft": {"mean": -1.0, "sem": 0.1}, "policy": {"mean": gold, "sem": 0.05}},
        "div": div,
        "bon_curve": bon or curve({1: (gold, 0.0), 2: (gold + 0.1, 0.2)}),
    }


def sweep() -> list[dict]:
    """Two seeds of every method; Best-of-16 has gold 0.5 (seed 0) and 0.7 (seed 1)."""
    bon = [
        curve({1: (0.1, 0.0), 4: (0.3, 0.5), 16: (0.5, 1.5), 64: (0.6, 2.5)}),
        curve({1: (0.3, 0.0), 4: (0.5, 0.7), 16: (0.7, 1.9), 64: (0.8, 3.1)}),
    ]
    raw = []
    for seed in (0, 1):
        raw.append(result("forward_kl", seed, 0.1 + 0.2 * seed, bon=bon[seed], precision=0.2))
        raw += [
            result("bond_forward", seed, 0.2 + 0.2 * seed, kl_sft=0.2 + 0.2 * seed),
            result("bond_reverse", seed, 0.7 + 0.2 * seed, kl_sft=1.0, coverage=0.1 * seed),
            result("bond_jeffreys", seed, 0.4 + 0.2 * seed, kl_sft=0.8),
            result("spin", seed, 0.6 + 0.2 * seed, kl_sft=0.3),  # on target, but not distilled
            result("reverse_kl", seed, 0.0 + 0.2 * seed, kl_sft=0.05, entropy=4.0),
        ]
    return raw


# -- the analysis ---------------------------------------------------------------------------------
def test_points_take_sft_and_best_of_n_from_the_forward_kl_job():
    df = frontier.points(sweep()).set_index(["method", "seed"])
    assert len(df) == 2 * 9
    sft = df.loc[("sft", 1)]
    # pi_SFT's KL to itself is not measured: it sits at 0 with its own policy metrics
    assert (sft.gold, sft.kl_sft, sft.precision, sft.kind) == (
        pytest.approx(0.3),
        0.0,
        0.2,
        "policy",
    )
    bon = df.loc[("bon_16", 1)]
    assert (bon.gold, bon.kl_sft, bon.kind) == (0.7, 1.9, "bon")
    assert df.loc[("bon_64", 0)][["gold", "kl_sft"]].tolist() == [0.6, 2.5]
    assert all(math.isnan(bon[k]) for k in ("precision", "coverage", "entropy"))
    rev = df.loc[("bond_reverse", 1)]
    assert (rev.gold, rev.kl_sft, rev.coverage) == (pytest.approx(0.9), 1.0, 0.1)
    assert df.loc[("reverse_kl", 0)].entropy == 4.0


def test_an_explicit_kl_of_pi_sft_to_itself_is_kept():
    raw = [result("forward_kl", 0, 0.1, kl_sft=0.0, bon=curve({4: (0.3, 0.5)}))]
    df = frontier.points(raw, bon_ns=(4,))
    assert df.method.tolist() == ["sft", "bon_4"] and df.kl_sft.tolist() == [0.0, 0.5]


def test_table_averages_over_seeds_in_method_order():
    tab = frontier.table(frontier.points(sweep()))
    assert list(tab.index) == ["sft", "bon_4", "bon_16", "bon_64", *POLICIES]
    assert (tab.seeds == 2).all()
    # two seeds a and b: mean (a + b) / 2, s.e.m. |a - b| / 2
    assert tab.loc["bon_16", "gold"] == pytest.approx(0.6)
    assert tab.loc["bon_16", "gold_sem"] == pytest.approx(0.1)
    assert tab.loc["bon_16", "kl_sft"] == pytest.approx(1.7)
    assert tab.loc["bon_16", "kl_sft_sem"] == pytest.approx(0.2)
    assert tab.loc["bond_forward", "kl_sft"] == pytest.approx(0.3)
    assert tab.loc["bond_forward", "kl_sft_sem"] == pytest.approx(0.1)
    assert tab.loc["bond_reverse", "coverage"] == pytest.approx(0.05)
    assert tab.loc["sft", "kl_sft"] == 0.0 and tab.loc["sft", "kl_sft_sem"] == 0.0
    assert tab.loc["sft", "precision"] == pytest.approx(0.2)
    assert tab.kind.tolist() == ["policy"] + ["bon"] * 3 + ["policy"] * 5


def test_one_seed_has_zero_sem_and_other_methods_come_last():
    raw = [r for r in sweep() if r["seed"] == 0] + [result("js", 0, 0.0, kl_sft=0.1)]
    tab = frontier.table(frontier.points(raw))
    assert list(tab.index)[-2:] == ["reverse_kl", "js"]
    assert (tab.seeds == 1).all() and (tab.gold_sem == 0).all()


def test_closest_distilled_policy_to_best_of_16():
    tab = frontier.table(frontier.points(sweep()))
    c = frontier.closest_distilled(tab, 16)
    # Best-of-16: gold 0.6; bond_forward 0.3, bond_reverse 0.8, bond_jeffreys 0.5; spin's 0.7
    # is not a distillation of Best-of-n
    assert c["closest"] == "bond_jeffreys"
    assert c["gaps"] == pytest.approx(
        {"bond_forward": -0.3, "bond_reverse": 0.2, "bond_jeffreys": -0.1}
    )
    assert (c["gold"], c["target_gold"], c["kl_sft"], c["target_kl_sft"]) == pytest.approx(
        (0.5, 0.6, 0.8, 1.7)
    )
    assert c["gap"] == pytest.approx(-0.1) and c["target"] == "bon_16"
    text = frontier.closest_statement(c)
    assert text.startswith("bond_jeffreys is the distilled policy closest to Best-of-16's gold:")
    assert "0.500 +- 0.100 against 0.600 +- 0.100 (gap -0.100)" in text
    assert "at KL 0.800 nats from pi_SFT against Best-of-16's 1.700" in text
    assert "bond_forward -0.300, bond_reverse +0.200" in text
    # closeness is by absolute gap: a policy above Best-of-n can win
    assert frontier.closest_distilled(tab, 64)["closest"] == "bond_reverse"


@pytest.mark.parametrize(
    "raw, message",
    [
        ([result("spin", 0, 0.1, kl_sft=0.1)], "no forward_kl job among ['spin']"),
        (
            [result("forward_kl", 0, 0.1, bon=curve({4: (0.1, 0.1), 16: (0.2, 0.2)}))],
            "has no n=64 (it has [4, 16]): run the sweep with bon.n_max >= 64",
        ),
        (
            [result("forward_kl", 0, 0.1, bon=curve({4: (0, 0), 16: (0, 0), 64: (0, 0)}))]
            + [result("spin", 0, 0.1)],
            "results of divergence=spin seed=0 have no div.kl_sft",
        ),
        (
            [
                result("forward_kl", 0, 0.1, bon=curve({4: (0, 0), 16: (0, 0), 64: (0, 0)})),
                result("spin", 0, 0.1, kl_sft=0.1),
                result("spin", 0, 0.2, kl_sft=0.1),
            ],
            "more than one job for method spin seed 0",
        ),
    ],
)
def test_results_the_frontier_cannot_use_are_named(raw, message):
    with pytest.raises(ValueError) as err:
        frontier.points(raw)
    assert message in str(err.value)


def test_closest_needs_its_best_of_n_and_a_distilled_policy():
    tab = frontier.table(frontier.points(sweep()))
    with pytest.raises(ValueError, match=r"no bon_8 row in the table"):
        frontier.closest_distilled(tab, 8)
    with pytest.raises(ValueError, match=r"no distilled policy \(bond_\*\)"):
        frontier.closest_distilled(
            tab.drop(index=["bond_forward", "bond_reverse", "bond_jeffreys"])
        )


def test_frontier_plot_joins_best_of_n_and_marks_every_method():
    tab = frontier.table(frontier.points(sweep()))
    fig, ax = plt.subplots()
    frontier.plot_frontier(tab, ax)
    (line,) = [ln for ln in ax.lines if ln.get_label() == "Best-of-n on pi_SFT"]
    assert line.get_xdata().tolist() == pytest.approx([0.0, 0.6, 1.7, 2.8])
    assert line.get_ydata().tolist() == pytest.approx([0.2, 0.4, 0.6, 0.7])
    assert len(ax.containers) == len(tab)  # one error-bar point per method
    bars = {c.get_label(): c for c in ax.containers}
    (x,), (y,) = bars["bond_forward"].lines[0].get_data()
    assert (x, y) == pytest.approx((0.3, 0.3))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["Best-of-n on pi_SFT", *tab.index]
    assert len({c.lines[0].get_marker() for c in ax.containers}) == len(tab)
    plt.close(fig)


def test_policy_metric_panel_has_one_bar_per_trained_policy():
    tab = frontier.table(frontier.points(sweep()))
    fig, axes = plt.subplots(1, 3)
    frontier.plot_policy_metrics(tab, axes)
    assert [ax.get_title() for ax in axes] == ["precision", "coverage", "entropy (nats)"]
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["sft", *POLICIES]
    heights = [p.get_height() for p in axes[2].patches]
    assert heights == pytest.approx([10.0, 10.0, 10.0, 10.0, 10.0, 4.0])
    plt.close(fig)


# -- the experiment -------------------------------------------------------------------------------
def header_command() -> str:
    text = (ROOT / "conf" / "experiment" / "toy_frontier.yaml").read_text()
    (command,) = re.findall(r"#\s+(python -m afd\.train .*)", text)
    return command


def test_experiment_composes_with_a_pool_for_best_of_64_and_its_command_matches_the_script(
    monkeypatch,
):
    cfg = compose_config(["+experiment=toy_frontier"])
    assert (cfg.name, cfg.n, cfg.bon.n_max) == ("toy_frontier", 16, 64)
    assert cfg.bon.n_max >= max(frontier.BON_NS)
    command = header_command()
    (divergences,) = re.findall(r"divergence=(\S+)", command)
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))
    from frontier_study import DIVERGENCES

    assert divergences == DIVERGENCES and command.endswith("seed=0,1,2")
    for choice in divergences.split(","):
        cfg = compose_config(["+experiment=toy_frontier", f"divergence={choice}"])
        assert cfg.divergence.name == choice
        if choice.startswith("bond_"):
            assert cfg.divergence.n == 16  # the Best-of-n they distil is the one compared


# -- end to end at test size ----------------------------------------------------------------------
TINY_CHOICES = "forward_kl,bond_forward_tiny,bond_reverse_tiny,bond_jeffreys_tiny,spin_tiny"
TINY_CHOICES += ",reverse_kl_short"


@pytest.mark.slow
def test_reduced_study_and_notebook(tmp_path, monkeypatch):
    # the experiment's bon.n_max (64) stays: Best-of-64 is one of the points; four held-out
    # prompts keep its twelve pools of 64 replies small
    drop = ("logger=", "progress=", "bon.n_max=", "data.task.num_heldout_prompts=")
    overrides = [o for o in TINY if not o.startswith(drop)] + ["data.task.num_heldout_prompts=4"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "experiments" / "frontier_study.py"),
            "--workdir",
            str(tmp_path),
            "--seeds",
            "0,1",
            "--divergences",
            TINY_CHOICES,
            SEARCHPATH,
            "logger=csv",
            *overrides,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "study wall" in proc.stdout
    (sweep_dir,) = {p.parent.parent for p in (tmp_path / "multirun").glob("*/*/*/results.json")}
    raw = [json.loads(p.read_text()) for p in sweep_dir.rglob("results.json")]
    assert sorted((r["divergence"], r["seed"]) for r in raw) == sorted(
        (d, s) for d in ("forward_kl", *POLICIES) for s in (0, 1)
    )
    # one pi0 for both seeds (pretrain.seed), one pi_SFT and reward model per seed, shared by
    # the six methods
    for stage, count in (("pretrain", 1), ("sft", 2), ("reward", 2)):
        assert len(list((tmp_path / "cache" / stage).glob("*/manifest.json"))) == count, stage
    for r in raw:
        assert r["n_max"] == 64 and {"4", "16", "64"} <= set(r["bon_curve"])
        if r["divergence"] != "forward_kl":
            assert math.isfinite(r["div"]["kl_sft"]), r["divergence"]

    tab = frontier.table(frontier.points(raw))
    assert list(tab.index) == ["sft", "bon_4", "bon_16", "bon_64", *POLICIES]
    assert (tab.seeds == 2).all()
    # Best-of-n's measured KL grows with n and stays below log n - (n-1)/n
    kl = tab.loc[["bon_4", "bon_16", "bon_64"], "kl_sft"].tolist()
    assert 0 < kl[0] < kl[1] < kl[2] < math.log(64) - 63 / 64
    # the script's statement is the analysis of the sweep it ran
    printed = json.loads(proc.stdout.split("closest distilled policy: ", 1)[1].splitlines()[0])
    assert printed == frontier.closest_distilled(tab, 16)
    assert frontier.closest_statement(printed) in proc.stdout

    text = execute_notebook("frontier_study", sweep_dir)
    assert "12 jobs" in text and "is the distilled policy closest to Best-of-16" in text

    monkeypatch.syspath_prepend(str(ROOT / "experiments"))
    from readme_tables import draw_frontier, render_frontier  # the README's, same analysis

    body = render_frontier(sweep_dir, None)
    assert "| bon_16 |" in body and "| bond_reverse |" in body
    assert frontier.closest_statement(printed) + "." in body
    draw_frontier(sweep_dir, tmp_path / "frontier.png")
    assert (tmp_path / "frontier.png").read_bytes()[:4] == b"\x89PNG"
