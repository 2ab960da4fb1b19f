"""Looking at cubes: PNG figures of slices with their masks outlined, and ``tcupgan view`` in napari.

Matplotlib runs headless (Agg) so figures render on clusters and in CI; napari (the ``[view]`` extra) is
imported only by :func:`view_cube`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

__all__ = ["display_image", "outline", "overlay", "save_panels", "show_cube", "viewer_layers", "score_figure",
           "view_cube", "add_cube_layers"]  # fmt: skip
LABEL_LAYERS = ("label", "prediction", "corrections")

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


def viewer_layers(store, cube: str) -> list[tuple[object, dict, str]]:
    """napari layer data tuples of one cube, read lazily from the store: each image channel (named, at the
    cube's spacing), the per-class probabilities, and the label maps (truth, prediction, corrections)."""
    c = store[cube]
    scale = tuple(float(s) for s in c.attrs.get("spacing", (1.0, 1.0, 1.0)))
    layers: list[tuple[object, dict, str]] = [
        (c.image, {"channel_axis": 0, "name": list(store.channel_names), "scale": scale}, "image")
    ]
    if "probability" in c:
        names = [f"p({n})" for n in store.class_names[: c["probability"].shape[0]]]
        layers.append((c["probability"], {"channel_axis": 0, "name": names, "scale": scale,
                                          "colormap": "magma", "visible": False}, "image"))  # fmt: skip
    layers += [
        (c[key], {"name": key, "scale": scale, "opacity": 0.5}, "labels") for key in LABEL_LAYERS if key in c
    ]
    return layers


def score_figure(store, cube: str):
    """A matplotlib Figure of the cube's per-slice scores (``slice_<score>`` arrays) against slice index;
    None when the cube has not been predicted."""
    from matplotlib.figure import Figure

    c = store[cube]
    arrays = c.keys()
    scores = {key.removeprefix("slice_"): c[key][...] for key in arrays if key.startswith("slice_")}
    if not scores:
        return None
    fig = Figure(figsize=(4, 2.5 * len(scores)))
    for ax, (name, values) in zip(
        fig.subplots(len(scores), 1, squeeze=False)[:, 0], scores.items(), strict=True
    ):
        ax.plot(values, marker=".")
        ax.set(title=name, xlabel="slice")
    fig.tight_layout()
    return fig


def add_cube_layers(viewer, store, cube: str) -> None:
    """Add :func:`viewer_layers` to a napari viewer (or its window-less ``ViewerModel``)."""
    for data, kwargs, kind in viewer_layers(store, cube):
        getattr(viewer, f"add_{kind}")(data, **kwargs)


def view_cube(store, cube: str):
    """Open one cube in napari: image channels, probabilities and label maps as layers, the slice scores
    as a plot docked beside them. Returns the viewer (call ``napari.run()`` outside notebooks)."""
    from tcupgan.errors import require_extra

    napari = require_extra("napari", "view", "tcupgan view")
    viewer = napari.Viewer(title=f"tcupgan: {cube}")
    add_cube_layers(viewer, store, cube)
    fig = score_figure(store, cube)
    if fig is not None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg

        viewer.window.add_dock_widget(FigureCanvasQTAgg(fig), name="slice scores", area="right")
    return viewer
