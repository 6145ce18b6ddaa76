"""The divergence=, reward= and rounds= choices compose, and bad values fail before any work,
naming their key."""

import pytest
from conftest import CONF, compose_config

from afd.core.errors import ConfigError
from afd.pipeline.validate import validate
from afd.recipes.adversarial.recipe import Adversarial
from afd.recipes.bond.online import OnlineBoND
from afd.recipes.bond.recipe import BoND
from afd.recipes.sft import SFTPolicy as ForwardKL
from afd.recipes.spin.recipe import SPIN

# Every conf/divergence/*.yaml: its recipe class and level (the job's `divergence_level`).
RECIPES = {
    "forward_kl": (ForwardKL, "sft"),
    "reverse_kl": (Adversarial, "trajectory"),
    "js": (Adversarial, "trajectory"),
    "reverse_kl_occupancy": (Adversarial, "occupancy"),
    "f_gan": (Adversarial, "trajectory"),
    "bond_forward": (BoND, "best_of_n"),
    "bond_reverse": (OnlineBoND, "best_of_n"),
    "bond_jeffreys": (OnlineBoND, "best_of_n"),
    "spin": (SPIN, "trajectory"),
}


def test_every_divergence_yaml_is_listed():
    assert sorted(p.stem for p in (CONF / "divergence").glob("*.yaml")) == sorted(RECIPES)


@pytest.mark.parametrize("choice", sorted(RECIPES))
def test_every_divergence_choice_passes_the_job_checks(choice):
    recipe = validate(compose_config(["logger=none", f"divergence={choice}"])).divergence
    cls, level = RECIPES[choice]
    assert type(recipe) is cls and recipe.level == level
    assert recipe.name.startswith(choice)  # f_gan names itself by its f: f_gan_hellinger


@pytest.mark.parametrize(
    "choice, name, level, f",
    [
        ("forward_kl", "forward_kl", "sft", None),
        ("reverse_kl", "reverse_kl", "trajectory", "reverse_kl"),
        ("js", "js", "trajectory", "js"),
        ("reverse_kl_occupancy", "reverse_kl_occupancy", "occupancy", "reverse_kl"),
        ("f_gan", "f_gan_hellinger", "trajectory", "hellinger"),
    ],
)
def test_divergence_choices(choice, name, level, f):
    from hydra.utils import instantiate

    recipe = instantiate(compose_config([f"divergence={choice}"]).divergence)
    assert (recipe.name, recipe.level) == (name, level)
    assert isinstance(recipe, ForwardKL if f is None else Adversarial)
    if f:
        assert recipe.f.name == f


def test_nested_choices_sweep_f_and_discriminator():
    from hydra.utils import instantiate

    recipe = instantiate(
        compose_config(
            ["divergence=f_gan", "divergence/f=pearson", "divergence/discriminator=occupancy"]
        ).divergence
    )
    assert (recipe.name, recipe.level, recipe.f.name) == ("f_gan_pearson", "occupancy", "pearson")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["divergence=reverse_kl", "divergence.samples_per_prompt=1"],
            "divergence.samples_per_prompt must be an integer >= 2",
        ),
        (["divergence=js", "divergence.start=demo"], "divergence.start must be one of"),
        (
            ["divergence=reverse_kl", "divergence.disc_warmup_steps=150"],
            "divergence.disc_warmup_steps (150) leaves no",
        ),
        (["divergence=reverse_kl", "divergence.kl_coef=-1"], "divergence.kl_coef must be >= 0"),
        (["rounds=0"], "rounds must be >= 1"),
        (["eval.coverage_samples=0"], "eval.coverage_samples must be in [1, 64], got 0"),
        (["reward=ensemble", "reward.size=1"], "reward.size must be an integer >= 2"),
        (
            ["reward=ensemble", "reward.resample=jackknife"],
            "reward.resample must be one of ('seed', 'bootstrap')",
        ),
        (
            ["reward=irl_bt", "+reward.weights.extra=1.0"],
            "reward.weights must name exactly the parts",
        ),
    ],
)
def test_bad_values_name_their_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(compose_config(["logger=none", *overrides]))
    assert message in str(err.value)


