"""The README's "Extending afd" examples, each a real part of afd added in one file plus its
YAML: a new f-divergence (Neyman chi^2), a new reward recipe (sft_likelihood), a new
policy-training method (bond_forward) and a new data task (alpaca)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_config
from hydra.utils import instantiate

from afd.core.artifacts import read_samples, read_scores
from afd.core.errors import DataError
from afd.models.batching import Lengths
from afd.models.loading import load_policy
from afd.models.scoring import load_scorer, sequence_logprobs
from afd.models.tokenizers import load_tokenizer
from afd.pipeline.job import run_job
from afd.tasks.alpaca import AlpacaTask


def test_a_new_f_divergence_is_a_class_and_a_yaml():
    recipe = instantiate(compose_config(["divergence=f_gan", "divergence/f=neyman"]).divergence)
    assert (recipe.name, recipe.f.name) == ("f_gan_neyman", "neyman")
    logit = torch.tensor([-1.0, 0.0, 2.0])
    torch.testing.assert_close(recipe.f.reward(logit), 2 * (1 - torch.exp(-logit)))


@pytest.mark.slow
def test_a_new_reward_recipe_scores_log_pi_sft(tiny_cfg):
    results = run_job(tiny_cfg("reward=sft_likelihood"))
    assert results["reward"] == "sft_likelihood" and 0 <= results["rm_accuracy"] <= 1
    arts = results["artifacts"]
    rows = read_samples(arts["sample/sft/heldout"])[:12]
    tok = load_tokenizer(arts["sft"])
    lengths = Lengths(**compose_config([]).data.lengths)
    expected = sequence_logprobs(load_policy(arts["sft"], tok), tok, rows, lengths)
    np.testing.assert_allclose(load_scorer(arts["reward"]).score(rows), expected, rtol=1e-5)


@pytest.mark.slow
def test_a_new_policy_method_distils_best_of_n(tiny_cfg):
    n, prompts = 4, 48
    results = run_job(
        tiny_cfg(
            "divergence=bond_forward",
            f"divergence.n={n}",
            f"divergence.num_prompts={prompts}",
            "divergence.schedule.epochs=3",
            "divergence.optim.lr=3.0e-3",
        )
    )
    assert results["divergence"] == "bond_forward" and results["divergence_level"] == "best_of_n"
    arts = results["artifacts"]
    manifest = json.loads((Path(arts["policy"]) / "manifest.json").read_text())
    assert manifest["upstream"]["reference"]["path"] == arts["sft"]
    assert manifest["metrics"]["rows"] == prompts
    # it was trained on exactly the highest-reward of each prompt's n reference samples ...
    pool = read_samples(arts[f"sample/sft/train/best_of_{n}"])
    scores = read_scores(arts[f"score/reward/sft/train/best_of_{n}"]).reshape(-1, n)
    best = [pool[i * n + int(np.argmax(s))] for i, s in enumerate(scores)]
    assert len(best) == prompts
    # ... and made them likelier than the reference does, by a margin
    tok = load_tokenizer(arts["policy"])
    lengths = Lengths(**compose_config([]).data.lengths)
    logp = {
        name: sequence_logprobs(load_policy(arts[name], tok), tok, best, lengths).mean()
        for name in ("sft", "policy")
    }
    assert logp["policy"] > logp["sft"] + 0.5, logp


def write_alpaca(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


ALPACA = [
    {"instruction": f"Name a colour number {i}.", "input": "", "output": f"Blue {i}."}
    for i in range(40)
] + [{"instruction": "Translate to French.", "input": "good morning", "output": "Bonjour."}]


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_a_new_data_task_reads_alpaca_rows(tmp_path, suffix):
    path = write_alpaca(tmp_path / f"alpaca{suffix}", ALPACA)
    task = AlpacaTask(str(path), None, 0.1, None, 500, True, 0)
    data = task.build()
    rows = data.train + data.heldout
    assert len(rows) == len(ALPACA) and data.heldout and not data.pairs
    assert not {e.prompt for e in data.train} & {e.prompt for e in data.heldout}
    french = next(e for e in rows if "French" in e.prompt)
    assert french.prompt == "\n\nHuman: Translate to French.\n\ngood morning\n\nAssistant:"
    assert french.response == "Bonjour."


def test_a_bad_alpaca_row_names_its_file_and_line(tmp_path):
    path = write_alpaca(tmp_path / "bad.jsonl", [ALPACA[0], {"instruction": "x"}])
    with pytest.raises(DataError, match=r"bad.jsonl:2: missing field 'output'"):
        AlpacaTask(str(path), None, 0.1, None, 500, True, 0).build()
    with pytest.raises(DataError, match="data.task.train=.*: no such file"):
        AlpacaTask(str(tmp_path / "nope.json"), None, 0.1, None, 500, True, 0)
