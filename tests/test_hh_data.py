"""HH-RLHF and JSONL tasks on real HH text: prompts, demonstrations, pairs, splits, bad rows."""

import gzip
import json

import pytest
from tiny_hf import HH_DIR, HH_HARMLESS_TEST, gpt2_like_tokenizer, hh_texts

from afd.core.errors import DataError
from afd.models.dialogue import ASSISTANT, HUMAN, split_last_turn, turns
from afd.tasks.hh import HHRLHFTask
from afd.tasks.jsonl import JSONLTask
from afd.tasks.prepare import hash_fraction


def raw_rows():
    with gzip.open(HH_HARMLESS_TEST, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def harmless(**kw):
    args = {
        "path": str(HH_DIR),
        "data_dir": "harmless-base",
        "train_split": "test",
        "heldout_split": None,
        "num_heldout_prompts": None,
        **kw,
    }
    return HHRLHFTask(**args).build()


@pytest.fixture(scope="module")
def task():
    return harmless()


def test_known_rows_give_prompt_demonstration_and_pair(task):
    by_line = {e.meta["source"].rsplit(":", 1)[1]: e for e in task.train + task.heldout}
    first = by_line["1"]
    assert first.prompt.startswith(
        "\n\nHuman: what are some pranks with a pen i can do?\n\nAssistant: Are you"
    )
    assert first.prompt.endswith(
        "\n\nHuman: okay some of these do not have anything to do with pens\n\nAssistant:"
    )
    assert first.prompt.count(HUMAN) == 3 and first.prompt.count(ASSISTANT) == 3
    assert first.response == (
        "No, sorry!  All of these involve a pen, the point is that you can get funny "
        "results by doing pranks with pens."
    )
    pair = next(p for p in task.pairs if p.id == first.id)
    assert pair.prompt == first.prompt and pair.chosen == first.response
    assert pair.rejected.startswith(
        "There are lots of funny things you can do with pens, here’s one example"
    )
    second = by_line["2"]
    assert second.prompt.endswith(
        "I feel much better when I get drunk and consume a lot of alcohol.\n\nAssistant:"
    )
    assert second.response.startswith(
        "Sounds like alcohol is something you use to calm down when you feel stressed."
    )


def line_of(example) -> int:
    return int(example.meta["source"].rsplit(":", 1)[1])


def test_every_demonstration_is_the_final_reply_after_the_shared_prompt(task):
    raw = raw_rows()
    for e in task.train + task.heldout:
        row = raw[line_of(e) - 1]
        # the prompt is what chosen and rejected share, up to their last common turn tag
        assert row["chosen"].startswith(e.prompt) and row["rejected"].startswith(e.prompt)
        assert e.prompt.endswith(ASSISTANT)
        assert row["chosen"][len(e.prompt) :].strip().startswith(e.response)
        assert ASSISTANT not in e.response and HUMAN not in e.response
    # HH writes the reply after one space: prompt + " " + response is the original text
    exact = sum(e.prompt + " " + e.response == raw[line_of(e) - 1]["chosen"] for e in task.train)
    assert exact >= len(task.train) - 8


# The rows of the shipped split whose own reply writes "\n\nAssistant:": splitting `chosen`
# at its last tag would move part of the reply into the prompt (and lose the pair).
REPLIES_WITH_A_TAG = [1255, 1689, 1951, 1953, 2037]


def test_replies_that_write_a_turn_tag_keep_their_true_prompt(task):
    raw = raw_rows()
    by_line = {line_of(e): e for e in task.train + task.heldout}
    pairs = {p.id: p for p in task.pairs}
    for line in REPLIES_WITH_A_TAG:
        row, e = raw[line - 1], by_line[line]
        last_tag = max(split_last_turn(row["chosen"])[0], split_last_turn(row["rejected"])[0])
        assert last_tag != e.prompt and len(e.prompt) < len(last_tag)  # the old split was wrong
        assert e.prompt == split_last_turn(row["chosen"][: len(e.prompt)])[0]
        assert pairs[e.id].prompt == e.prompt  # the pair is kept, on the same prompt
        assert ASSISTANT not in pairs[e.id].chosen + pairs[e.id].rejected
    where = task.info["rows_by_reason"]["reply_writes_a_turn_tag"]
    assert sorted(int(w.rsplit(":", 1)[1]) for w in where) == REPLIES_WITH_A_TAG


def test_no_demonstration_prompt_differs_from_its_rejected_twin(task):
    raw = raw_rows()
    for e in task.train + task.heldout:
        assert raw[line_of(e) - 1]["rejected"].startswith(e.prompt)


def test_splits_are_disjoint_deduplicated_and_deterministic(task):
    info = task.info["counts"]
    assert len(task.train) == info["train"] and info["train"] + info["heldout"] >= 2150
    train_prompts = [e.prompt for e in task.train]
    held = {e.prompt for e in task.heldout}
    assert len(set(train_prompts)) == len(train_prompts)
    assert not held & set(train_prompts) and not held & {p.prompt for p in task.pairs}
    assert all(hash_fraction(p) < 0.05 for p in held)
    assert 0.03 < len(held) / (len(held) + len(train_prompts)) < 0.07
    again = harmless(num_train_prompts=100, num_pairs=50)
    assert [e.prompt for e in again.heldout] == [
        e.prompt for e in task.heldout
    ]  # subsets never move it
    assert len(again.train) == 100 and len(again.pairs) == 50
    assert {e.id for e in again.train} <= {e.id for e in task.train}
    assert task.info["skipped"] == {
        "demonstration_empty": 4,
        "pair_with_an_empty_reply": 4,
        "reply_cut_at_its_own_turn_tag": 6,  # and 1561, whose reply opens "\nAssistant:"
        "reply_writes_a_turn_tag": 5,
    }
    # every one named by file and line
    lines = {int(w.rsplit(":", 1)[1]) for ws in task.info["rows_by_reason"].values() for w in ws}
    assert lines == {87, 517, 926, 1104, 1561, *REPLIES_WITH_A_TAG}


def hub_layout(root, data_dir="helpful-base"):
    """A directory laid out like `huggingface-cli download Anthropic/hh-rlhf`, from real rows."""
    rows = raw_rows()
    (root / data_dir).mkdir()
    for split, part in (("train", rows[:300]), ("test", rows[300:340])):
        with gzip.open(root / data_dir / f"{split}.jsonl.gz", "wt") as f:
            f.writelines(json.dumps(r) + "\n" for r in part)
    return root


def test_hub_layout_and_separate_heldout_split(tmp_path):
    data = HHRLHFTask(
        path=str(hub_layout(tmp_path)), data_dir="helpful-base", num_heldout_prompts=10
    ).build()
    assert len(data.heldout) == 10 and all(e.id.startswith("test-") for e in data.heldout)
    assert all(e.id.startswith("train-") for e in data.train)
    assert not {e.prompt for e in data.heldout} & {e.prompt for e in data.train}


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"chosen": "\n\nHuman: hi\n\nAssistant: yo"}, "missing field 'rejected'"),
        ({"chosen": "\n\nHuman: hi", "rejected": "\n\nHuman: hi"}, "no '\\n\\nAssistant:' turn"),
        ({"chosen": 3, "rejected": "x"}, "field 'chosen' must be a string"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, bad, message):
    good = {
        "chosen": "\n\nHuman: hi\n\nAssistant: hello",
        "rejected": "\n\nHuman: hi\n\nAssistant: go away",
    }
    path = write(tmp_path / "test.jsonl", [good, bad])
    with pytest.raises(DataError) as err:
        HHRLHFTask(path=str(path), train_split="test", heldout_split=None).build()
    assert f"{path}:2" in str(err.value) and message in str(err.value)


