"""Bad configs and bad data fail before any work, naming the key or the file and line."""

import gzip
import json

import pytest

from afd.core.errors import ConfigError, DataError
from afd.pipeline.job import run_job
from afd.pipeline.validate import validate
from afd.tasks.records import read_examples, read_pairs


@pytest.mark.parametrize(
    "override, message",
    [
        ("n=0", "n must be in [1, 8], got 0"),
        ("n=9", "n must be in [1, 8], got 9 (raise bon.n_max"),
        ("bon.n_max=0", "bon.n_max must be >= 1"),
        ("data.task.noise=2", "data.task.noise must lie in [0, 1], got 2"),
        ("data.noise=2", "data.task.noise must lie in [0, 1], got 2 (set by data.noise)"),
        ("data.task.gold=nice", "data.task.gold must be one of"),
        ("reward.positive=teacher", "reward.positive must be one of"),
        ("reward.positive=init", "reward.positive and reward.negative are both 'init'"),
        (
            "+reward.schedule.epochz=1",
            "reward.schedule: Schedule.__init__() got an unexpected keyword argument 'epochz'",
        ),
        ("sampling.top_p=0", "sampling.top_p must be in (0, 1]"),
        ("sampling.temperature=-1", "sampling.temperature must be >= 0"),
        ("data.lengths.max_prompt_tokens=0", "data.lengths.max_prompt_tokens must be >= 1"),
        ("logger.mode=loud", "logger.mode must be auto"),
        # values of the wrong kind, by the types the target declares
        ("reward.val_fraction=abc", "reward.val_fraction must be a number, got 'abc'"),
        ("data.task.noise=abc", "data.task.noise must be a number, got 'abc'"),
        ("data.noise=abc", "data.task.noise must be a number, got 'abc' (set by data.noise)"),
        ("data.task.num_pairs=1.5", "data.task.num_pairs must be an integer, got 1.5"),
        ("sft.val_fraction=true", "sft.val_fraction must be a number, got True"),
        # the Trainer's own settings, before the first training stage builds one
        ("trainer.precision=bf17", "trainer.precision must be one of ["),
        ("trainer.accelerator=gpux", "trainer.accelerator must be one of ['auto', 'cpu'"),
        ("trainer.gradient_clip_val=abc", "trainer.gradient_clip_val must be a number"),
        ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches must be an integer"),
        ("trainer.deterministic=maybe", "trainer.deterministic must be true, false or warn"),
    ],
)
def test_bad_config_is_named(tiny_cfg, override, message):
    extra = ["logger=wandb"] if override.startswith("logger.") else []
    with pytest.raises(ConfigError) as err:
        validate(tiny_cfg(*extra, override))
    assert message in str(err.value)


def test_bad_config_stops_before_any_stage(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError):
        run_job(tiny_cfg("n=100"))
    assert not (tmp_path / "cache").exists()


def test_default_config_is_valid(tiny_cfg):
    validate(tiny_cfg())


def write_lines(path, lines):
    with gzip.open(path, "wt") if path.suffix == ".gz" else open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"prompt": "hi", "response": "yo"', "malformed JSON"),
        ('{"prompt": "hi"}', "missing field 'response'"),
        ('{"prompt": "  ", "response": "yo"}', "field 'prompt' is empty"),
        ('{"prompt": 3, "response": "yo"}', "field 'prompt' must be a string"),
        ('["hi", "yo"]', "expected a JSON object"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "demos.jsonl.gz"
    write_lines(path, ['{"prompt": "a", "response": "b"}', "", line])
    with pytest.raises(DataError) as err:
        read_examples(path)
    assert f"{path}:3" in str(err.value) and message in str(err.value)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="no rows"):
        read_examples(empty)
    with pytest.raises(DataError, match="file not found"):
        read_examples(tmp_path / "nope.jsonl")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "p", "chosen": "c"}) + "\n")
    with pytest.raises(DataError, match=r"pairs.jsonl:1: missing field 'rejected'"):
        read_pairs(pairs)


def test_field_kinds_come_from_what_the_target_declares():
    """Dataclass fields, a class's `__init__` and a function's arguments; optional ones take
    null; a nested node with a `_target_` of its own is checked under its key; a value whose
    type is not plainly declared is left to the class."""
    from omegaconf import OmegaConf

    from afd.core.field_types import check_field_types

    engine = {"_target_": "afd.models.generation.hf.HFEngine", "batch_size": 8}
    ok = {**engine, "stop_strings": "anything", "top_k": None}
    check_field_types(OmegaConf.create(ok), "sampling")
    bad = OmegaConf.create({"inner": {**engine, "batch_size": "eight"}})
    with pytest.raises(ConfigError, match=r"^outer\.inner\.batch_size must be an integer"):
        check_field_types(bad, "outer")
    task = {"_target_": "afd.tasks.toy.task.ToyTask", "harmful_fraction": "most"}
    with pytest.raises(ConfigError, match=r"data\.task\.harmful_fraction must be a number"):
        check_field_types(OmegaConf.create(task), "data.task")
    flag = {"_target_": "afd.models.generation.vllm.VLLMEngine", "enforce_eager": 1}
    with pytest.raises(ConfigError, match="sampling.enforce_eager must be true or false, got 1"):
        check_field_types(OmegaConf.create(flag), "sampling")
