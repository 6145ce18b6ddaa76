"""Loading policies and scalar-head classifiers from Hugging Face directories, in a dtype, with
embeddings sized for the tokenizer (which may have gained a pad token)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from afd.core.errors import ConfigError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_dtype(dtype: str, key: str) -> None:
    if dtype not in DTYPES:
        raise ConfigError(f"{key} must be one of {sorted(DTYPES)}, got {dtype!r}")


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


def looks_like_path(value: str) -> bool:
    """A local path rather than a Hub id ("gpt2", "org/name")."""
    return value.startswith(("/", "./", "../", "~")) or value.count("/") > 1


def check_model_source(value: str, key: str) -> None:
    """A local model directory must hold a config and a tokenizer (a directory without its
    tokenizer files would load a 2-token tokenizer that turns every text into nothing); a
    path that does not exist is named with its key, not reported as a bad Hub id."""
    path = Path(value).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise ConfigError(f"{key}={value}: not a model directory (no config.json in it)")
        if not any((path / name).is_file() for name in TOKENIZER_FILES):
            raise ConfigError(
                f"{key}={value}: no tokenizer files in it ({', '.join(TOKENIZER_FILES)}); save "
                "the tokenizer beside the model (tokenizer.save_pretrained(DIR))"
            )
    elif looks_like_path(value):
        raise ConfigError(f"{key}={value}: no such directory")


def context_length(value: str) -> int | None:
    """The positions a local model can attend to, from its config.json (None: unknown)."""
    config = Path(value).expanduser() / "config.json"
    if not config.is_file():
        return None
    import json

    fields = json.loads(config.read_text())
    return fields.get("n_positions") or fields.get("max_position_embeddings")


def kv_cache_bytes_per_token(value: str, dtype: str) -> int | None:
    """What one token's keys and values take in a KV cache of `dtype`, over all layers of a
    local model, from its config.json (None: unknown)."""
    config = Path(value).expanduser() / "config.json"
    head = attention_head_size(value)
    if not config.is_file() or head is None:
        return None
    import json

    fields = json.loads(config.read_text())
    layers = fields.get("num_hidden_layers") or fields.get("n_layer")
    heads = (
        fields.get("num_key_value_heads")
        or fields.get("num_attention_heads")
        or fields.get("n_head")
    )
    if not layers or not heads:
        return None
    return 2 * layers * heads * head * DTYPES[dtype].itemsize


def attention_head_size(value: str) -> int | None:
    """The width of one attention head of a local model, from its config.json (None:
    unknown)."""
    config = Path(value).expanduser() / "config.json"
    if not config.is_file():
        return None
    import json

    fields = json.loads(config.read_text())
    if fields.get("head_dim"):
        return int(fields["head_dim"])
    width = fields.get("hidden_size") or fields.get("n_embd")
    heads = fields.get("num_attention_heads") or fields.get("n_head")
    return width // heads if width and heads else None


def resize_for_tokenizer(model, tokenizer) -> None:
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    if getattr(model, "generation_config", None) is not None:  # classifiers have none
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id


def load_policy(path, tokenizer, dtype: str = "float32", trust_remote_code: bool = False):
    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=DTYPES[dtype], trust_remote_code=trust_remote_code
    )
    resize_for_tokenizer(model, tokenizer)
    return model


def load_classifier(path, tokenizer, dtype: str = "float32", trust_remote_code: bool = False):
    """A sequence classifier with one output (the reward); a fresh head if `path` is an LM."""
    model = AutoModelForSequenceClassification.from_pretrained(
        str(path), num_labels=1, dtype=DTYPES[dtype], trust_remote_code=trust_remote_code
    )
    resize_for_tokenizer(model, tokenizer)
    return model
