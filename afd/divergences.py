"""Divergence recipes (`conf/divergence/*.yaml`): how the job's policy is trained from
demonstrations. The pipeline's `policy` node asks the recipe.

`ForwardKL` is the SFT stage as it is: forward KL(beta || pi) is token NLL on the
demonstrations (mass-covering), so its policy *is* pi_SFT. `Adversarial` trains a policy by
on-policy adversarial imitation on an f-divergence (`f`: reverse KL, JS, ...) with a
trajectory- or occupancy-level discriminator (mode-seeking for reverse KL).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from afd.discriminators import TrajectoryDiscriminator
from afd.fdivergences import FDivergence, ReverseKL
from afd.modules.adversarial import AdversarialConfig
from afd.modules.optim import OptimConfig
from afd.training import as_dataclass

POLICIES = ("init", "sft")


@dataclass
class ForwardKL:
    """The SFT policy, unchanged (`divergence=forward_kl`)."""

    name: str = "forward_kl"
    alias: str = "sft"  # the pipeline node this policy is
    level: str = "sft"


@dataclass
class Adversarial:
    """Adversarial imitation on D_f(beta || pi) + kl_coef * KL(pi || reference)."""

    name: str = "{f}"  # "{f}" stands for the f-divergence's name
    f: FDivergence = field(default_factory=ReverseKL)
    discriminator: object = field(default_factory=TrajectoryDiscriminator)
    start: str = "sft"  # initial policy: sft | init
    reference: str = "sft"  # KL anchor: sft | init
    backbone: str = "sft"  # the discriminator's initial weights: sft | init
    num_prompts: int | None = None  # training prompts (demonstrations) used; None: all
    steps: int = 200
    prompts_per_step: int = 16
    samples_per_prompt: int = 4
    kl_coef: float = 0.05
    disc_updates_per_step: int = 1
    policy_update_every: int = 1
    disc_warmup_steps: int = 10
    logit_clip: float = 10.0
    temperature: float = 1.0
    log_every: int = 10
    policy_optim: OptimConfig = field(default_factory=OptimConfig)
    disc_optim: OptimConfig = field(default_factory=OptimConfig)
    alias: None = None

    def __post_init__(self):
        self.name = self.name.format(f=self.f.name)
        self.level = self.discriminator.level
        self.policy_optim = as_dataclass(OptimConfig, self.policy_optim, "divergence.policy_optim")
        self.disc_optim = as_dataclass(OptimConfig, self.disc_optim, "divergence.disc_optim")
        for key in ("start", "reference", "backbone"):
            if getattr(self, key) not in POLICIES:
                raise ValueError(
                    f"divergence.{key} must be one of {POLICIES}, got {getattr(self, key)!r}"
                )
        for key, low in (
            ("steps", 1),
            ("prompts_per_step", 1),
            ("samples_per_prompt", 2),
            ("disc_updates_per_step", 1),
            ("policy_update_every", 1),
            ("disc_warmup_steps", 0),
            ("log_every", 1),
        ):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"divergence.{key} must be an integer >= {low}, got {value!r}")
        if self.disc_warmup_steps >= self.steps:
            raise ValueError(
                f"divergence.disc_warmup_steps ({self.disc_warmup_steps}) leaves no "
                f"policy update in divergence.steps ({self.steps})"
            )
        if not self.kl_coef >= 0:
            raise ValueError(f"divergence.kl_coef must be >= 0, got {self.kl_coef}")
        if not self.logit_clip > 0:
            raise ValueError(f"divergence.logit_clip must be > 0, got {self.logit_clip}")
        if not self.temperature > 0:
            raise ValueError(f"divergence.temperature must be > 0, got {self.temperature}")

    def policies(self) -> dict[str, str]:
        return {"start": self.start, "reference": self.reference, "backbone": self.backbone}

    def config(self, max_new_tokens: int) -> AdversarialConfig:
        keys = (
            "steps",
            "prompts_per_step",
            "samples_per_prompt",
            "kl_coef",
            "disc_updates_per_step",
            "policy_update_every",
            "disc_warmup_steps",
            "logit_clip",
            "temperature",
            "log_every",
            "policy_optim",
            "disc_optim",
        )
        return AdversarialConfig(
            max_new_tokens=max_new_tokens, **{k: getattr(self, k) for k in keys}
        )
