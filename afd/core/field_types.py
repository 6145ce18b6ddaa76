"""A config node's plain values checked against the types its `_target_` declares,
before anything is built: `reward.val_fraction=abc` or `sampling.standby=maybe` fail naming
the key, rather than as Python's own comparison error inside a check, or not at all (a
string is truthy).

Only what is clearly wrong is refused: a string or a bool where a number is declared, a
fraction where an integer is, and anything but true/false where a bool is. Ranges and the rest
stay with each class's own checks, which know what their fields mean."""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing

from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from afd.core.errors import ConfigError

NUMBER, INTEGER, FLAG = "a number", "an integer", "true or false"


def check_field_types(node, key: str, source=lambda message: message) -> None:
    """Raise ConfigError naming `key.field` for a value of the wrong kind, in `node` and in the
    nodes with a `_target_` of their own below it. `source` adds where the value was set."""
    if not isinstance(node, DictConfig):
        return
    declared = _declared_kinds(node.get("_target_"))
    for name in node:
        try:
            value = node[name]
        except OmegaConfBaseException:
            continue  # an interpolation that does not resolve: its own error comes later
        if isinstance(value, DictConfig):
            check_field_types(value, f"{key}.{name}", source)
            continue
        kind = declared.get(name)
        if kind is None or value is None or _fits(value, kind):
            continue
        raise ConfigError(source(f"{key}.{name} must be {kind}, got {value!r}"))


def _fits(value, kind: str) -> bool:
    if kind == FLAG:
        return isinstance(value, bool)
    if isinstance(value, (str, bool)):
        return False
    return not (kind == INTEGER and isinstance(value, float))  # ranges: the class's to check


def _declared_kinds(target) -> dict[str, str]:
    """Argument name -> NUMBER / INTEGER / FLAG, for the plainly typed arguments of what the
    target builds with (a dataclass's fields, a class's `__init__`, a function)."""
    built = _resolve(target)
    if built is None:
        return {}
    if dataclasses.is_dataclass(built):
        annotated = built
    else:
        annotated = built.__init__ if isinstance(built, type) else built
    try:
        hints = typing.get_type_hints(annotated)
    except Exception:  # annotations naming what only type checkers import
        return {}
    kinds = {name: _kind(hint) for name, hint in hints.items() if name != "return"}
    return {name: kind for name, kind in kinds.items() if kind is not None}


def _kind(hint) -> str | None:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
    else:
        args = [hint]
    if args == [bool]:
        return FLAG
    if args == [int]:
        return INTEGER
    if sorted(args, key=str) in ([float], [float, int]):
        return NUMBER
    return None


def _resolve(target):
    if not isinstance(target, str) or "." not in target:
        return None
    module, _, name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None  # instantiating it says what is missing