def test_manual_optimisation_refuses_gradient_accumulation():
    from afd.runtime.trainer import manual_trainer_kwargs

    kwargs, clip = manual_trainer_kwargs({"accelerator": "cpu", "gradient_clip_val": 0.5})
    assert "gradient_clip_val" not in kwargs and clip == 0.5
    with pytest.raises(ValueError, match="trainer.accumulate_grad_batches must be 1"):
        manual_trainer_kwargs({"accelerator": "cpu", "accumulate_grad_batches": 2})
    ds, clip = manual_trainer_kwargs(
        {
            "strategy": {"_target_": "afd.runtime.strategies.CPUDeepSpeedStrategy", "stage": 2},
            "gradient_clip_val": 1.0,
        }
    )
    assert clip is None and ds["strategy"].config["gradient_clipping"] == 1.0  # DeepSpeed clips


def test_stage_keys_hold_resolved_values(tmp_path):
    """data.noise reaches data.task.noise through an interpolation; the data key must change."""
    from afd.pipeline.graph import Pipeline
    from afd.reporting.tracking import Tracker

    keys = set()
    for noise in (0.1, 0.3):
        cfg = compose_config(
            [
                "data.task.num_train_prompts=20",
                "data.task.num_heldout_prompts=4",
                "data.task.num_pairs=4",
                f"data.noise={noise}",
            ],
            tmp_path,
        )
        keys.add(Pipeline.from_config(cfg, Tracker()).data().key)
    assert len(keys) == 2


def test_a_fixed_pretrain_seed_keeps_one_pi0_over_a_seed_sweep(tmp_path):
    """pretrain.seed=0 gives seeds 1 and 2 the pi0 of seed 0 (same key as a job that never set
    it); without it each seed pretrains its own."""
    from types import SimpleNamespace

    from afd.core.cache import artifact_key
    from afd.pipeline.graph import Pipeline
    from afd.reporting.tracking import Tracker

    def init_key(*overrides):
        cfg = compose_config(["data.task.num_corpus=50", *overrides], tmp_path)
        pipeline = Pipeline.from_config(cfg, Tracker())

        def node(label, stage, config, upstream, build):  # the key, nothing built
            return SimpleNamespace(
                key=artifact_key(stage, config, {k: a.key for k, a in upstream.items()})
            )

        pipeline._node = node
        return pipeline.init_policy().key

    base = init_key("seed=0")
    assert init_key("seed=1", "pretrain.seed=0") == base
    assert init_key("seed=2", "pretrain.seed=0") == base
    assert init_key("seed=0", "pretrain.seed=0") == base
    assert init_key("seed=1") != base
    assert init_key("seed=0", "pretrain.seed=1") == init_key("seed=1")


def test_a_bad_pretrain_seed_names_its_key(tmp_path):
    from afd.pipeline.graph import Pipeline
    from afd.reporting.tracking import Tracker

    with pytest.raises(ConfigError, match="pretrain.seed must be an integer"):
        Pipeline.from_config(compose_config(["pretrain.seed=0.5"], tmp_path), Tracker())


ON_POLICY = ("reverse_kl", "js", "reverse_kl_occupancy", "f_gan", "bond_reverse", "bond_jeffreys")


@pytest.mark.parametrize("choice", ON_POLICY)
def test_the_on_policy_scale_reaches_every_on_policy_divergence(choice):
    sizes = {"steps": 7, "prompts_per_step": 3, "samples_per_prompt": 2, "log_every": 5}
    overrides = [f"on_policy.{k}={v}" for k, v in sizes.items()] + ["on_policy.disc_warmup_steps=1"]
    recipe = validate(
        compose_config(["logger=none", f"divergence={choice}", *overrides])
    ).divergence
    assert {k: getattr(recipe, k) for k in sizes} == sizes
    if isinstance(recipe, Adversarial):
        assert recipe.disc_warmup_steps == 1
    # a divergence's own key still wins over the shared scale
    direct = compose_config([f"divergence={choice}", "on_policy.steps=7", "divergence.steps=9"])
    assert direct.divergence.steps == 9


def test_harmless_cpu_sweeps_forward_and_reverse_kl_as_typed():
    """`+experiment=harmless_cpu -m divergence=forward_kl,reverse_kl`: both jobs pass the job
    checks, reverse KL at the experiment's CPU scale."""
    jobs = {
        choice: validate(
            compose_config(["logger=none", "+experiment=harmless_cpu", f"divergence={choice}"])
        ).divergence
        for choice in ("forward_kl", "reverse_kl")
    }
    reverse = jobs["reverse_kl"]
    assert (reverse.steps, reverse.prompts_per_step, reverse.samples_per_prompt) == (12, 8, 2)
    assert reverse.disc_warmup_steps < reverse.steps
