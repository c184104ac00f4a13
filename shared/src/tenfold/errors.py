"""Errors a user can act on. The CLIs print them as one line and exit non-zero."""


class TenfoldError(Exception):
    """Base class: the message says what is wrong and how to fix it."""


class ConfigError(TenfoldError):
    pass


class DataError(TenfoldError):
    pass


class CheckpointError(TenfoldError):
    pass


class NonFiniteLossError(TenfoldError):
    pass


class RunStopped(BaseException):
    """A run stopped by SIGTERM/SIGUSR1 (after saving, when a loop was polling). A BaseException, like
    KeyboardInterrupt, so that `except Exception` in method code cannot swallow it."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum
        self.message = message
