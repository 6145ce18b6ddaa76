"""Anthropic HH-RLHF (`data=hh_helpful`, `data=hh_harmless`): prompts, demonstrations, pairs.

Rows come from the Hub with `datasets` (`dataset`, `data_dir`, split names) or from the same
JSONL(.gz) files on disk (`path`). A row's prompt is the common beginning of its `chosen` and
`rejected` dialogues, up to and including their last shared "\\n\\nAssistant:"; by default
the demonstration is the rest of `chosen` (its final reply), and `chosen`/`rejected` give a
preference pair for the Bradley-Terry baseline. A reply that writes a turn tag itself is cut
there, as sampled replies are.
A user file of (prompt, response) rows can replace the demonstrations (the paper used
responses of a stronger model).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from afd.core.errors import ConfigError, DataError
from afd.core.jsonl import iter_jsonl
from afd.models.dialogue import (
    ASSISTANT,
    DialogueError,
    cut_at_turn,
    split_last_turn,
    split_pair,
)
from afd.tasks.prepare import SplitSpec, assemble, hash_fraction
from afd.tasks.records import Example, Pair, TaskData, read_examples, require_text


def split_file(path: Path, data_dir: str, split: str) -> Path:
    """`path` itself if it is a file, else its `{split}.jsonl(.gz)`, directly or under `data_dir`
    (the layout of a `huggingface-cli download Anthropic/hh-rlhf` directory)."""
    if path.is_file():
        return path
    for folder in (path / data_dir, path):
        for name in (f"{split}.jsonl.gz", f"{split}.jsonl"):
            if (folder / name).is_file():
                return folder / name
    raise DataError(
        f"data.task.path={path}: no {split}.jsonl.gz or {split}.jsonl in it or in {data_dir}/"
    )


def parse_row(
    row: dict, where: str, row_id: str, notes: dict[str, list[str]]
) -> tuple[Example | None, Pair | None]:
    """The demonstration and the preference pair of one HH row (None where unusable). Every
    row dropped or repaired is noted under its reason, by where it is."""
    chosen, rejected = require_text(row, "chosen", where), require_text(row, "rejected", where)
    try:
        prompt, demo, other = split_pair(chosen, rejected)
    except DialogueError as e:
        raise DataError(f"{where}: {e} ('chosen' and 'rejected')") from None
    if prompt != split_last_turn(chosen)[0] or prompt != split_last_turn(rejected)[0]:
        notes["reply_writes_a_turn_tag"].append(where)  # prompt taken from the common prefix
    demo, cut = cut_at_turn(demo)
    other, other_cut = cut_at_turn(other)
    if cut or other_cut:
        notes["reply_cut_at_its_own_turn_tag"].append(where)
    example = Example(row_id, prompt, demo, {"source": where}) if demo else None
    if not demo:
        notes["demonstration_empty"].append(where)
    if not demo or not other:
        notes["pair_with_an_empty_reply"].append(where)
        return example, None
    if demo == other:
        notes["pair_tied"].append(where)
        return example, None
    return example, Pair(row_id, prompt, demo, other)


class HHRLHFTask:
    """`_target_` of conf/data/hh_*.yaml. Nothing is read until `build()` (the data stage)."""

    name = "hh-rlhf"

    def __init__(
        self,
        dataset: str = "Anthropic/hh-rlhf",
        data_dir: str = "helpful-base",
        path: str | None = None,
        train_split: str = "train",
        heldout_split: str | None = "test",
        heldout_fraction: float = 0.05,
        num_train_prompts: int | None = None,
        num_heldout_prompts: int | None = 500,
        num_pairs: int | None = None,
        dedup_prompts: bool = True,
        demonstrations: str | None = None,
        seed: int = 0,
        reserved_fraction: float = 0.0,
    ):
        self.spec = SplitSpec(
            num_train_prompts, num_heldout_prompts, num_pairs, heldout_fraction, dedup_prompts, seed
        )
        self.spec.check()
        self.path = Path(path).expanduser() if path else None
        if self.path is not None and not self.path.exists():
            raise ConfigError(f"data.task.path={path}: no such file or directory")
        self.demonstrations = Path(demonstrations).expanduser() if demonstrations else None
        if self.demonstrations is not None and not self.demonstrations.is_file():
            raise ConfigError(f"data.task.demonstrations={demonstrations}: no such file")
        if not 0 <= reserved_fraction < 1 or heldout_fraction + reserved_fraction >= 1:
            raise ConfigError(
                "data.task.reserved_fraction must be in [0, 1) and leave room for "
                f"data.task.heldout_fraction; got {reserved_fraction} and {heldout_fraction}"
            )
        self.reserved_fraction = reserved_fraction
        self.dataset, self.data_dir = dataset, data_dir
        self.train_split = train_split
        self.heldout_split = heldout_split if heldout_split != train_split else None

    def hub_resources(self) -> list:
        if self.path is not None:
            return []
        from afd.core.hub import HubResource

        splits = [s for s in (self.train_split, self.heldout_split) if s]
        return [
            HubResource(
                self.dataset,
                "dataset",
                "data.task.path",
                f"data set ({self.data_dir})",
                tuple(f"{self.data_dir}/{s}.jsonl.gz" for s in splits),
                f"a directory holding {self.data_dir}/{splits[0]}.jsonl.gz, or that file",
            )
        ]

    def rows(self, split: str):
        """(where, row) for each raw row of a split; `where` names file:line or dataset row."""
        if self.path is not None:
            file = split_file(self.path, self.data_dir, split)
            for lineno, row in iter_jsonl(file):
                yield f"{file}:{lineno}", row
            return
        from datasets import load_dataset

        try:
            ds = load_dataset(self.dataset, data_dir=self.data_dir, split=split)
        except Exception as e:  # noqa: BLE001 - any loader failure gets the same advice
            raise DataError(
                f"could not load {self.dataset} ({self.data_dir}, split {split!r}): {e}. "
                "Download its JSONL files and set data.task.path=DIR"
            ) from e
        for i, row in enumerate(ds):
            yield f"{self.dataset}/{self.data_dir} {split} row {i}", row

    def parse(self, split: str, notes: dict) -> tuple[list[Example], list[Pair]]:
        examples, pairs = [], []
        for i, (where, row) in enumerate(self.rows(split)):
            example, pair = parse_row(row, where, f"{split}-{i}", notes)
            examples += [example] if example else []
            pairs += [pair] if pair else []
        return examples, pairs

    def user_demonstrations(self) -> list[Example]:
        demos = read_examples(self.demonstrations)
        for lineno, demo in enumerate(demos, start=1):
            if not demo.prompt.rstrip().endswith(ASSISTANT.strip()):
                raise DataError(
                    f"{self.demonstrations}: row {lineno} (id {demo.id!r}): the prompt must end "
                    "with '\\n\\nAssistant:', the HH-RLHF dialogue format"
                )
        return demos

    def reserved(self, prompt: str) -> bool:
        """Whether a prompt is kept out of this task for a judge: its hash falls in the top
        `reserved_fraction` (hash-held-out prompts are at the bottom)."""
        return hash_fraction(prompt) >= 1 - self.reserved_fraction

    def reserved_pairs(self) -> list[Pair]:
        """The preference pairs of the train split on reserved prompts: what a gold judge
        trains on, disjoint from every demonstration, pair and held-out prompt of the task."""
        _, pairs = self.parse(self.train_split, defaultdict(list))
        return [p for p in pairs if self.reserved(p.prompt)]

    def build(self) -> TaskData:
        notes: dict[str, list[str]] = defaultdict(list)
        train, pairs = self.parse(self.train_split, notes)
        heldout = self.parse(self.heldout_split, notes)[0] if self.heldout_split else None
        if self.reserved_fraction:
            keep = lambda rows: [r for r in rows if not self.reserved(r.prompt)]  # noqa: E731
            reserved = len(train) - len(keep(train))
            train, pairs = keep(train), keep(pairs)
            heldout = keep(heldout) if heldout is not None else None
        source = "chosen"
        if self.demonstrations is not None:
            train = self.user_demonstrations()
            by_prompt = {d.prompt: d.response for d in reversed(train)}  # first demonstration wins
            if (
                heldout is not None
            ):  # held-out references from the same demonstrator where it has them
                heldout = [
                    Example(e.id, e.prompt, by_prompt.get(e.prompt, e.response), e.meta)
                    for e in heldout
                ]
            source = str(self.demonstrations)
        info = {
            "name": self.name,
            "dataset": str(self.path or self.dataset),
            "data_dir": self.data_dir,
            "splits": {"train": self.train_split, "heldout": self.heldout_split or "hash of train"},
            "demonstrations": source,
            # rows dropped (an empty demonstration; a pair with an empty or tied reply) or
            # repaired (prompt from the common prefix; reply cut at its own turn tag)
            "rows_by_reason": {reason: list(where) for reason, where in sorted(notes.items())},
            "skipped": {reason: len(where) for reason, where in sorted(notes.items())},
            "reserved_for_judge": reserved if self.reserved_fraction else 0,
        }
        return assemble(train, heldout, pairs, self.spec, info)
