"""AdversarialModule on a mini task: it learns the demonstration, under plain Lightning and
under the DeepSpeed strategy's one-optimizer rule (ZeRO-2 on CPU, in a child process like
tests/test_strategies.py). Policy-gradient pieces against brute force."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from child_process import run_in_child

from afd.objectives.losses import leave_one_out_baseline, policy_gradient_loss, reward_to_go

WORDS = ["a", "b", "c", "d", "e", "Human:", "Assistant:", "go"]
DEMO = "a b"


def test_leave_one_out_baseline_and_reward_to_go():
    values = torch.tensor([1.0, 2.0, 6.0, 10.0, 20.0, 30.0])
    expected = torch.tensor([4.0, 3.5, 1.5, 25.0, 20.0, 15.0])
    torch.testing.assert_close(leave_one_out_baseline(values, 3), expected)
    per_token = torch.arange(12.0).reshape(4, 3)
    loo = leave_one_out_baseline(per_token, 2)
    torch.testing.assert_close(loo[0], per_token[1])
    torch.testing.assert_close(loo[3], per_token[2])
    rewards = torch.tensor([[1.0, 2.0, 3.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    torch.testing.assert_close(reward_to_go(rewards, mask), torch.tensor([[6.0, 5.0, 3.0, 0.0]]))
    with pytest.raises(ValueError, match="samples per prompt"):
        leave_one_out_baseline(values, 1)


def test_policy_gradient_loss_gradient_is_reinforce():
    """One-token bandit, every action enumerated with its probability as weight: the
    surrogate's gradient is -E_pi[A grad log pi], and with a leave-one-out baseline over a
    full enumeration the expected gradient is unchanged."""
    theta = torch.tensor([0.2, -0.1, 0.4], requires_grad=True)
    reward = torch.tensor([1.0, 3.0, -2.0])
    logp = torch.log_softmax(theta, -1)
    pi = logp.exp().detach()
    loss = policy_gradient_loss((logp * pi * 3)[:, None], reward[:, None], torch.ones(3, 1))
    (grad,) = torch.autograd.grad(loss, theta)
    (exact,) = torch.autograd.grad(-(torch.softmax(theta, -1) * reward).sum(), theta)
    torch.testing.assert_close(grad, exact)


def mini_task(seed: int = 0):
    """Prompts "Human: go <x> Assistant:" whose demonstration is always "a b"; a random
    tiny policy (vocabulary of 11) rarely says it at first."""
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    from afd.models.batching import Lengths
    from afd.models.tokenizers import word_tokenizer
    from afd.recipes.adversarial.recipe import DemoCollator

    tok = word_tokenizer(WORDS)
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=16,
        n_embd=32,
        n_layer=1,
        n_head=2,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    policy = GPT2LMHeadModel(config)
    reference = GPT2LMHeadModel(config)
    reference.load_state_dict(policy.state_dict())
    disc = GPT2ForSequenceClassification(GPT2Config(**{**config.to_dict(), "num_labels": 1}))
    lengths = Lengths(8, 4)
    rows = []
    for x in "abcde":
        prompt = tok(f"Human: go {x} Assistant:", add_special_tokens=False)["input_ids"]
        demo = tok(" " + DEMO, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        rows.append((prompt, prompt + demo, len(prompt), {}, f"Human: go {x} Assistant:"))
    return tok, policy, reference, disc, rows, DemoCollator(tok.pad_token_id), lengths


@torch.no_grad()
def demo_logprob(policy, tok, rows) -> float:
    from afd.objectives.losses import sequence_logprob

    batch = DemoBatch(tok, rows)
    logits = policy(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
    ).logits
    return sequence_logprob(logits, batch["labels"]).mean().item()


def DemoBatch(tok, rows):
    from afd.recipes.adversarial.recipe import DemoCollator

    return DemoCollator(tok.pad_token_id)(rows)["demos"]


def train(strategy: str, out: Path, steps: int = 60) -> dict:
    """Entry point of a run (in-process or in a child): train, record before/after numbers."""
    import lightning as L
    from torch.utils.data import DataLoader

    from afd.models.generation.settings import SamplingSettings
    from afd.objectives.f_divergences import ReverseKL
    from afd.recipes.adversarial.discriminators import TrajectoryDiscriminator
    from afd.recipes.adversarial.module import AdversarialModule
    from afd.recipes.adversarial.recipe import Adversarial
    from afd.runtime.on_policy import DrawWithReplacement
    from afd.runtime.optim import OptimConfig
    from afd.runtime.trainer import manual_trainer_kwargs

    L.seed_everything(0, verbose=False)
    tok, policy, reference, disc, rows, collate, _ = mini_task()
    before = demo_logprob(policy, tok, rows)
    policy_params = [p.detach().clone() for p in policy.parameters()]
    disc_params = [p.detach().clone() for p in disc.parameters()]
    recipe = Adversarial(
        name="reverse_kl",
        f=ReverseKL(),
        discriminator=TrajectoryDiscriminator(),
        start="sft",
        reference="sft",
        backbone="sft",
        num_prompts=None,
        steps=steps,
        prompts_per_step=5,
        samples_per_prompt=8,
        kl_coef=0.0,
        disc_updates_per_step=1,
        policy_update_every=1,
        disc_warmup_steps=5,
        logit_clip=10.0,
        temperature=1.0,
        log_every=1000,
        policy_optim=OptimConfig(lr=1e-2),
        disc_optim=OptimConfig(lr=1e-3),
    )
    settings = SamplingSettings(max_new_tokens=3, temperature=1.0, top_p=1.0, top_k=0)
    module = AdversarialModule(policy, reference, disc, recipe, tok, settings, seed=0)
    trainer_cfg = {
        "accelerator": "cpu",
        "devices": 1,
        "gradient_clip_val": 1.0,
        "precision": "32-true",
        "strategy": {"plain": "auto"}.get(strategy)
        or {"_target_": "afd.runtime.strategies.CPUDeepSpeedStrategy", "stage": 2},
    }
    kwargs, module.clip = manual_trainer_kwargs(trainer_cfg)
    sampler = DrawWithReplacement(len(rows), steps * 5, seed=0)
    loader = DataLoader(rows, batch_size=5, sampler=sampler, collate_fn=collate, drop_last=True)
    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )
    trainer.fit(module, loader)
    from afd.runtime.strategies import export_hf_model

    export_hf_model(trainer, module, out / "policy", attr="policy")
    from transformers import AutoModelForCausalLM

    exported = AutoModelForCausalLM.from_pretrained(out / "policy")
    result = {
        "before": before,
        "after": demo_logprob(exported, tok, rows),
        "policy_moved": any(
            not torch.equal(a, b.detach().cpu())
            for a, b in zip(policy_params, module.policy.parameters())
        ),
        "disc_moved": any(
            not torch.equal(a, b.detach().cpu())
            for a, b in zip(disc_params, module.discriminator.parameters())
        ),
        "disc_accuracy": [r["disc_accuracy"] for r in module.history],
        "steps": len(module.history),
        "policy_updates": sum("policy_loss" in r for r in module.history),
    }
    from afd.runtime.workers import leave_process_group

    leave_process_group()  # as the pipeline's workers do
    (out / "result.json").write_text(json.dumps(result))
    return result


def check_learns(result: dict, steps: int) -> None:
    assert result["steps"] == steps and result["policy_updates"] == steps - 5
    assert result["policy_moved"] and result["disc_moved"]
    # the demonstration (first "a b <eos>" of a random 11-word policy: ~-7 nats) gains a lot
    assert result["after"] > result["before"] + 3.0, result
    assert sum(result["disc_accuracy"][:5]) / 5 < 0.9 or result["after"] > -1.0


def test_adversarial_module_learns_the_demonstration(tmp_path):
    check_learns(train("plain", tmp_path), 60)


@pytest.mark.slow
def test_adversarial_module_under_deepspeed_zero2(tmp_path):
    run_in_child(
        "test_adversarial",
        f"train('zero2', Path({str(tmp_path)!r}))",
        tmp_path,
        tmp_path / "result.json",
    )
    check_learns(json.loads((tmp_path / "result.json").read_text()), 60)


def test_a_confidently_wrong_discriminator_keeps_its_gradient():
    """Logits far past the clip (here -50 on demonstrations): the discriminator trains on its
    raw logits, so it still gets the gradient to recover; only the policy's reward is clipped."""
    from afd.models.generation.settings import SamplingSettings
    from afd.objectives.f_divergences import ReverseKL
    from afd.recipes.adversarial.discriminators import TrajectoryDiscriminator
    from afd.recipes.adversarial.module import AdversarialModule
    from afd.recipes.adversarial.recipe import DemoCollator

    tok, policy, reference, disc, rows, collate, _ = mini_task()
    disc.score.register_forward_hook(lambda module, args, out: out - 50.0)
    recipe = type("Recipe", (), {"discriminator": TrajectoryDiscriminator(), "f": ReverseKL()})
    settings = SamplingSettings(max_new_tokens=3, temperature=1.0, top_p=1.0, top_k=0)
    module = AdversarialModule(policy, reference, disc, recipe, tok, settings, seed=0)
    demos = DemoCollator(tok.pad_token_id)(rows)["demos"]
    loss, accuracy = module.discriminator_loss(demos, demos)
    loss.backward()
    assert float(loss) > 10 and float(accuracy) == 0.5  # every demonstration called fake
    assert disc.score.weight.grad.abs().sum() > 0.1
    # what a clip at 10 before the loss would have left it: no gradient at all
    disc.zero_grad()
    logits = disc(**{k: demos[k] for k in ("input_ids", "attention_mask")}).logits
    torch.nn.functional.softplus(-logits.clamp(-10, 10)).sum().backward()
    assert disc.score.weight.grad.abs().sum() == 0
