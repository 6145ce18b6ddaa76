"""The HH-RLHF dialogue format and the ways a reward model reads a (prompt, response) pair.

An HH text is "\\n\\nHuman: ...\\n\\nAssistant: ...", turn after turn. The prompt is the
dialogue up to and including the last "\\n\\nAssistant:"; the response is what follows.
`PlainText` and `ChatTemplate` are the `gold.format` choices: how a golden reward model
wants the pair rendered, returned as (prompt text, response text) so the scorer can
truncate the prompt and keep the response.
"""

from __future__ import annotations

import re

HUMAN, ASSISTANT = "\n\nHuman:", "\n\nAssistant:"
STOP_STRINGS = (HUMAN, ASSISTANT)
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


class PlainText:
    """The HH text itself: prompt, one space, response (the Ray2333 GPT-2 reward models were
    trained on HH-RLHF strings in exactly this form)."""

    def render(self, tokenizer, prompt: str, response: str) -> tuple[str, str]:
        return prompt, " " + response


class ChatTemplate:
    """The reward model's own chat template over the HH turns (RM-Gemma-7B and other
    chat-tuned models). The split is where the assistant's final reply begins."""

    def render(self, tokenizer, prompt: str, response: str) -> tuple[str, str]:
        if not getattr(tokenizer, "chat_template", None):
            raise DialogueError(
                f"gold.format is ChatTemplate but tokenizer {tokenizer.name_or_path!r} "
                "has no chat template: use afd.models.dialogue.PlainText"
            )
        messages = turns(prompt)
        head = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(
            [*messages, {"role": "assistant", "content": response}], tokenize=False
        )
        if not full.startswith(head):  # a template that renders the last turn differently
            return full, ""
        return head, full[len(head) :]
