"""``tcupgan render``: the images a volunteer sees for each selected slice, and the manifest that ties
each subject back to its cube and slice.

Per slice two frames: the raw slice (each channel stretched between its 1st and 99th percentiles, or one
chosen channel in grey) and the same slice with the machine's proposed mask outlined. Zooniverse limits:
each file under 1,000 KB (PNG, or JPEG when PNG is too large) and at most ~1,500 px on a side; small
slices are enlarged (nearest neighbour) so volunteers can draw on them. ``manifest.csv`` carries hidden
metadata (keys starting with ``#`` are not shown to volunteers), a stable ``#tcupgan_id`` and the frame
size, so harvested marks map back to slice pixels.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from tcupgan.data.store import CubeStore
from tcupgan.errors import InputError, StoreError
from tcupgan.selection.select import read_selection
from tcupgan.tables import write_csv
from tcupgan.viz import display_image, overlay

__all__ = ["render_subjects", "subject_id", "MAX_BYTES", "MAX_SIDE"]

MAX_BYTES = 1_000 * 1024
MAX_SIDE = 1500
MIN_SIDE = 512


def subject_id(store: CubeStore, cube: str, z: int, checkpoint: str) -> str:
    """Stable id of one (store, cube, slice, model) subject: the same inputs always give the same id."""
    return hashlib.sha256(f"{store.path.name}/{cube}/{z}/{checkpoint}".encode()).hexdigest()[:20]


def _encode(rgb: np.ndarray) -> tuple[bytes, str, tuple[int, int]]:
    """PNG if it fits the size limit, else the best JPEG quality that does; also the (width, height)
    drawn on, which harvest needs to map volunteers' marks back to slice pixels."""
    image = Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8))
    side = max(image.size)
    if side > MAX_SIDE or side < MIN_SIDE:
        scale = (MAX_SIDE if side > MAX_SIDE else MIN_SIDE) / side
        size = (round(image.size[0] * scale), round(image.size[1] * scale))
        image = image.resize(size, Image.NEAREST if scale > 1 else Image.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    if buffer.tell() <= MAX_BYTES:
        return buffer.getvalue(), ".png", image.size
    for quality in (92, 85, 75, 60):
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        if buffer.tell() <= MAX_BYTES:
            return buffer.getvalue(), ".jpg", image.size
    raise InputError("a frame does not fit in 1,000 KB even as JPEG quality 60")


def render_subjects(
    store_path: str | Path,
    selection: str | Path,
    out: str | Path,
    *,
    channel: str | None = None,
) -> Path:
    """Write frames and ``manifest.csv`` for every row of a selection; returns the manifest path."""
    store = CubeStore(store_path)
    rows = read_selection(selection)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    channels = store.channel_names
    if channel is not None and channel not in channels:
        raise InputError(f"no channel '{channel}' in the store (channels: {channels})")
    manifest = []
    for row in tqdm(rows, desc="render", unit="subject", disable=None):
        name, z = row["cube"], row["slice"]
        cube = store[name]
        if "prediction" not in cube:
            raise StoreError(f"cube '{name}' has no prediction; run `tcupgan predict` first")
        if not 0 <= z < cube.shape[1]:
            raise InputError(f"slice {z} is outside cube '{name}' (depth {cube.shape[1]})")
        planes = cube.image[:, z]
        if channel is not None:
            planes = planes[[channels.index(channel)]]
        checkpoint = cube["prediction"].attrs.get("checkpoint", "")
        sid = subject_id(store, name, z, checkpoint)
        files = []
        for frame, rgb in enumerate((display_image(planes), overlay(planes, cube["prediction"][z]))):
            data, suffix, size = _encode(rgb)
            path = out / f"{sid}_{frame}{suffix}"
            path.write_bytes(data)
            files.append(path.name)
        manifest.append({
            "#tcupgan_id": sid, "frame_0": files[0], "frame_1": files[1], "#cube": name, "#slice": z,
            "#store": store.path.name, "#checkpoint": checkpoint, "#score": row.get("realness", ""),
            "#frame_width": size[0], "#frame_height": size[1],
        })  # fmt: skip
    return write_csv(manifest, out / "manifest.csv")
