"""One error hierarchy, so the CLI can turn any expected failure into one clear line.

Every message says what went wrong, where, and what to do next. Subclasses also inherit the matching
built-in exception so library users can catch them the usual way.
"""

from __future__ import annotations


class TcupganError(Exception):
    """Base class of every error tcupgan raises on purpose."""


class InputError(TcupganError, ValueError):
    """Source data is malformed: wrong shape, dtype, NaN/Inf, label values, unreadable file."""


class MissingModalityError(InputError):
    """A multi-modal case lacks one of the channels the store expects."""


class StoreError(TcupganError):
    """The cube store is missing, of another format, or inconsistent with the request."""


class CubeExistsError(StoreError, FileExistsError):
    """A cube or array is already in the store and overwriting was not asked for."""


class CubeNotFoundError(StoreError, KeyError):
    """The named cube or array is not in the store."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it a readable sentence
        return str(self.args[0]) if self.args else ""


class ConfigError(TcupganError, ValueError):
    """A model, training or command configuration is invalid."""


class TrainingDivergedError(TcupganError, RuntimeError):
    """Losses became NaN/Inf: training stopped before saving a broken checkpoint."""


class MissingExtraError(ConfigError, ImportError):
    """An optional dependency a command needs is not installed."""


def require_extra(module: str, extra: str, what: str):
    """Import ``module`` of the optional extra ``extra``, or say which extra to install for ``what``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = module.split(".")[0]
        raise MissingExtraError(f"{what} needs {package}: pip install 'tcupgan[{extra}]'") from err
