"""Shared fixtures: tiny stores and real files written on ``tmp_path``."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# A TCuP-GAN small enough to train for a few real steps in a test (widths and val_roi as a test needs)
SMALL_MODEL = {"widths": (4, 8), "disc_width": 4, "disc_layers": 2, "val_roi": (8, 32, 32)}
# demo.yaml's fit on crops small enough for a test: `fit_config(..., extra=SMALL_CROPS)`
SMALL_CROPS = ["--data.crop_size", "[8, 32, 32]", "--model.val_roi", "[8, 32, 32]"]


def quiet_trainer(root: Path, **options) -> L.Trainer:
    """A CPU Lightning Trainer for one epoch without logger, progress bar or summary; ``options`` override."""
    defaults = {
        "accelerator": "cpu", "devices": 1, "max_epochs": 1, "logger": False, "enable_progress_bar": False,
        "enable_model_summary": False, "default_root_dir": root,
    }  # fmt: skip
    return L.Trainer(**{**defaults, **options})


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
