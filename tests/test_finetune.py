"""Pretrained policies: pad tokens, BOS, long responses, LoRA, gradient checkpointing, stops."""

import json

import numpy as np
import pytest
import torch
from conftest import compose_config, hf_sample, stage_context
from transformers import AutoModelForCausalLM

from afd.core.jsonl import write_jsonl
from afd.models.batching import Lengths, LMCollator, encode_prompt, encode_response, training_rows
from afd.models.loading import load_policy
from afd.models.options import LoraSpec, ModelOptions, prepare_for_training
from afd.models.scoring import sequence_logprobs
from afd.models.specs import PretrainedModel
from afd.models.tokenizers import load_tokenizer
from afd.recipes.sft import SFT
from afd.runtime.optim import OptimConfig
from afd.runtime.trainer import Schedule
from afd.tasks.records import Example

PROMPT = "\n\nHuman: How do I bake bread?\n\nAssistant:"
CPU = compose_config([]).trainer


def test_gpt2_style_tokenizer_gets_a_distinct_pad(tiny_hh_models):
    tok = load_tokenizer(tiny_hh_models["policy"])
    assert tok.pad_token == "<pad>" and tok.pad_token_id != tok.eos_token_id
    model = load_policy(tiny_hh_models["policy"], tok)
    assert model.get_input_embeddings().num_embeddings == len(tok)
    assert model.config.pad_token_id == tok.pad_token_id and tok.padding_side == "left"


def test_bos_only_for_tokenizers_that_add_it(tiny_hh_models):
    gpt2 = load_tokenizer(tiny_hh_models["policy"])
    gemma = load_tokenizer(tiny_hh_models["gemma_policy"])
    assert gemma.pad_token == "<pad>"  # Gemma's own pad is kept
    lengths = Lengths(max_prompt_tokens=8)
    assert gpt2.bos_token_id not in encode_prompt(gpt2, PROMPT, lengths)
    ids = encode_prompt(gemma, PROMPT, lengths)
    full = gemma(PROMPT, add_special_tokens=False)["input_ids"]
    assert len(ids) == 8 and ids == [gemma.bos_token_id] + full[-7:]  # BOS survives truncation
    right = encode_prompt(gemma, PROMPT, Lengths(max_prompt_tokens=8, prompt_truncation="right"))
    assert right == [gemma.bos_token_id] + full[:7]


def test_long_responses_truncate_or_drop(tiny_hh_models):
    tok = load_tokenizer(tiny_hh_models["policy"])
    long, short = "word " * 40, "Knead it."
    cut = encode_response(tok, long, Lengths(max_response_tokens=10))
    assert len(cut) == 10 and tok.eos_token_id not in cut
    assert encode_response(tok, short, Lengths(max_response_tokens=10))[-1] == tok.eos_token_id
    rows = [(PROMPT, long), (PROMPT, short)]
    assert training_rows(rows, tok, Lengths(max_response_tokens=10)) == (rows, 0)
    assert training_rows(rows, tok, Lengths(max_response_tokens=10, long_responses="drop")) == (
        [rows[1]],
        1,
    )
    with pytest.raises(ValueError, match="data.lengths.long_responses must be one of"):
        Lengths(long_responses="keep")


def test_model_options_come_from_the_model_config():
    cfg = compose_config(["model=gemma_2b"])
    from hydra.utils import instantiate

    options = instantiate(cfg.model).options()
    assert options == ModelOptions(
        "bfloat16", False, True, LoraSpec(16, 32, 0.05, ("q_proj", "k_proj", "v_proj", "o_proj"))
    )
    assert instantiate(compose_config([]).model).options() == ModelOptions()  # the tiny GPT-2
    with pytest.raises(ValueError, match="model.dtype must be one of"):
        PretrainedModel("gpt2", dtype="fp8")
    with pytest.raises(ValueError, match="model.lora: .*unexpected keyword argument 'rank'"):
        PretrainedModel("gpt2", lora={"rank": 4})


