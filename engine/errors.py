"""Named errors of the engine. Each message says what is wrong and how to fix it.

Front ends (CLI, QGIS algorithms) catch `SatGenError` and show its message as is.
"""


class SatGenError(Exception):
    """Base of every error the engine raises on purpose."""


class InputError(SatGenError):
    """A raster, band selection, mask or parameter the engine cannot use."""


class ModelFileError(SatGenError):
    """A model file that is missing, malformed, unsafe, or for another task."""


class OutputError(SatGenError):
    """An output that cannot be written completely (folder, permissions, disk space, file-size
    limit); nothing was written under the output's name and an existing file there is untouched."""


class TrainingError(SatGenError):
    """Training that cannot go on (a loss that became NaN or infinite); the model file was not written."""


class Cancelled(SatGenError):  # noqa: N818
    """The user cancelled; partial outputs have been removed."""
