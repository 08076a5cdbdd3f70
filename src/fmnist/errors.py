"""Typed errors. The CLI turns any FmnistError into one line on stderr and exit status 1."""


class FmnistError(Exception):
    """Base class: something the user can fix; its message names the thing and the fix."""


class ConfigError(FmnistError, ValueError):
    """A setting with an impossible value (negative epochs, zero batch size, ...)."""


class UnknownNameError(FmnistError, KeyError):
    """A name that is not in a registry (model, optimizer, data set, schedule)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DataError(FmnistError):
    """Data that cannot be used: missing, corrupt, or not what was asked for."""


class IDXFormatError(DataError):
    """An IDX file whose bytes do not follow the format (magic, dimensions, payload)."""


class ChecksumError(DataError):
    """A file whose checksum matches none of the known ones."""


class DataNotFoundError(DataError):
    """The files are in none of the places we look and cannot be downloaded."""


class RunError(FmnistError):
    """A run directory that is missing, incomplete or from another model."""


class WriteError(FmnistError):
    """A file that could not be written (full disk, no permission); the old one is intact."""

    def __init__(self, message: str, path) -> None:
        super().__init__(message)
        self.path = path