def one_step_loss_and_grads(path, options):
    tok = load_tokenizer(path)
    torch.manual_seed(0)
    model = prepare_for_training(load_policy(path, tok), options).train()
    batch = LMCollator(tok, Lengths(64, 32))(
        [(PROMPT, "Mix flour, water and yeast."), (PROMPT, "Buy it.")]
    )
    from afd.objectives.losses import forward_kl_nll

    loss = forward_kl_nll(
        model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
        ).logits,
        batch["labels"],
    )
    loss.backward()
    return float(loss), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_gradient_checkpointing_gives_the_same_gradients(tiny_hh_models):
    plain_loss, plain = one_step_loss_and_grads(tiny_hh_models["policy"], ModelOptions())
    ckpt_loss, ckpt = one_step_loss_and_grads(
        tiny_hh_models["policy"], ModelOptions(gradient_checkpointing=True)
    )
    assert plain_loss == pytest.approx(ckpt_loss, abs=1e-6)
    assert plain.keys() == ckpt.keys()
    for name in plain:
        torch.testing.assert_close(plain[name], ckpt[name], atol=1e-6, rtol=1e-5)


def test_lora_sft_trains_adapters_and_saves_a_plain_model(tiny_hh_models, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    demos = [
        Example(
            f"d{i}", PROMPT.replace("bread", f"bread {i}"), "Mix flour, water and yeast, then bake."
        )
        for i in range(48)
    ]
    write_jsonl(data / "train.jsonl", demos)
    (data / "info.json").write_text(json.dumps({"name": "t"}))
    out = tmp_path / "sft"
    out.mkdir()
    options = ModelOptions(lora=LoraSpec(r=4, alpha=8, dropout=0.0), gradient_checkpointing=True)
    sft = SFT(Schedule(epochs=3, batch_size=8), OptimConfig(lr=3e-2), 0.1, None)
    ctx = stage_context(lengths=Lengths(64, 32), trainer=CPU, model=options)
    metrics = sft.build(out, ctx, {"data": data, "init": tiny_hh_models["policy"]})
    total = sum(
        p.numel()
        for p in AutoModelForCausalLM.from_pretrained(tiny_hh_models["policy"]).parameters()
    )
    assert 0 < metrics["trainable_parameters"] < total / 10
    assert not (out / "adapter_config.json").exists()  # merged: a plain HF checkpoint
    tok = load_tokenizer(out)
    trained, init = load_policy(out, tok), load_policy(tiny_hh_models["policy"], tok)
    rows = [{"prompt": PROMPT, "response": "Mix flour, water and yeast, then bake."}]
    gain = sequence_logprobs(trained, tok, rows, Lengths(64, 32)) - sequence_logprobs(
        init, tok, rows, Lengths(64, 32)
    )
    assert gain[0] > 1.0  # the demonstration became much more likely (nats), through adapters alone
    same = [
        torch.equal(a, b)
        for (n, a), (_, b) in zip(trained.named_parameters(), init.named_parameters())
        if "mlp" in n
    ]
    assert all(same)  # LoRA touched only the attention projections


def test_generation_stops_at_the_next_human_turn(tiny_hh_models):
    tok = load_tokenizer(tiny_hh_models["policy"])
    model = load_policy(tiny_hh_models["policy"], tok)
    script = tok(" Sure, knead it.\n\nHuman: thanks\n\nAssistant: bye", add_special_tokens=False)[
        "input_ids"
    ]
    steps = {"n": 0}

    def force(module, args, out):  # the model writes `script`, one token per step
        forced = torch.full_like(out[:, -1], -1e9)
        forced[:, script[min(steps["n"], len(script) - 1)]] = 0
        steps["n"] += 1
        out[:, -1] = forced
        return out

    model.lm_head.register_forward_hook(force)
    stops = ("\n\nHuman:", "\n\nAssistant:")
    greedy = {"max_new_tokens": len(script), "temperature": 0.0}
    [[out]] = hf_sample(model, tok, [PROMPT], 1, Lengths(64, 64), stop_strings=stops, **greedy)
    assert out.response == "Sure, knead it." and out.finished
    assert steps["n"] < len(script)  # generation stopped at the stop string, not at max_new_tokens
    steps["n"] = 0
    [[free]] = hf_sample(model, tok, [PROMPT], 1, Lengths(64, 64), **greedy)
    assert free.response.startswith("Sure, knead it.\n\nHuman: thanks") and not free.finished
    assert np.isfinite(free.num_tokens)
