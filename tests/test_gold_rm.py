"""Golden reward models: last-real-token reward under any padding, truncation, chat format."""

import numpy as np
import pytest
import torch
from tiny_hf import HH_DIR

from afd.models.dialogue import ChatTemplate, DialogueError
from afd.tasks.gold import RewardModelGold, fit_pair
from afd.tasks.hh import HHRLHFTask


@pytest.fixture(scope="module")
def rows():
    data = HHRLHFTask(
        path=str(HH_DIR),
        data_dir="harmless-base",
        train_split="test",
        heldout_split=None,
        num_train_prompts=24,
    ).build()
    return [{"prompt": e.prompt, "response": e.response} for e in data.train]


def direct_reward(gold: RewardModelGold, row) -> float:
    """The score head on the hidden state of the last token of the unpadded sequence."""
    model, _ = gold.load()
    ids = torch.tensor([gold.encode(row["prompt"], row["response"])])
    with torch.no_grad():
        hidden = model.transformer(input_ids=ids).last_hidden_state
        return float(model.score(hidden[0, -1]))


def test_reward_is_read_at_the_last_real_token_whatever_the_padding(tiny_hh_models, rows):
    right = RewardModelGold(str(tiny_hh_models["gold"]), max_length=256, batch_size=5)
    left = RewardModelGold(
        str(tiny_hh_models["gold"]), max_length=256, batch_size=7, padding_side="left"
    )
    alone = RewardModelGold(str(tiny_hh_models["gold"]), max_length=256, batch_size=1)
    scores = right.score(rows)
    np.testing.assert_allclose(left.score(rows), scores, atol=1e-4)
    np.testing.assert_allclose(alone.score(rows), scores, atol=1e-4)
    np.testing.assert_allclose(right.score(rows[::-1])[::-1], scores, atol=1e-4)  # batch neighbours
    np.testing.assert_allclose([direct_reward(right, r) for r in rows[:6]], scores[:6], atol=1e-4)
    assert scores.std() > 0.1  # the rows really differ
    _, tok = right.load()
    assert tok.pad_token_id != tok.eos_token_id  # the saved model had pad = EOS (like GPT-2 RMs)
    assert right.load()[0].config.pad_token_id == tok.pad_token_id


def test_fit_pair_keeps_the_response_and_the_end_of_the_prompt():
    p, r = list(range(100)), list(range(1000, 1030))
    assert fit_pair(p, r, 200) == (p, r)
    assert fit_pair(p, r, 64) == (p[-34:], r)  # prompt gives way first
    long_r = list(range(1000, 1100))
    assert fit_pair(p, long_r, 64) == (p[-32:], long_r[:32])  # both long: half each
    assert fit_pair(p[:10], long_r, 64) == (p[:10], long_r[:54])  # short prompt stays whole


def test_long_inputs_are_cut_to_max_length(tiny_hh_models, rows):
    gold = RewardModelGold(str(tiny_hh_models["gold"]), max_length=48)
    _, tok = gold.load()
    row = max(rows, key=lambda r: len(r["prompt"]))
    ids = gold.encode(row["prompt"], row["response"])
    p = tok(row["prompt"], add_special_tokens=False)["input_ids"]
    r = tok(" " + row["response"], add_special_tokens=False)["input_ids"]
    assert len(ids) == 48 and len(p) > 48
    assert ids == (p + r)[-48:] if len(r) <= 24 else ids == p[-24:] + r[:24]
    assert np.isfinite(gold.score(rows)).all()


def test_chat_template_reward_model_gets_one_bos_and_the_turns(tiny_hh_models, rows):
    gold = RewardModelGold(str(tiny_hh_models["gold_chat"]), format=ChatTemplate(), max_length=256)
    _, tok = gold.load()
    ids = gold.encode(rows[0]["prompt"], rows[0]["response"])
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    text = tok.decode(ids)
    first_question = rows[0]["prompt"].split("\n\nAssistant:")[0].removeprefix("\n\nHuman:").strip()
    assert text.startswith(
        f"<bos><start_of_turn>user\n{first_question}<end_of_turn>\n<start_of_turn>model\n"
    )
    assert text.endswith(f"<start_of_turn>model\n{rows[0]['response']}<end_of_turn>\n")
    cut = gold.encode(rows[0]["prompt"] * 5, rows[0]["response"])
    assert len(cut) == 256 and cut[0] == tok.bos_token_id and cut.count(tok.bos_token_id) == 1
    scores = gold.score(rows)
    left = RewardModelGold(
        str(tiny_hh_models["gold_chat"]),
        format=ChatTemplate(),
        max_length=256,
        padding_side="left",
        batch_size=3,
    )
    np.testing.assert_allclose(left.score(rows), scores, atol=1e-4)


def test_chat_format_needs_a_template(tiny_hh_models, rows):
    gold = RewardModelGold(str(tiny_hh_models["gold"]), format=ChatTemplate())
    with pytest.raises(DialogueError, match="has no chat template"):
        gold.score(rows[:1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_length": 1}, "gold.max_length must be >= 2"),
        ({"dtype": "fp8"}, "gold.dtype must be one of"),
        ({"padding_side": "middle"}, "gold.padding_side must be 'left' or 'right'"),
    ],
)
def test_bad_gold_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RewardModelGold("some/model", **kwargs)
