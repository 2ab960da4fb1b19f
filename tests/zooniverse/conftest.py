"""A rendered subjects folder from a real store, and a sandbox whose owner is logged in by env vars."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from tcupgan.data import CubeStore
from tcupgan.selection import SelectionRules, select_slices, write_selection
from tcupgan.zooniverse import render_subjects
from tcupgan.zooniverse.testing.sandbox import Sandbox


@pytest.fixture()
def store_path(tmp_path):
    """Four cubes of 8 slices with a disc per slice; the 'prediction' is a shrunken disc."""
    store = CubeStore.create(tmp_path / "loop.zarr", task="binary", channel_names=["em"], class_names=["fg"])
    rng = np.random.default_rng(0)
    for c in range(4):
        label = np.zeros((8, 48, 40), np.uint8)
        pred = np.zeros_like(label)
        for z in range(8):
            centre, radius = (rng.integers(16, 32), rng.integers(14, 26)), rng.integers(6, 11)
            label[z][disk(centre, radius, shape=label.shape[1:])] = 1
            pred[z][disk(centre, radius - 3, shape=label.shape[1:])] = 1
        image = (label[None] * 2 + rng.normal(0, 0.3, (1, *label.shape))).astype(np.float32)
        name = f"cube{c}"
        store.write_cube(name, image, label)
        store.write_array(name, "prediction", pred, attrs={"checkpoint": "ckpt"})
        store.write_array(
            name, "slice_realness", rng.random(8).astype(np.float32), attrs={"checkpoint": "ckpt"}
        )
    return tmp_path / "loop.zarr"


@pytest.fixture()
def subjects(store_path, tmp_path):
    rows = select_slices(store_path, 32, strategy="realness", rules=SelectionRules(min_gap=1))
    selection = write_selection(rows, tmp_path / "selection.csv")
    render_subjects(store_path, selection, tmp_path / "subjects")
    return tmp_path / "subjects"


@pytest.fixture()
def sandbox(tmp_path, monkeypatch):
    with Sandbox(tmp_path / "sandbox") as sb:
        user, password = sb.owner_credentials()
        monkeypatch.setenv("PANOPTES_USERNAME", user)
        monkeypatch.setenv("PANOPTES_PASSWORD", password)
        monkeypatch.setenv("PANOPTES_ENDPOINT", sb.endpoint)
        yield sb


@pytest.fixture()
def small_store(tmp_path):
    """One binary cube of 3 slices of 40 x 40 px, for hand-written exports."""
    store = CubeStore.create(tmp_path / "h.zarr", task="binary", channel_names=["em"], class_names=["fg"])
    store.write_cube("c", np.ones((1, 3, 40, 40), np.float32), np.zeros((3, 40, 40), np.uint8))
    return tmp_path / "h.zarr"
