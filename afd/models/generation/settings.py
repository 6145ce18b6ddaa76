"""What every generation engine honours, and what it returns.

`SamplingSettings` mean the same on every engine: temperature (0: greedy), top-p, top-k (0:
off), at most `max_new_tokens`, and stop strings that end a reply early (the reply is cut
before them). A `Completion` is one reply: its text, whether it ended on its own (EOS or a
stop string) rather than at the token limit, its token count, the token ids the engine drew
(through EOS, or through the token that completed a stop string) and their summed
log-probability under the policy (before temperature and filters: the quantity KL estimates
and log-ratio rewards need, with a reference scoring the same ids).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from afd.core.errors import ConfigError


@dataclass(frozen=True)
class SamplingSettings:
    max_new_tokens: int
    temperature: float
    top_p: float
    top_k: int
    stop_strings: tuple[str, ...] = ()

    def __post_init__(self):
        stops = self.stop_strings or ()
        is_list = isinstance(stops, Sequence) and not isinstance(stops, str)
        if not is_list or not all(isinstance(s, str) and s for s in stops):
            raise ConfigError(
                f"sampling.stop_strings must be a list of non-empty strings, got {stops!r}"
            )
        object.__setattr__(self, "stop_strings", tuple(stops))
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int):
            raise ConfigError(
                f"sampling.max_new_tokens must be an integer, got {self.max_new_tokens!r}"
            )
        if self.max_new_tokens < 1:
            raise ConfigError(f"sampling.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.temperature >= 0:
            raise ConfigError(f"sampling.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"sampling.top_p must be in (0, 1], got {self.top_p}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ConfigError(f"sampling.top_k must be an integer >= 0 (0: off), got {self.top_k}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class Completion:
    response: str
    finished: bool
    num_tokens: int
    token_ids: list[int] = field(default_factory=list, compare=False, repr=False)
    logprob: float = field(default=float("nan"), compare=False)


def cut_at_stop(text: str, stops) -> tuple[str, bool]:
    """`text` up to the first stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def decode(tokenizer, ids: list[int], stops) -> Completion:
    """A reply from generated ids: up to EOS (which finishes it), pads dropped, cut at the first
    stop string (which finishes it too), stripped."""
    eos = tokenizer.eos_token_id
    finished = eos in ids
    ids = ids[: ids.index(eos)] if finished else ids
    ids = [i for i in ids if i != tokenizer.pad_token_id]
    text, stopped = cut_at_stop(tokenizer.decode(ids, skip_special_tokens=True), stops)
    return Completion(text.strip(), finished or stopped, len(ids), ids + [eos] * finished)
