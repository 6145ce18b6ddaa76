"""Your own demonstrations as JSONL(.gz) files (`data=jsonl`).

`train`: rows {"prompt", "response"} (optional "id"), the demonstrations. `heldout`: the
same shape, prompts to evaluate on with reference responses (null: a hash-chosen
`heldout_fraction` of the train prompts). `pairs`: rows {"prompt", "chosen", "rejected"}
for the Bradley-Terry baseline (optional). Bad rows name their file and line.
"""

from __future__ import annotations

from pathlib import Path

from afd.tasks.prepare import SplitSpec, assemble
from afd.tasks.records import TaskData, read_examples, read_pairs


def _file(value: str | None, key: str, required: bool = False) -> Path | None:
    if not value:
        if required:
            raise ValueError(
                f"data.task.{key} is not set: give a JSONL(.gz) file of prompt/response rows"
            )
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise ValueError(f"data.task.{key}={value}: no such file")
    return path


class JSONLTask:
    """`_target_` of conf/data/jsonl.yaml. Files are checked here and read in `build()`."""

    name = "jsonl"

    def __init__(
        self,
        train: str | None = None,
        heldout: str | None = None,
        pairs: str | None = None,
        heldout_fraction: float = 0.05,
        num_train_prompts: int | None = None,
        num_heldout_prompts: int | None = 500,
        num_pairs: int | None = None,
        dedup_prompts: bool = True,
        seed: int = 0,
    ):
        self.spec = SplitSpec(
            num_train_prompts, num_heldout_prompts, num_pairs, heldout_fraction, dedup_prompts, seed
        )
        self.spec.check()
        self.train = _file(train, "train", required=True)
        self.heldout = _file(heldout, "heldout")
        self.pairs = _file(pairs, "pairs")

    def build(self) -> TaskData:
        info = {
            "name": self.name,
            "train": str(self.train),
            "heldout": str(self.heldout or "hash of train"),
            "pairs": str(self.pairs) if self.pairs else None,
        }
        return assemble(
            read_examples(self.train),
            read_examples(self.heldout) if self.heldout else None,
            read_pairs(self.pairs) if self.pairs else [],
            self.spec,
            info,
        )
