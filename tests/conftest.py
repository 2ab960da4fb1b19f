"""Shared fixtures: tiny stores and real files written on ``tmp_path``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _small_threads():
    """Keep each test on the CI machine's two cores and deterministic."""
    torch.set_num_threads(2)
    torch.manual_seed(0)
    np.random.seed(0)
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")


def snapshot(path: Path) -> list[tuple[str, int, int]] | None:
    """Every file under ``path`` with size and mtime: equal snapshots mean nothing was written."""
    if not path.exists():
        return None
    return sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*"))


def shared(name: str) -> Path:
    """A folder of ../shared/data, or skip the test with a clear reason."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"sample data {path} is absent")
    return path