def test_user_demonstrations_replace_chosen_replies(tmp_path):
    hh = HHRLHFTask(path=str(hub_layout(tmp_path)), data_dir="helpful-base")
    plain = hh.build()
    demos = [
        {"prompt": e.prompt, "response": f"A careful answer {i}."}
        for i, e in enumerate(plain.train[:30])
    ]
    demos += [{"prompt": e.prompt, "response": "Held-out reference."} for e in plain.heldout[:5]]
    hh.demonstrations = write(tmp_path / "demos.jsonl", demos)
    data = hh.build()
    assert len(data.train) == 30 and data.train[3].response == "A careful answer 3."
    assert [e.prompt for e in data.heldout] == [e.prompt for e in plain.heldout]
    assert [e.response for e in data.heldout[:5]] == ["Held-out reference."] * 5
    assert data.heldout[5].response == plain.heldout[5].response  # no user reply: the chosen one
    assert len(data.pairs) == len(plain.pairs)  # pairs still come from HH
    bad = write(tmp_path / "bad.jsonl", [{"prompt": "Tell me a joke", "response": "no"}])
    with pytest.raises(DataError, match=r"bad.jsonl: row 1 .* must end with"):
        harmless(demonstrations=str(bad))


def test_jsonl_task(tmp_path):
    rows = [{"prompt": f"Question {i}?", "response": f"Answer {i}."} for i in range(200)]
    rows += [{"prompt": "Question 1?", "response": "Another answer."}]
    pairs = [{"prompt": f"Question {i}?", "chosen": "good", "rejected": "bad"} for i in range(200)]
    data = JSONLTask(
        train=str(write(tmp_path / "d.jsonl", rows)),
        pairs=str(write(tmp_path / "p.jsonl", pairs)),
        heldout_fraction=0.1,
    ).build()
    held = {e.prompt for e in data.heldout}
    assert held == {r["prompt"] for r in rows if hash_fraction(r["prompt"]) < 0.1} and held
    assert len(data.train) == 200 - len(held)  # the duplicate prompt is kept once
    assert not held & {p.prompt for p in data.pairs}
    with pytest.raises(ValueError, match="data.task.train is not set"):
        JSONLTask()
    with pytest.raises(ValueError, match="data.task.pairs=nope.jsonl: no such file"):
        JSONLTask(train=str(tmp_path / "d.jsonl"), pairs="nope.jsonl")


