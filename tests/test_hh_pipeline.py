"""The paper's experiments end to end on real HH text, with tiny local models in place of
GPT-2, Gemma and the golden reward models (tests/tiny_hf.py)."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from tiny_hf import HH_DIR, HH_HARMLESS_TEST

from afd.core.artifacts import read_samples, read_scores
from afd.models.batching import Lengths
from afd.models.dialogue import cut_at_turn, split_pair
from afd.models.loading import load_policy
from afd.models.scoring import sequence_logprobs
from afd.models.tokenizers import load_tokenizer
from afd.pipeline.job import run_job
from afd.tasks.data_dir import DataDir

# Real HH text from the one local file (train and held-out split it by hash), small counts.
SMALL = [
    "trainer=cpu",
    "logger=none",
    "progress=false",
    f"data.task.path={HH_DIR}",
    "data.task.train_split=test",
    "data.task.heldout_split=null",
    "data.task.num_train_prompts=64",
    "data.task.num_heldout_prompts=4",
    "data.task.num_pairs=64",
    "data.lengths.max_prompt_tokens=96",
    "data.lengths.max_response_tokens=48",
    "data.max_new_tokens=24",
    "sft.schedule.epochs=2",
    "sft.schedule.batch_size=16",
    "sft.optim.lr=3.0e-3",
    "sft.optim.warmup_steps=2",
    "rm.num_prompts=32",
    "rm.schedule.epochs=1",
    "rm.schedule.batch_size=16",
    "rm.optim.lr=1.0e-3",
    "rm.optim.warmup_steps=2",
    "sampling.batch_size=64",
    "bon.n_max=8",
    "eval.coverage_samples=8",
    "bon.num_prompts=4",
    "n=4",
    "eval.init_samples_per_prompt=2",
    "gold.max_length=160",
]


def raw_row(source: str) -> dict:
    line = int(source.rsplit(":", 1)[1])
    with gzip.open(HH_HARMLESS_TEST, "rt", encoding="utf-8") as f:
        for i, row in enumerate(f, start=1):
            if i == line:
                return json.loads(row)
    raise AssertionError(source)


@pytest.mark.slow
def test_harmless_experiment_on_real_text(tiny_cfg, tiny_hh_models):
    cfg = tiny_cfg(
        "+experiment=harmless",
        *SMALL,
        f"model.name_or_path={tiny_hh_models['policy']}",
        f"gold.name_or_path={tiny_hh_models['gold']}",
        drop=("",),
    )
    assert (
        cfg.gold._target_ == "afd.tasks.gold.RewardModelGold"
        and cfg.sampling.stop_strings[0] == "\nHuman:"
    )
    results = run_job(cfg)
    stages = results["stages"]
    assert stages["init"] == "reference"  # the pretrained model is used in place, not copied
    assert {s for k, s in stages.items() if k != "init"} == {"trained"}
    for node in (
        "data",
        "sft",
        "sample/init/train",
        "sample/sft/train",
        "reward",
        "sample/sft/heldout",
        "score/gold/sft/heldout",
        "score/reward/sft/heldout",
        "score/gold/demo/heldout",
    ):
        assert node in stages, node

    # prompts and demonstrations are those of the real rows
    data = DataDir(results["artifacts"]["data"])
    train, heldout, pairs = data.examples("train"), data.examples("heldout"), data.pairs()
    assert len(train) == 64 and len(heldout) == 4 and len(pairs) == 64
    for e in train + heldout:
        row = raw_row(e.meta["source"])
        prompt, reply, _ = split_pair(row["chosen"], row["rejected"])
        assert (e.prompt, e.response) == (prompt, cut_at_turn(reply)[0])
    assert not {e.prompt for e in heldout} & ({e.prompt for e in train} | {p.prompt for p in pairs})

    # SFT moved the policy towards the demonstrations it never saw
    tok = load_tokenizer(results["artifacts"]["sft"])
    rows = [{"prompt": e.prompt, "response": e.response} for e in heldout]
    lengths = Lengths(96, 48)
    sft_lp = sequence_logprobs(load_policy(results["artifacts"]["sft"], tok), tok, rows, lengths)
    init_lp = sequence_logprobs(load_policy(results["artifacts"]["init"], tok), tok, rows, lengths)
    assert sft_lp.mean() > init_lp.mean() + 10  # nats per held-out demonstration

    # samples are cut at the next turn and scored by the golden reward model
    pool = read_samples(results["artifacts"]["sample/sft/heldout"])
    assert len(pool) == 4 * 8 and not any("\nHuman:" in r["response"] for r in pool)
    gold = read_scores(results["artifacts"]["score/gold/sft/heldout"])
    assert np.isfinite(gold).all() and gold.std() > 0
    assert results["gold"]["sft"]["mean"] == pytest.approx(gold.mean())
    assert results["heldout_prompts"] == 4 and 0 <= results["rm_accuracy"] <= 1
    assert np.isfinite(results["gold"]["bon"]["mean"]) and np.isfinite(
        results["gold"]["demo"]["mean"]
    )


@pytest.mark.slow
def test_gemma_variant_with_lora_and_the_bradley_terry_baseline(tiny_cfg, tiny_hh_models):
    """`+experiment=helpful_gemma reward=bt`: bf16 LoRA policy, Gemma-style tokenizer (BOS,
    own pad), BT reward model on the HH pairs, chat-template golden reward model."""
    cfg = tiny_cfg(
        "+experiment=helpful_gemma",
        "reward=bt",
        *SMALL,
        "data.task.data_dir=harmless-base",
        f"model.name_or_path={tiny_hh_models['gemma_policy']}",
        "model.lora.target_modules=[c_attn]",
        f"gold.name_or_path={tiny_hh_models['gold_chat']}",
        "gold.dtype=float32",
        "sft.optim.lr=3.0e-2",
        drop=("",),
    )
    assert (
        cfg.model.dtype == "bfloat16"
        and cfg.gold.format._target_ == "afd.models.dialogue.ChatTemplate"
    )
    results = run_job(cfg)
    assert (
        results["reward"] == "bt" and "sample/init/train" not in results["stages"]
    )  # BT needs no samples
    manifest = json.loads((Path(results["artifacts"]["reward"]) / "manifest.json").read_text())
    assert manifest["metrics"]["train_pairs"] + manifest["metrics"]["val_pairs"] == 64
    assert 0 <= results["rm_accuracy"] <= 1
    sft_manifest = json.loads((Path(results["artifacts"]["sft"]) / "manifest.json").read_text())
    assert 0 < sft_manifest["metrics"]["trainable_parameters"] < 20_000  # adapters only
    assert np.isfinite(results["gold"]["bon"]["mean"])
