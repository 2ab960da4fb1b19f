"""PNG figures: slices with their masks outlined, side by side, for people to look at.

Matplotlib runs headless (Agg) so figures render on clusters and in CI.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

__all__ = ["display_image", "outline", "overlay", "save_panels", "show_cube"]

_COLOURS = np.array([[1.0, 0.2, 0.2], [0.2, 1.0, 0.2], [0.3, 0.5, 1.0], [1.0, 0.9, 0.2]])


def display_image(planes: np.ndarray) -> np.ndarray:
    """(C, H, W) → an (H, W, 3) float image in 0..1: RGB for 3+ channels, grey otherwise.

    Each channel is stretched between its 1st and 99th percentiles, as volunteers' images are.
    """
    planes = planes[:3] if planes.shape[0] >= 3 else planes[:1]
    lo = np.percentile(planes, 1, axis=(1, 2), keepdims=True)
    hi = np.percentile(planes, 99, axis=(1, 2), keepdims=True)
    out = np.clip((planes - lo) / np.maximum(hi - lo, 1e-6), 0, 1).transpose(1, 2, 0)
    return np.repeat(out, 3, axis=2) if out.shape[2] == 1 else out


def overlay(planes: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The slice with each label value's outline drawn in its own colour, (H, W, 3) in 0..1."""
    rgb = display_image(planes).copy()
    if mask is None:
        return rgb
    for i, value in enumerate(v for v in np.unique(mask) if v != 0):
        outline(rgb, mask == value, _COLOURS[i % len(_COLOURS)])
    return rgb


def outline(rgb: np.ndarray, mask: np.ndarray, colour: Sequence[float]) -> np.ndarray:
    """Draw the inner boundary of ``mask`` on an (H, W, 3) image in place, and return it."""
    rgb[find_boundaries(mask, mode="inner")] = colour
    return rgb


def save_panels(
    panels: Sequence[Sequence[tuple[str, np.ndarray]]], path: str | Path, size: float = 2.6
) -> Path:
    """Save a grid of titled RGB panels (rows of (title, image)) as a PNG."""
    rows, cols = len(panels), max(len(r) for r in panels)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, row in enumerate(panels):
        for c, (title, image) in enumerate(row):
            axes[r, c].imshow(image, interpolation="nearest")
            axes[r, c].set_title(title, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def show_cube(store, cube: str, path: str | Path, slices: Sequence[int] | None = None) -> Path:
    """A figure of a few slices of one cube: the image, and the image with its label outlined."""
    c = store[cube]
    depth = c.shape[1]
    slices = list(slices) if slices else sorted({depth // 4, depth // 2, (3 * depth) // 4})
    label = c.label
    rows = []
    for z in slices:
        planes = c.image[:, z]
        mask = label[z] if label is not None else None
        rows.append([(f"{cube} z={z}", display_image(planes)), ("label outline", overlay(planes, mask))])
    return save_panels(rows, path)
