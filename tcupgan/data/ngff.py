"""OME-Zarr (NGFF 0.5) metadata for the cubes of a store, so napari, neuroglancer, MoBIE and Fiji open them.

Each cube group is an NGFF image: ``multiscales`` names one level, the ``image`` array, with axes
(c, z, y, x) and the cube's spacing as its scale. The cube's label maps (``label``, ``prediction``,
``corrections``) are NGFF image-labels under ``labels/<name>/0``, each with its class names and colours,
and ``labels`` lists those present. Per-slice scores stay arrays of the cube (``slice_<score>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

NGFF_VERSION = "0.5"
LABEL_ARRAYS = ("label", "prediction", "corrections")  # stored as NGFF image-labels
UNITS = {"mm": "millimeter", "micron": "micrometer", "um": "micrometer", "nm": "nanometer", "meter": "meter"}
COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230)]  # fmt: skip

__all__ = ["LABEL_ARRAYS", "NGFF_VERSION", "image_metadata", "label_metadata", "labels_list", "label_classes"]


def _axes(channels: bool, unit: str | None) -> list[dict[str, str]]:
    space = [{"name": a, "type": "space", **({"unit": unit} if unit else {})} for a in "zyx"]
    return [{"name": "c", "type": "channel"}, *space] if channels else space


def _multiscales(name: str, path: str, scale: Sequence[float], channels: bool, unit: str | None) -> list:
    transform = [{"type": "scale", "scale": [*([1.0] if channels else []), *map(float, scale)]}]
    return [{"name": name, "axes": _axes(channels, unit),
             "datasets": [{"path": path, "coordinateTransformations": transform}]}]  # fmt: skip


def image_metadata(cube: str, attrs: dict[str, Any], channel_names: Sequence[str]) -> dict[str, Any]:
    """The cube group's ``ome`` attribute: its image as a one-level multiscale with channel names."""
    unit = UNITS.get(str(attrs.get("spacing_unit", "")).lower())
    return {
        "version": NGFF_VERSION,
        "multiscales": _multiscales(cube, "image", attrs.get("spacing", [1.0, 1.0, 1.0]), True, unit),
        "omero": {"channels": [{"label": str(n), "active": True} for n in channel_names]},
    }


def label_classes(task: str, class_names: Sequence[str]) -> dict[int, str]:
    """Stored label value → class name: binary 1, BraTS 2023's 1-3, multilabel one bit per class."""
    if task == "binary":
        return {1: class_names[0]}
    if task == "brats":
        return {1: "necrotic tumour core (NCR)", 2: "peritumoral edema (ED)", 3: "enhancing tumour (ET)"}
    return {1 << k: name for k, name in enumerate(class_names)}


def label_metadata(key: str, attrs: dict[str, Any], task: str, class_names: Sequence[str]) -> dict[str, Any]:
    """A ``labels/<key>`` group's ``ome`` attribute: image-label (classes, colours, source) and its scale."""
    unit = UNITS.get(str(attrs.get("spacing_unit", "")).lower())
    classes = label_classes(task, class_names)
    return {
        "version": NGFF_VERSION,
        "image-label": {
            "colors": [
                {"label-value": v, "rgba": [*COLOURS[i % len(COLOURS)], 255]} for i, v in enumerate(classes)
            ],  # fmt: skip
            "properties": [{"label-value": v, "class": name} for v, name in classes.items()],
            "source": {"image": "../../"},
        },
        "multiscales": _multiscales(key, "0", attrs.get("spacing", [1.0, 1.0, 1.0]), False, unit),
    }


def labels_list(present: Sequence[str]) -> dict[str, Any]:
    """The ``labels`` group's ``ome`` attribute: which label images the cube holds."""
    return {"version": NGFF_VERSION, "labels": list(present)}
