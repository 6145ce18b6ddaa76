"""Stage `convert`: a GGUF file shipped by a package, as an ordinary Hugging Face model
directory that every later stage loads (afd/models/gguf.py). Keyed by the file's hash."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from afd.models.gguf import GGUFSource, convert, sha256


@dataclass
class ConvertStage:
    stage: ClassVar[str] = "convert"
    reads: ClassVar[tuple[str, ...]] = ()
    trains: ClassVar[bool] = False

    source: GGUFSource
    identity: str  # the file's sha256, or the assembling package's version

    def build(self, out_dir: Path, ctx, inputs: dict[str, Path]) -> dict:
        gguf = self.source.materialise(out_dir / ".gguf")
        digest = sha256(gguf)
        metrics = convert(gguf, out_dir)
        if self.source.assemble is not None:  # assembled into the artifact: not kept there
            gguf.unlink()
            gguf.parent.rmdir()
        return {**metrics, "gguf": str(gguf), "gguf_sha256": digest}
