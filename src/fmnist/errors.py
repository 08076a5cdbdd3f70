"""Typed errors. The CLI turns any FmnistError into one line on stderr and exit status 1."""


class FmnistError(Exception):
    """Base class: something the user can fix; its message names the thing and the fix."""

    def __reduce__(self):
        # An error raised in a worker process (figures drawn in a fork, a comparison's cells
        # in N processes) comes back by pickle. Exception's own reduce rebuilds it as
        # cls(*self.args), which fails for a subclass whose __init__ takes more than the
        # message (WriteError's path, TrainingDiverged's epoch and step), and the failed
        # unpickling kills the pool (BrokenProcessPool); so rebuild it from its state instead.
        return _rebuild, (type(self), self.args, self.__dict__)


def _rebuild(cls: type, args: tuple, state: dict) -> FmnistError:
    """An FmnistError as it was pickled, without calling its __init__."""
    exc = cls.__new__(cls, *args)
    exc.args = args
    exc.__dict__.update(state)
    return exc


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
    """A file that could not be written (full disk, no permission); the old one is intact.

    `problem` says what happened to `path`, `fix` what to do; the message is both. A caller
    that knows a better next step (resume the run, redraw its figures) swaps the fix with
    `with_fix`, so the message never carries two fixes."""

    def __init__(self, message: str, path, fix: str = "") -> None:
        super().__init__(f"{message}; {fix}" if fix else message)
        self.path, self.problem, self.fix = path, message, fix

    def with_fix(self, fix: str) -> "WriteError":
        return WriteError(self.problem, self.path, fix)
