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
