"""The paper's claims, checked on the synthetic task at its default size."""

import pytest
from conftest import compose_config
from omegaconf import open_dict

from afd.pipeline.job import run_job


def run(toy_cache, tmp_path, *overrides):
    cfg = compose_config(["logger=none", "progress=false", *overrides], toy_cache)
    with open_dict(cfg):
        cfg.output_dir = str(tmp_path / "_".join(o.replace("/", "-") for o in overrides))
    return run_job(cfg)


@pytest.mark.slow
def test_heterogeneous_demonstrations_fool_demo_classifiers_not_init_sft(toy_cache, tmp_path):
    init_sft = run(toy_cache, tmp_path, "+experiment=toy_heterogeneous", "reward=init_sft")
    demo_init = run(toy_cache, tmp_path, "+experiment=toy_heterogeneous", "reward=demo_init")
    # the Demo-Init classifier separates perfectly on the mark no policy sample has ...
    assert demo_init["rm_accuracy"] > 0.97
    # ... so it tells policy samples apart by nothing useful, and Best-of-64 gains nothing
    assert demo_init["gold"]["bon"]["mean"] < demo_init["gold"]["sft"]["mean"]
    assert init_sft["gold"]["bon"]["mean"] > init_sft["gold"]["sft"]["mean"] + 0.05
    assert init_sft["gold"]["bon"]["mean"] > demo_init["gold"]["bon"]["mean"] + 0.2
    # SFT never sees the mark (it is outside the policy's action space): same policy either way
    assert init_sft["gold"]["sft"] == demo_init["gold"]["sft"]
