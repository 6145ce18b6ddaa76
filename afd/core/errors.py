"""Errors a researcher's input causes. Each message names what is wrong, where (config key, or
file and line) and what to do; the command line prints it as one line, without a traceback."""

from __future__ import annotations


class AfdError(Exception):
    """A problem with the user's config, files or environment, not a bug in afd."""


class ConfigError(AfdError, ValueError):
    """A config value that cannot work; the message names its key."""


class DataError(AfdError, ValueError):
    """A dataset row or file that cannot be used; the message names file and line."""
