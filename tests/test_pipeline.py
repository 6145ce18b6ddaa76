"""The whole toy pipeline at test size, through the composed configs."""

import json
from pathlib import Path

import pytest

from afd.models.loading import load_policy
from afd.models.scoring import sequence_logprobs
from afd.models.tokenizers import load_tokenizer
from afd.pipeline.job import RESULTS, run_job
from afd.pipeline.validate import validate
from afd.tasks.data_dir import DataDir

RESULT_KEYS = {
    "experiment",
    "n",
    "reward",
    "seed",
    "gold",
    "bon_win_rate_vs_sft",
    "bon_kl_analytic",
    "rm_accuracy",
    "rm_spearman_gold",
    "stages",
    "wall_s",
}


# At test size the default SFT schedule ends inside its warm-up; this one visibly moves pi0.
SFT_THAT_MOVES = ("sft.optim.lr=3e-3", "sft.optim.warmup_steps=0")


def demo_logprob(results: dict, policy: str, lengths) -> float:
    """Mean log pi(y|x) of the held-out demonstrations under a job's `policy` artifact."""
    examples = DataDir(Path(results["artifacts"]["data"])).examples("heldout")
    rows = [{"prompt": e.prompt, "response": e.response} for e in examples]
    path = results["artifacts"][policy]
    tokenizer = load_tokenizer(path, False)
    model = load_policy(path, tokenizer, "float32", False)
    return float(sequence_logprobs(model, tokenizer, rows, lengths).mean())


@pytest.mark.slow
def test_sweep_over_n_trains_once_and_reports(tiny_cfg, tmp_path):
    first = run_job(tiny_cfg("n=2", *SFT_THAT_MOVES))
    assert RESULT_KEYS <= set(first)
    assert set(first["gold"]) == {"init", "sft", "demo", "bon", "policy"}
    # divergence=forward_kl (the default): the job's policy is pi_SFT itself
    assert first["divergence"] == "forward_kl"
    assert first["gold"]["policy"] == first["gold"]["sft"]
    assert 0 <= first["div"]["precision"] <= 1 and first["div"]["forward_kl"] > 0
    assert all(set(v) == {"mean", "sem"} for v in first["gold"].values())
    assert set(first["stages"].values()) == {"trained"}
    for stage in (
        "data",
        "init",
        "sft",
        "reward",
        "sample/sft/heldout",
        "sample/init/train",
        "policy_metrics/sft",
    ):
        assert first["stages"][stage] == "trained"
    second = run_job(tiny_cfg("n=8", *SFT_THAT_MOVES))
    assert set(second["stages"].values()) == {"cached"}
    assert second["gold"]["sft"] == first["gold"]["sft"]
    assert second["bon_kl_analytic"] > first["bon_kl_analytic"]
    saved = json.loads((tmp_path / "out" / RESULTS).read_text())
    assert saved["n"] == 8
    # forward KL moves pi0 towards the demonstrator, even at this size: the held-out
    # demonstrations are likelier under pi_SFT (gold rewards of the samples are too noisy
    # to order at this size; the full-size toy table shows them)
    lengths = validate(tiny_cfg("n=2", *SFT_THAT_MOVES)).lengths
    sft, init = demo_logprob(first, "sft", lengths), demo_logprob(first, "init", lengths)
    assert sft > init + 1.0, (sft, init)
    assert (
        max(first["gold"]["init"]["mean"], first["gold"]["sft"]["mean"])
        < first["gold"]["demo"]["mean"]
    )
    assert first["div"]["kl_init"] > 0
    assert 0 <= first["rm_accuracy"] <= 1


@pytest.mark.slow
def test_cache_false_retrains(tiny_cfg):
    run_job(tiny_cfg())
    again = run_job(tiny_cfg("cache=false"))
    assert set(again["stages"].values()) == {"trained"}


@pytest.mark.slow
@pytest.mark.parametrize("reward", ["logratio", "demo_init", "demo_sft", "bt"])
def test_reward_variants_run(tiny_cfg, reward):
    drop = ("reward.num_prompts",) if reward == "bt" else ()
    results = run_job(tiny_cfg(f"reward={reward}", drop=drop))
    assert results["reward"] == reward
    assert results["rm_accuracy"] is not None


@pytest.mark.slow
def test_a_nan_reward_stops_the_job_naming_stage_policy_and_rows(tiny_cfg, tmp_path, monkeypatch):
    import numpy as np

    from afd.models.scoring import ClassifierScorer
    from afd.pipeline.stages.score import NonFiniteScores

    score = ClassifierScorer.score

    def diverged(self, rows):
        out = score(self, rows)
        out[3] = np.nan
        return out

    monkeypatch.setattr(ClassifierScorer, "score", diverged)
    with pytest.raises(NonFiniteScores) as err:
        run_job(tiny_cfg())
    message = str(err.value)
    assert message.startswith("stage score/reward/sft/heldout: the reward scorer")
    assert "gave 1 non-finite scores of 48 rows" in message
    out = tmp_path / "out"
    assert not (out / RESULTS).exists()
    failure = json.loads((out / "failure.json").read_text())
    assert failure["kind"] == "input" and "non-finite" in failure["error"]
    # nothing of the bad scores was cached
    assert not list((tmp_path / "cache" / "score").glob("*/manifest.json")) or all(
        "reward" not in json.loads(m.read_text())["upstream"]
        for m in (tmp_path / "cache" / "score").glob("*/manifest.json")
    )
