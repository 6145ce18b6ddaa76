"""The HH-RLHF dialogue format and the ways a reward model reads a (prompt, response) pair.

An HH text is "\\n\\nHuman: ...\\n\\nAssistant: ...", turn after turn. The prompt is the
dialogue up to and including the last "\\n\\nAssistant:"; the response is what follows.
`PlainText` and `ChatTemplate` are the `gold.format` choices: how a golden reward model
wants the pair rendered, returned as (prompt text, response text) so the scorer can
truncate the prompt and keep the response.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

HUMAN, ASSISTANT = "\n\nHuman:", "\n\nAssistant:"
STOP_STRINGS = ("\nHuman:", "\nAssistant:")  # a new turn, after one newline or two
_TURN = re.compile(r"\n\n(Human|Assistant):")


class DialogueError(ValueError):
    pass


def split_last_turn(text: str) -> tuple[str, str]:
    """(prompt up to and including the last "\\n\\nAssistant:", the final response stripped)."""
    cut = text.rfind(ASSISTANT)
    if cut < 0:
        raise DialogueError("no '\\n\\nAssistant:' turn")
    end = cut + len(ASSISTANT)
    return text[:end], text[end:].strip()


def split_pair(chosen: str, rejected: str) -> tuple[str, str, str]:
    """(prompt, chosen reply, rejected reply) of a preference pair: the prompt is the longest
    common prefix of the two dialogues, up to and including its last "\\n\\nAssistant:" (the
    convention of TRL's `extract_prompt`). Splitting each dialogue at its own last tag would
    take a reply that itself writes "\\n\\nAssistant:" for part of the prompt."""
    n = 0
    limit = min(len(chosen), len(rejected))
    while n < limit and chosen[n] == rejected[n]:
        n += 1
    cut = chosen.rfind(ASSISTANT, 0, n)
    if cut < 0:
        raise DialogueError("no '\\n\\nAssistant:' turn common to both dialogues")
    end = cut + len(ASSISTANT)
    return chosen[:end], chosen[end:].strip(), rejected[end:].strip()


def cut_at_turn(reply: str) -> tuple[str, bool]:
    """A reply up to the first turn tag it writes itself (where a sampled reply is cut too),
    and whether it had one."""
    cut = min((i for i in (reply.find(t) for t in STOP_STRINGS) if i >= 0), default=-1)
    return (reply[:cut].strip(), True) if cut >= 0 else (reply, False)


def turns(prompt: str) -> list[dict]:
    """Chat messages of an HH prompt; the trailing empty "Assistant:" cue is dropped. A text
    that is not in HH format is one user message."""
    parts = _TURN.split(prompt)
    if len(parts) < 3:
        return [{"role": "user", "content": prompt.strip()}]
    messages = []
    if parts[0].strip():
        messages.append({"role": "user", "content": parts[0].strip()})
    for speaker, content in zip(parts[1::2], parts[2::2]):
        role = "user" if speaker == "Human" else "assistant"
        if (
            messages and messages[-1]["role"] == role
        ):  # merge repeated speakers: templates alternate
            messages[-1]["content"] += "\n\n" + content.strip()
        else:
            messages.append({"role": role, "content": content.strip()})
    if messages and messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
        messages.pop()
    return messages


@dataclass(frozen=True)
class PlainText:
    """The HH text itself: prompt, one space, response (the Ray2333 GPT-2 reward models were
    trained on HH-RLHF strings in exactly this form)."""

    chat: ClassVar[bool] = False

    def render(self, tokenizer, prompt: str, response: str) -> tuple[str, str]:
        return prompt, " " + response


@dataclass(frozen=True)
class ChatTemplate:
    """The model's own chat template over the HH turns (chat-tuned policies such as
    SmolLM2-Instruct, and judges such as RM-Gemma-7B). The split is where the assistant's
    final reply begins; the reply's own text carries no leading space."""

    chat: ClassVar[bool] = True

    def check(self, tokenizer) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise DialogueError(
                f"the format is ChatTemplate but tokenizer {tokenizer.name_or_path!r} has no "
                "chat template: use afd.models.dialogue.PlainText"
            )

    def render(self, tokenizer, prompt: str, response: str) -> tuple[str, str]:
        self.check(tokenizer)
        messages = turns(prompt)
        head = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(
            [*messages, {"role": "assistant", "content": response}], tokenize=False
        )
        if not full.startswith(head):  # a template that renders the last turn differently
            return full, ""
        return head, full[len(head) :]

    def prompt_ids(self, tokenizer, prompt: str, limit: int) -> list[int]:
        """The prompt's chat rendering with the generation cue, in at most `limit` tokens: the
        oldest turns go first (a cut inside the template's markup would garble it), then, if
        the last turn alone is too long, its oldest tokens."""
        self.check(tokenizer)
        messages = turns(prompt)
        while True:
            text = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) <= limit or len(messages) <= 1:
                return ids[len(ids) - limit :] if len(ids) > limit else ids
            messages = (
                messages[1:] if messages[0]["role"] != "user" else messages[2:] or messages[-1:]
            )
