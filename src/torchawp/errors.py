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
