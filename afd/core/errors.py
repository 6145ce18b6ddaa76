"""Errors a researcher's input causes. Each message names what is wrong, where (config key, or
file and line) and what to do; the command line prints it as one line, without a traceback."""

from __future__ import annotations


class AfdError(Exception):
    """A problem with the user's config, files or environment, not a bug in afd."""


class ConfigError(AfdError, ValueError):
    """A config value that cannot work; the message names its key."""


class DataError(AfdError, ValueError):
    """A dataset row or file that cannot be used; the message names file and line."""


class JobTerminated(BaseException):
    """The job was told to stop by a signal (SIGTERM, SIGUSR1: a scheduler's time limit or a
    user's kill). Like KeyboardInterrupt it is no ordinary failure: it stops a whole sweep, and
    the command exits with 128 + the signal's number."""

    def __init__(self, signum: int):
        import signal

        self.signum = signum
        super().__init__(f"terminated by {signal.Signals(signum).name}")
