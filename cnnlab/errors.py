"""User-facing errors: one paragraph that says what was received and what to do.

The CLI prints these without a traceback and exits with code 2.
"""


class CnnlabError(Exception):
    """A problem with the user's input, files or configuration (not a bug in cnnlab)."""


class ConfigError(CnnlabError):
    """An unknown key, a wrong type or an impossible value in a config or study file."""


class DataError(CnnlabError):
    """A dataset that is missing, corrupt or in the wrong format."""


class ChecksumError(DataError):
    """A file whose checksum does not match the published one."""


class ModelError(CnnlabError):
    """A model spec that is invalid, or a model whose shapes do not fit its input."""


class TrainingInterrupted(CnnlabError):
    """Training stopped by Ctrl-C or SIGTERM after the last state was saved."""
