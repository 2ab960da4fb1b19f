"""Bar length, angle and axis ratio, and spiral-arm statistics from (soft) masks of one galaxy.

The bar is the connected region of the thresholded bar mask nearest the galaxy centre; its length is the
extent of its pixels along their principal axis (plus one pixel, since pixels have width). On the
synthetic galaxies this is within 2% of the true bar length (median), where moment-based major axes
overestimate thin bars by 15%. A model's soft bar map is outlined at half its peak (``bar_level``): on
synthetic validation galaxies that gave a 5.6% median length error, the fixed 0.5 level 49% (the model
is less sure at the bar's ends); the peak must still reach ``threshold`` for the galaxy to count as barred.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from skimage.measure import label as connected
from skimage.measure import regionprops

from tcupgan.data.store import CubeStore
from tcupgan.errors import InputError
from tcupgan.tables import write_csv

__all__ = ["bar_geometry", "measure_galaxy", "measure_store", "write_catalogue"]


def bar_geometry(
    bar: np.ndarray,
    *,
    threshold: float = 0.5,
    centre: tuple[float, float] | None = None,
    relative: float | None = None,
) -> dict:
    """Length (px), angle (degrees from the image x axis towards +y, in [0, 180)) and axis ratio of the
    bar in a (H, W) mask or vote-fraction map; zeros when there is no bar.

    ``relative``: outline the bar where the map exceeds this share of its peak instead of at
    ``threshold`` (which then only decides whether there is a bar). A model's soft map is less sure at
    the bar's ends than at its middle, so a fixed level measures its confidence as much as the bar; a
    level relative to the peak measures the shape."""
    bar = np.asarray(bar, dtype=float)
    level = threshold
    if relative is not None and bar.max() >= threshold:
        level = relative * bar.max()
    mask = bar >= level
    regions = regionprops(connected(mask))
    if not regions:
        return {"bar_length_px": 0.0, "bar_angle_deg": float("nan"), "bar_axis_ratio": float("nan")}
    cy, cx = centre if centre is not None else ((mask.shape[0] - 1) / 2, (mask.shape[1] - 1) / 2)
    region = min(regions, key=lambda r: np.hypot(r.centroid[0] - cy, r.centroid[1] - cx))
    direction = np.array([np.cos(region.orientation), np.sin(region.orientation)])  # (row, col)
    along = region.coords @ direction
    across = region.coords @ np.array([-direction[1], direction[0]])
    length = along.max() - along.min() + 1
    width = across.max() - across.min() + 1
    angle = np.rad2deg(np.arctan2(direction[0], direction[1])) % 180
    return {
        "bar_length_px": float(length),
        "bar_angle_deg": float(angle),
        "bar_axis_ratio": float(width / length),
    }


def measure_galaxy(
    arms: np.ndarray,
    bar: np.ndarray,
    *,
    threshold: float = 0.5,
    pixel_scale: float | None = None,
    min_arm_area: int = 20,
    bar_level: float | None = 0.5,
    centre: tuple[float, float] | None = None,
) -> dict:
    """Bar geometry (outlined at ``bar_level`` x its peak; None: at ``threshold``) plus the spiral-arm
    pixel fraction and an arm count (arm regions of at least ``min_arm_area`` pixels once the bar is
    removed); with ``pixel_scale`` (arcsec/px) the bar length in arcsec too."""
    out = bar_geometry(bar, threshold=threshold, relative=bar_level, centre=centre)
    arm_mask = (np.asarray(arms) >= threshold) & ~(np.asarray(bar) >= threshold)
    out["arm_fraction"] = float(arm_mask.mean())
    out["arm_count"] = int(sum(r.area >= min_arm_area for r in regionprops(connected(arm_mask))))
    if pixel_scale is not None:
        out["bar_length_arcsec"] = out["bar_length_px"] * pixel_scale
    return out


def measure_store(
    store_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    what: str = "probability",
    threshold: float = 0.5,
    pixel_scale: float | None = None,
    bar_level: float | None = 0.5,
    split: str | None = None,
) -> Path:
    """A catalogue CSV of every 2D cube of a galaxy store (or of one ``split``; classes: spiral arm, bar),
    measured from its ``probability`` (K = 2 channels, arm then bar), ``vote_fraction`` or bit-flag
    ``label``."""
    store = CubeStore(store_path)
    rows = []
    for name in store.names(split=split):
        cube = store[name]
        if what == "label" and cube.label is not None:
            label = cube.label[0]
            arms, bar = (label & 1).astype(float), ((label & 2) > 0).astype(float)
        elif what in cube and what != "label":
            data = cube[what][...]
            data = data.astype(float) / 255 if data.dtype == np.uint8 else data
            arms, bar = data[0, 0], data[1, 0]
        else:
            raise InputError(f"cube '{name}' has no '{what}'; predict first or choose --what label")
        options = {"threshold": threshold, "pixel_scale": pixel_scale, "bar_level": bar_level}
        rows.append({"cube": name, **measure_galaxy(arms, bar, **options)})
    return write_catalogue(rows, out)


def write_catalogue(rows: list[dict], path: str | os.PathLike) -> Path:
    """One CSV row per galaxy, written to a temporary file and renamed, so a reader never sees half."""
    if not rows:
        raise InputError(f"no galaxies to write to '{path}'")
    return write_csv(rows, path)
