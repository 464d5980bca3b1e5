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


class OutputError(CnnlabError):
    """A file or folder cnnlab could not write: no space left, a read-only file system, no
    permission, or a path through a file. The message names the target, never a temporary file;
    `target` is that path and `reason` the cause in words."""

    def __init__(self, message: str, target=None, reason: str | None = None):
        super().__init__(message)
        self.target = target
        self.reason = reason
