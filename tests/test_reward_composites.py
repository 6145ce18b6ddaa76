"""Reward ensembles and the heterogeneous IRL + Bradley-Terry reward, at test size: parts are
cached nodes shared across penalties, and the composite scores are exactly their formulas."""

import numpy as np
import pytest

from afd.models.scoring import load_scorer
from afd.pipeline.job import run_job

TINY_MEMBER = ("reward.num_prompts",)
ROWS = [
    {"prompt": "Human: thank you so much Assistant:", "response": r}
    for r in (
        "you are welcome",
        "happy to help",
        "goodbye !",
        "i like trains",
        "sure , here is how",
    )
]


@pytest.mark.slow
def test_ensemble_members_are_shared_and_the_score_is_mean_minus_penalty_std(tiny_cfg, launched):
    single = run_job(tiny_cfg("reward=init_sft"))
    launched.clear()
    mean = run_job(
        tiny_cfg("reward=ensemble", "reward.size=3", "rm.num_prompts=60", drop=TINY_MEMBER)
    )
    # member 0 is the single reward model itself; members 1, 2 differ by seed
    assert mean["stages"]["reward/member0"] == "cached"
    assert mean["stages"]["reward/member1"] == mean["stages"]["reward/member2"] == "trained"
    # members train through the stage launcher (workers when distributed); the mean does not
    assert launched == ["afd.recipes.reward.discriminator.Discriminator.build"] * 2
    conservative = run_job(
        tiny_cfg(
            "reward=ensemble_conservative", "reward.size=3", "rm.num_prompts=60", drop=TINY_MEMBER
        )
    )
    assert {conservative["stages"][f"reward/member{i}"] for i in range(3)} == {"cached"}
    assert conservative["stages"]["reward"] == "trained"  # only the combination is new
    members = [
        load_scorer(conservative["artifacts"][f"reward/member{i}"]).score(ROWS) for i in range(3)
    ]
    assert not np.allclose(members[0], members[1])
    np.testing.assert_allclose(
        members[0], load_scorer(single["artifacts"]["reward"]).score(ROWS), rtol=1e-6
    )
    stacked = np.stack(members)
    np.testing.assert_allclose(
        load_scorer(mean["artifacts"]["reward"]).score(ROWS), stacked.mean(0), rtol=1e-5
    )
    np.testing.assert_allclose(
        load_scorer(conservative["artifacts"]["reward"]).score(ROWS),
        stacked.mean(0) - stacked.std(0),
        rtol=1e-5,
        atol=1e-6,
    )
    assert (
        conservative["reward"] == "ensemble_conservative" and 0 <= conservative["rm_accuracy"] <= 1
    )


@pytest.mark.slow
def test_heterogeneous_reward_is_the_weighted_standardised_sum(tiny_cfg, launched):
    results = run_job(
        tiny_cfg(
            "reward=irl_bt",
            "rm.num_prompts=60",
            "reward.weights.irl=0.7",
            "reward.weights.bt=0.3",
            drop=TINY_MEMBER,
        )
    )
    arts = results["artifacts"]
    trained = {
        "afd.recipes.reward.discriminator.Discriminator.build",
        "afd.recipes.reward.bradley_terry.BradleyTerry.build",
    }
    assert trained <= set(launched) and not any("Heterogeneous" in c for c in launched)
    assert (
        results["stages"]["reward/irl"] in ("trained", "cached")
        and "reward/bt" in results["stages"]
    )
    import json
    from pathlib import Path

    stats = json.loads((Path(arts["reward"]) / "standardisation.json").read_text())
    expected = sum(
        w
        * (load_scorer(arts[f"reward/{name}"]).score(ROWS) - stats[name]["mean"])
        / stats[name]["std"]
        for name, w in (("irl", 0.7), ("bt", 0.3))
    )
    np.testing.assert_allclose(
        load_scorer(arts["reward"]).score(ROWS), expected, rtol=1e-5, atol=1e-6
    )
    # standardised on the IRL classifier's own rows: mean 0 there, by construction
    assert stats["irl"]["weight"] == 0.7 and stats["bt"]["std"] > 0
