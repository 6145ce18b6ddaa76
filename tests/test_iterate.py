"""Iterative AfD at test size: each round retrains the reward model on the previous round's
policy and distils a new policy from its Best-of-n replies."""

import json
from pathlib import Path

import pytest
import torch

from afd.pipeline.job import run_job


@pytest.mark.slow
def test_rounds_retrain_reward_on_the_current_policy(tiny_cfg, launched):
    plain = run_job(tiny_cfg())
    launched.clear()
    iterated = run_job(tiny_cfg("rounds=2", "iterate.num_prompts=40", "iterate.n=4"))
    rounds = iterated["rounds"]["per_round"]
    assert [r["round"] for r in rounds] == [1, 2]
    # round 1 is the plain job: pi_SFT, Best-of-n under the job's own reward model
    assert rounds[0]["gold_policy"] == pytest.approx(plain["gold"]["sft"]["mean"])
    assert rounds[0]["gold_bon"] == pytest.approx(plain["gold"]["bon"]["mean"])
    arts = iterated["artifacts"]
    # round 2's reward model learned from round 1's policy samples, round 1's policy from
    # pi_SFT's Best-of-n replies under round 1's (the job's) reward model
    reward2 = json.loads((Path(arts["reward/round/1"]) / "manifest.json").read_text())
    assert reward2["upstream"]["positive"]["path"] == arts["sample/round/1/train"]
    assert reward2["upstream"]["backbone"]["path"] == arts["round/1"]
    distill = json.loads((Path(arts["round/1"]) / "manifest.json").read_text())
    assert distill["upstream"]["base"]["path"] == arts["sft"]
    scores = json.loads((Path(distill["upstream"]["scores"]["path"]) / "manifest.json").read_text())
    assert scores["upstream"]["reward"]["path"] == arts["reward"]
    assert distill["metrics"]["rows"] == 40
    from safetensors.torch import load_file

    before = load_file(str(Path(arts["sft"]) / "model.safetensors"))
    after = load_file(str(Path(arts["round/1"]) / "model.safetensors"))
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert isinstance(iterated["rounds"]["gold_final_policy"], float)
    # the new nodes that train (the policies of rounds 1 and 2, round 2's reward model) train
    # like SFT: through the stage launcher, in workers when the trainer is distributed
    distill, reward = (
        "afd.recipes.distill.Distill.build",
        "afd.recipes.reward.discriminator.Discriminator.build",
    )
    assert launched == [distill, reward, distill]
