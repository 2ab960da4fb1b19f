"""``torch.compile`` with a safety net: compiled on first use, eager (with one warning) where it fails.

Used for the ConvLSTM's fused gate kernel and for ``predict``'s CUDA graphs. Inductor caches what it
compiled on disk; tcupgan points that cache at the user's cache folder (``~/.cache/tcupgan/torchinductor``,
or wherever ``TORCHINDUCTOR_CACHE_DIR`` already says) instead of ``/tmp``, which clusters often wipe
between jobs, so a second run loads its kernels instead of compiling them again.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["CompiledOrEager", "compile_cache_dir"]


def compile_cache_dir() -> Path:
    """Where compiled kernels are kept (set for this process on first call, unless the user set it)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tcupgan" / "torchinductor"
    return Path(os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(default)))


class CompiledOrEager:
    """``fn`` compiled by ``torch.compile(fn, **options)`` the first time it is called.

    If compiling or running the compiled code raises (no C++ compiler, an unsupported device or
    operator), it warns once, naming ``what``, and calls ``fn`` itself from then on: same numbers, no
    error. ``failed`` says whether that happened.
    """

    def __init__(self, fn: Callable, what: str, **options: Any) -> None:
        self.fn, self.what, self.options = fn, what, options
        self._compiled: Callable | None = None
        self.failed = False

    def __call__(self, *args: Any) -> Any:
        if self.failed:
            return self.fn(*args)
        try:
            if self._compiled is None:
                compile_cache_dir()
                self._compiled = torch.compile(self.fn, **self.options)
            return self._compiled(*args)
        except Exception as err:  # any compiler failure: eager gives the same numbers
            self.failed = True
            warnings.warn(f"{self.what} unavailable ({type(err).__name__}: {err}); running eagerly",
                          stacklevel=2)  # fmt: skip
            return self.fn(*args)
