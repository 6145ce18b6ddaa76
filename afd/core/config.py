"""Config helpers: plain containers, validated dataclasses, objects built lazily from a config
node, and the fingerprint a stage's cache key is made of."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from afd.core.errors import ConfigError
from afd.core.protocols import Fingerprinted


def plain(node):
    """Plain containers with interpolations resolved, also inside dicts of config nodes: a key
    must hold `data.task.noise`'s value, never the string "${data.noise}"."""
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    if isinstance(node, Mapping):
        return {k: plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [plain(v) for v in node]
    return node


def as_dataclass(cls, value, where: str):
    """Build a config dataclass from a mapping (Hydra passes nested nodes as DictConfig); an
    unknown or missing field is an error naming `where`."""
    if isinstance(value, cls):
        return value
    try:
        return cls(**dict(plain(value)))
    except ConfigError as e:  # a field's own check: "lr must be ...", named in full here
        raise ConfigError(f"{where}.{e}") from None
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def check_count(value, key: str, low: int = 1, optional: bool = False) -> None:
    """An integer >= `low` (or None where `optional`: "all"), else a ConfigError naming `key`."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        what = f"null or an integer >= {low}" if optional else f"an integer >= {low}"
        raise ConfigError(f"{key} must be {what}, got {value!r}")


def check_number(
    value,
    name: str,
    low: float | None = None,
    high: float | None = None,
    *,
    above: bool = False,
    integer: bool = False,
) -> None:
    """A number (an integer where `integer`) >= `low` (> `low` with `above`) and <= `high`,
    else a ConfigError that starts with `name`."""
    kinds = (int,) if integer else (int, float)
    what = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ConfigError(f"{name} must be {what}, got {value!r}")
    if low is not None and (value <= low if above else value < low):
        raise ConfigError(f"{name} must be {'>' if above else '>='} {low}, got {value}")
    if high is not None and value > high:
        raise ConfigError(f"{name} must be <= {high}, got {value}")


def qualified_name(obj) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def fingerprint(obj) -> Any:
    """The JSON-able identity of a value a stage reads: what its cache key hashes.

    Dataclasses and plain objects are their class and public fields, recursively; an object
    may define `fingerprint()` itself (a lazily built model is its config, never its weights).
    """
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, Fingerprinted) and not isinstance(obj, type):
        return obj.fingerprint()
    if isinstance(obj, (DictConfig, ListConfig)):
        return plain(obj)
    if isinstance(obj, Mapping):
        return {str(k): fingerprint(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [fingerprint(v) for v in obj]
    if isinstance(obj, type):
        return qualified_name(obj)
    if dataclasses.is_dataclass(obj):
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    else:
        fields = vars(obj)
    public = {k: fingerprint(v) for k, v in fields.items() if not k.startswith("_")}
    return {"_target_": qualified_name(obj), **public}


class Built:
    """An object instantiated from a config node on first use, in whichever process uses it
    (the node travels to worker processes, the built object does not). Its fingerprint is the
    node: what the user controls, and all that decides what the object does."""

    def __init__(self, config, value=None):
        self.config = plain(config)
        self._value = value  # the object already built from `config` in this process, if any

    def get(self):
        if self._value is None:
            from hydra.utils import instantiate

            self._value = instantiate(self.config)
        return self._value

    def fingerprint(self):
        return self.config

    def __getstate__(self):
        return {"config": self.config, "_value": None}
