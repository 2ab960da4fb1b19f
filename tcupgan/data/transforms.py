"""Array transforms shared by training, validation and prediction, so a cube is prepared one way only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from monai.transforms import Compose, RandFlipd, RandGaussianNoised, RandScaleIntensityd, RandShiftIntensityd

from tcupgan.errors import StoreError

__all__ = [
    "normalise", "content_fraction", "label_to_target", "n_targets", "augmentations", "target_names",
]  # fmt: skip


def normalise(image: np.ndarray, attrs: Mapping[str, Any]) -> np.ndarray:
    """(C, ...) → float32 with each channel's 1st..99th percentile (from the cube's attrs) mapped to 0..1.

    A crop or slab is scaled by its whole cube's statistics, never its own, so a crop of background
    and a crop of tumour keep their real contrast.
    """
    stats = attrs.get("intensity")
    if stats is None:
        raise StoreError("cube has no intensity statistics; re-ingest it with this tcupgan version")
    shape = (-1,) + (1,) * (image.ndim - 1)
    lo = np.asarray(stats["p1"], np.float32).reshape(shape)
    hi = np.asarray(stats["p99"], np.float32).reshape(shape)
    return ((image - lo) / np.maximum(hi - lo, 1e-6)).astype(np.float32)


def content_fraction(cube: Any, level: float = 0.05) -> np.ndarray:
    """Per slice of a store cube, the share of pixels where some channel is above ``level`` of the cube's
    1–99% range.

    Background slices (outside a brain, empty sky) score ~0 and are not worth a volunteer's time. Read one
    chunk-deep slab at a time: each chunk is read once, memory stays a slab.
    """
    image, depth = cube.image, cube.shape[1]
    step = image.chunks[1]
    fractions = []
    for z in range(0, depth, step):
        slab = normalise(image[:, z : z + step], cube.attrs)
        fractions.extend((slab > level).any(axis=0).mean(axis=(1, 2)).tolist())
    return np.asarray(fractions)


def n_targets(task: str, class_names: Sequence[str]) -> int:
    """Output channels for a task: 1 binary, 3 BraTS regions, one per class for multilabel."""
    return {"binary": 1, "brats": 3}.get(task, len(class_names))


def target_names(task: str, class_names: Sequence[str]) -> list[str]:
    return ["ET", "TC", "WT"] if task == "brats" else list(class_names)[: n_targets(task, class_names)]


def label_to_target(label: np.ndarray, task: str, n_classes: int) -> np.ndarray:
    """uint8 label (D, H, W) → float32 sigmoid targets (K, D, H, W).

    BraTS 2023 values become the nested regions ET = {3}, TC = {1, 3}, WT = {1, 2, 3} (MONAI's
    ``ConvertToMultiChannelBasedOnBratsClasses`` assumes the pre-2023 ET = 4, so it is not used);
    multilabel bit flags become one channel per class.
    """
    if task == "binary":
        channels = [label == 1]
    elif task == "brats":
        channels = [label == 3, (label == 1) | (label == 3), label > 0]
    else:
        channels = [(label >> k) & 1 for k in range(n_classes)]
    return np.stack(channels).astype(np.float32)


def augmentations(noise_std: float = 0.05) -> Compose:
    """Random in-plane flips and intensity jitter on {"image", "target"} dicts of (C, D, H, W) arrays.

    Flips act on H and W only: depth is the ConvLSTM's direction of travel and stays in order.
    """
    keys = ["image", "target"]
    return Compose(
        [
            RandFlipd(keys, prob=0.5, spatial_axis=1),
            RandFlipd(keys, prob=0.5, spatial_axis=2),
            RandScaleIntensityd("image", factors=0.1, prob=0.5),
            RandShiftIntensityd("image", offsets=0.1, prob=0.5),
            RandGaussianNoised("image", prob=0.5, std=noise_std),
        ]
    )
