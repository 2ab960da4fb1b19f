"""Electron-microscopy-like liver tissue with lipid droplets (the Etch A Cell - Fat Checker task).

The scene: grainy cytoplasm, cell membranes (Voronoi walls), dark mitochondria as distractors, and lipid
droplets — ellipsoids of varied size, elongated across slices, with a dark rim and a smooth interior
brighter than the cytoplasm by a varied margin. The label is the droplets' interior. The ``shift``
variant changes what a model trained on the plain family relies on: weaker droplet contrast, more blur
and noise, stronger uneven illumination and smaller droplets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

from tcupgan.data.synth.fields import blur, ellipsoid, grid, illumination, smooth_noise, toward

DEFAULT_SHAPE = (32, 128, 128)


def _membranes(rng: np.random.Generator, shape: Sequence[int], n_cells: int) -> np.ndarray:
    """Distance to the nearest Voronoi wall between cells (thin walls where it is small)."""
    d, h, w = shape
    seeds = rng.uniform(0, 1, (n_cells, 3)) * np.array([d * 4.0, h, w])  # cells span ~all slices
    zz, yy, xx = np.meshgrid(np.arange(d) * 4.0, np.arange(h), np.arange(w), indexing="ij")
    pts = np.stack([zz.ravel(), yy.ravel(), xx.ravel()], axis=1)
    dist, _ = cKDTree(seeds).query(pts, k=2)
    return (dist[:, 1] - dist[:, 0]).reshape(shape).astype(np.float32)


def generate(rng: np.random.Generator, *, shift: float = 0.0, shape: Sequence[int] = DEFAULT_SHAPE):
    """One cube: image (1, D, H, W) float32 about 0..1, label (D, H, W) uint8 (1 = lipid droplet)."""
    d, h, w = shape
    image = (
        0.45 + 0.06 * smooth_noise(rng, shape, (0.6, 1.0, 1.0)) + 0.05 * smooth_noise(rng, shape, (1, 4, 4))
    )

    walls = _membranes(rng, shape, n_cells=max(4, h * w // 2500))
    image -= 0.22 * np.exp(-((walls / 1.2) ** 2))

    for _ in range(rng.integers(h * w // 1200, h * w // 600)):  # mitochondria: dark, elongated, unlabelled
        r = ellipsoid(
            shape,
            rng.uniform(0, 1, 3) * shape,
            (rng.uniform(1.5, 4), rng.uniform(2, 4), rng.uniform(5, 10)),
            angle=rng.uniform(0, np.pi),
        )
        image = np.where(r < 1, image - rng.uniform(0.12, 0.22) + 0.03 * smooth_noise(rng, shape, 1), image)

    label = np.zeros(shape, dtype=np.uint8)
    size = toward(1.0, 0.6, shift)
    contrast = (toward(0.14, 0.07, shift), toward(0.35, 0.16, shift))
    for _ in range(rng.integers(6, 14)):
        radius = rng.uniform(5, 16) * size
        radii = (
            radius * rng.uniform(0.5, 1.2) / 2,
            radius * rng.uniform(0.8, 1.2),
            radius * rng.uniform(0.8, 1.2),
        )
        center = (rng.uniform(0, d), rng.uniform(radius, h - radius), rng.uniform(radius, w - radius))
        r = ellipsoid(shape, center, radii, angle=rng.uniform(0, np.pi))
        inside = r < 1.0
        rim = (r >= 1.0) & (r < 1.0 + 1.6 / radius)
        level = image[inside].mean() + rng.uniform(*contrast) if inside.any() else 0
        image = np.where(inside, level + 0.02 * smooth_noise(rng, shape, 2), image)
        image = np.where(rim, image - rng.uniform(0.15, 0.3), image)
        label[inside] = 1

    image = blur(image, (0.3, toward(0.7, 1.4, shift), toward(0.7, 1.4, shift)))
    image *= illumination(rng, shape, toward(0.1, 0.25, shift))
    image += rng.normal(0, toward(0.035, 0.07, shift), shape).astype(np.float32)
    zz, yy, _ = grid(shape)  # a faint scan-line artefact, as in serial-block-face EM
    image += 0.01 * np.sin(yy * 0.9 + zz * 0.3).astype(np.float32)
    return image[None].astype(np.float32), label, {}
