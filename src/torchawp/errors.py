"""The small family of errors torchawp raises at its boundaries.

Every message is one line that names the problem and the fix; the CLI prints it as
``torchawp: error: <message>`` and exits with status 2.
"""


class TorchAWPError(Exception):
    """Base class of every error torchawp raises on bad input."""


class ConfigError(TorchAWPError, ValueError):
    """An invalid configuration value (names the field and the allowed range)."""


class DataError(TorchAWPError):
    """A dataset that is missing, malformed or inconsistent (names the expected files)."""


class CheckpointError(TorchAWPError):
    """A checkpoint that is missing, corrupt, unsafe or incompatible with the model."""


class RunDirInUse(TorchAWPError):
    """Another process holds the run directory's (or evaluation state's) lock."""


class TrainingInterrupted(TorchAWPError):
    """SIGINT/SIGTERM: a checkpoint was saved at the current step (exit status 130)."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


class TrainingDiverged(TorchAWPError):
    """The training loss became NaN or infinite."""