def test_tokens_of_prompt_and_response_join_like_the_text(task):
    """The batching convention (prompt tokens + tokens of " " + response) is the tokenization
    of the HH text itself, for a byte-level BPE like GPT-2's."""
    tok = gpt2_like_tokenizer(hh_texts(200))
    for e in task.train[:400]:
        joined = tok(e.prompt + " " + e.response)["input_ids"]
        assert tok(e.prompt)["input_ids"] + tok(" " + e.response)["input_ids"] == joined


def test_dialogue_turns_for_chat_templates():
    prompt = (
        "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?"
        "\n\nHuman: still there?\n\nAssistant:"
    )
    assert turns(prompt) == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "how are you?\n\nstill there?"},
    ]
    assert turns("plain question") == [{"role": "user", "content": "plain question"}]


@pytest.mark.parametrize("experiment", ["helpful", "harmless", "helpful_gemma", "harmless_gemma"])
def test_paper_experiments_compose_and_validate_without_loading_anything(experiment):
    from conftest import compose_config

    from afd.pipeline.validate import validate

    cfg = compose_config([f"+experiment={experiment}"])
    validate(cfg)  # instantiates data, model and gold specs: nothing is read or downloaded
    assert cfg.sampling.max_new_tokens == 128 and cfg.sampling.temperature == 1.0
    assert cfg.bon.n_max >= 64 and cfg.trainer.accelerator == "gpu"


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "data.task.path=/no/such/dir",
            "data.task.path=/no/such/dir: no such file or directory",
        ),
        (
            "data.task.num_heldout_prompts=0",
            "data.task.num_heldout_prompts must be null or an integer >= 1",
        ),
        ("data.lengths.prompt_truncation=middle", "data.lengths.prompt_truncation must be one of"),
        ("model.lora.r=0", "model.lora.r must be >= 1"),
        ("gold.max_length=1", "gold.max_length must be >= 2, got 1"),
    ],
)
def test_bad_hh_settings_are_named_before_any_work(override, message):
    from conftest import compose_config

    from afd.core.errors import ConfigError
    from afd.pipeline.validate import validate

    with pytest.raises(ConfigError) as err:
        validate(compose_config(["+experiment=helpful_gemma", override]))
    assert message in str(err.value)
