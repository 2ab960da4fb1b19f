"""File locks for read-modify-write steps: two tcupgan processes never interleave on one store or folder.

A lock is ``fcntl.flock`` on a small file beside what it guards (``.NAME.locks/WHAT.lock`` next to the
store ``NAME``), so it also works before the store exists (ingest creating it) and is released by the
operating system when a process dies. Where the platform has no ``flock`` (Windows) steps run unlocked.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from tcupgan.errors import TcupganError

__all__ = ["Busy", "file_lock", "store_lock"]

log = logging.getLogger(__name__)


class Busy(TcupganError, BlockingIOError):
    """Another process holds the lock and this step was asked not to wait."""


@contextmanager
def file_lock(path: str | os.PathLike, *, wait: bool = True, what: str = "") -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed). Busy: wait, saying so once, or with
    ``wait=False`` raise :class:`Busy`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as err:
                if not wait:
                    raise Busy(f"another tcupgan process is {what or 'using ' + str(path)}; let it finish, "
                               "or stop it, and run this again") from err  # fmt: skip
                log.warning("waiting: another tcupgan process is %s", what or f"using {path}")
                fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


def store_lock(store_path: str | os.PathLike, what: str = "store") -> Iterator[None]:
    """The lock of one part (``store`` for adding cubes, a cube's name for changing it) of a store."""
    store_path = Path(store_path)
    lock = store_path.parent / f".{store_path.name}.locks" / f"{what}.lock"
    return file_lock(lock, what=f"writing {what} of {store_path}")
