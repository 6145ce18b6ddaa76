"""Stage `judge`: a gold judge trained on preference pairs the pipeline never sees
(afd/tasks/judge.py), saved as a sequence classifier."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from afd.tasks.judge import train_judge


@dataclass
class JudgeStage:
    stage: ClassVar[str] = "judge"
    reads: ClassVar[tuple[str, ...]] = ()
    trains: ClassVar[bool] = False

    judge: Any  # a TrainedJudge

    def build(self, out_dir: Path, ctx, inputs: dict[str, Path]) -> dict:
        """inputs: `backbone`, the judge's base model directory."""
        return train_judge(self.judge, inputs["backbone"], out_dir)
