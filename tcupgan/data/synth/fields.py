"""Random fields and shapes that the synthetic scene generators are built from."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["smooth_noise", "illumination", "ellipsoid", "grid", "blur", "normalise", "toward"]


def toward(normal: float, shifted: float, shift: float) -> float:
    """A scene parameter ``shift`` of the way from its normal to its shifted value.

    Exact at 0 and 1, so the plain and the fully shifted families stay as they were; in between, a
    milder domain shift (one a model can still learn from a few corrections)."""
    if shift == 0:
        return normal
    if shift == 1:
        return shifted
    return normal + (shifted - normal) * shift


def smooth_noise(
    rng: np.random.Generator, shape: Sequence[int], sigma: float | Sequence[float]
) -> np.ndarray:
    """White noise low-passed by a Gaussian, rescaled to zero mean and unit spread (float32)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    return ((field - field.mean()) / (field.std() + 1e-8)).astype(np.float32)


def illumination(rng: np.random.Generator, shape: Sequence[int], strength: float) -> np.ndarray:
    """A slowly varying multiplicative field around 1 (uneven illumination, MRI bias field)."""
    coarse = [max(2, s // 16) for s in shape]
    field = ndimage.zoom(
        rng.standard_normal(coarse).astype(np.float32),
        [s / c for s, c in zip(shape, coarse, strict=True)],
        order=3,
    )
    field = field[tuple(slice(0, s) for s in shape)]
    field = ndimage.gaussian_filter(field, [s / 8 for s in shape])
    field = (field - field.mean()) / (field.std() + 1e-8)
    return (1.0 + strength * field).astype(np.float32)


def grid(shape: Sequence[int]) -> list[np.ndarray]:
    """Open coordinate grids (cheap broadcasting) for an array of ``shape``."""
    return list(np.ogrid[tuple(slice(0, s) for s in shape)])


def ellipsoid(
    shape: Sequence[int],
    center: Sequence[float],
    radii: Sequence[float],
    angle: float = 0.0,
    scale: Sequence[float] | None = None,
) -> np.ndarray:
    """Normalised radius field of an ellipsoid (< 1 inside), rotated by ``angle`` in the last two axes.

    Returning the field rather than a mask lets callers draw rims (0.8 < r < 1) and soft edges.
    """
    coords = grid(shape)
    scale = scale or [1.0] * len(shape)
    rel = [(c - m) * s for c, m, s in zip(coords, center, scale, strict=True)]
    if len(shape) >= 2 and angle:
        y, x = rel[-2], rel[-1]
        ca, sa = np.cos(angle), np.sin(angle)
        rel[-2], rel[-1] = ca * y + sa * x, -sa * y + ca * x
    return np.sqrt(sum((r / rad) ** 2 for r, rad in zip(rel, radii, strict=True))).astype(np.float32)


def blur(image: np.ndarray, sigma: float | Sequence[float]) -> np.ndarray:
    """Gaussian blur (the optics' point-spread function)."""
    return ndimage.gaussian_filter(image, sigma).astype(np.float32)


def normalise(image: np.ndarray, lo: float = 1.0, hi: float = 99.0) -> np.ndarray:
    """Map the lo..hi percentiles to 0..1 (values outside are kept, not clipped)."""
    a, b = np.percentile(image, [lo, hi])
    return ((image - a) / max(b - a, 1e-6)).astype(np.float32)
