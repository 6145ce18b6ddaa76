"""The context a stage builds in: lengths, trainer, seed, model options, sampling settings,
the gold judge, ... and, outside its cache key, its logger and progress bars.

A stage sees only the fields it declares in `reads` (`StageContext.only`): reading any other
is an error, and the cache key hashes exactly the fields it sees. So an input that changes an
artifact cannot be missing from its key, and one a stage does not read (n, for SFT) cannot
invalidate it.
"""

from __future__ import annotations

from typing import Any

from afd.core.config import fingerprint

FIELDS = (
    "lengths",  # token limits (Lengths)
    "trainer",  # Lightning Trainer settings (a plain dict)
    "seed",
    "spec",  # the model spec (`model=`) a from-scratch policy is built by
    "model",  # ModelOptions: how models load and train (dtype, LoRA, checkpointing)
    "load",  # LoadOptions: how models load for inference (dtype, remote code)
    "sampling",  # SamplingSettings every engine honours
    "engine",  # the generation engine (`sampling=`), keyed by its own options
    "gold",  # the gold judge, built lazily from its config
    "task",  # the task (`data.task`), built lazily from its config
)


class StageContext:
    def __init__(self, *, logger: Any = None, progress: bool = True, **fields: Any):
        unknown = sorted(set(fields) - set(FIELDS))
        if unknown:
            raise TypeError(f"unknown stage context fields {unknown}; known: {FIELDS}")
        self._fields = fields
        self.logger, self.progress = logger, progress

    def __getattr__(self, name: str):
        fields = self.__dict__.get("_fields", {})
        if name in fields:
            return fields[name]
        if name in FIELDS:
            raise AttributeError(
                f"this stage reads ctx.{name} but does not declare it in `reads`, so its cache "
                f"key would miss it; declared: {sorted(fields)}"
            )
        raise AttributeError(name)

    def only(self, names: tuple[str, ...]) -> StageContext:
        """The context of a stage that reads `names` (and nothing else)."""
        missing = [n for n in names if n not in self._fields]
        if missing:
            raise KeyError(f"the job's context has no {missing}")
        return StageContext(
            logger=self.logger,
            progress=self.progress,
            **{n: self._fields[n] for n in names},
        )

    def replace(self, **fields: Any) -> StageContext:
        """The same context with some of its fields changed (e.g. a round's own seed)."""
        return StageContext(
            logger=self.logger, progress=self.progress, **{**self._fields, **fields}
        )

    def with_logger(self, logger: Any) -> StageContext:
        return StageContext(logger=logger, progress=self.progress, **self._fields)

    def fingerprint(self) -> dict:
        return {name: fingerprint(value) for name, value in sorted(self._fields.items())}

    def __getstate__(self):
        return dict(self.__dict__)

    def __setstate__(self, state):
        self.__dict__.update(state)
