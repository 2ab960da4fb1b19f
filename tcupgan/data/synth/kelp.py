"""Multi-band coastal satellite tiles with kelp beds (the Floating Forests task).

Bands: red, green, blue, near-infrared (NIR). Land on one side of an irregular coastline is bright in
NIR; open water is dark in NIR; kelp canopy floats near the coast (within a band of the shoreline) and
raises NIR and green above the water around it — the signal a model must learn. Clouds hide what lies
beneath (hidden kelp is not labelled: volunteers cannot see it either). The ``shift`` variant changes
sun angle (band gains), adds haze and noise, and makes kelp beds smaller and fainter.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from tcupgan.data.synth.fields import grid, smooth_noise, toward

DEFAULT_SHAPE = (1, 128, 128)
#                    red   green blue  nir
_WATER = np.array([0.06, 0.09, 0.16, 0.03])
_LAND = np.array([0.25, 0.30, 0.20, 0.55])
_KELP = np.array([0.07, 0.14, 0.12, 0.22])


def generate(rng: np.random.Generator, *, shift: float = 0.0, shape: Sequence[int] = DEFAULT_SHAPE):
    """One tile: image (4, 1, H, W) float32 reflectances, label (1, H, W) uint8 (1 = kelp)."""
    _, h, w = shape
    yy, xx = grid((h, w))
    angle = rng.uniform(0, 2 * np.pi)
    coord = (xx - w / 2) * np.cos(angle) + (yy - h / 2) * np.sin(angle)
    shore = coord + 0.12 * h * smooth_noise(rng, (h, w), h / 6) + rng.uniform(-0.2, 0.2) * h
    land = shore > 0
    dist_to_land = ndimage.distance_transform_edt(~land)

    near = (dist_to_land > 1) & (dist_to_land < toward(0.18, 0.12, shift) * h)
    beds = smooth_noise(rng, (h, w), toward(3.5, 2.5, shift)) > toward(0.6, 1.0, shift)
    kelp = near & beds & ~land
    density = np.clip(ndimage.gaussian_filter(kelp.astype(np.float32), 1.0) * 1.6, 0, 1)
    strength = toward(1.0, 0.6, shift)

    bands = np.empty((4, h, w), np.float32)
    texture = smooth_noise(rng, (h, w), 1.5)
    for b in range(4):
        value = np.where(land, _LAND[b] * (1 + 0.15 * texture), _WATER[b] * (1 + 0.05 * texture))
        value = value + density * strength * (_KELP[b] - _WATER[b])
        bands[b] = value

    cloud = np.clip(smooth_noise(rng, (h, w), h / 10) * 0.9 - rng.uniform(0.6, 1.6), 0, 1)
    bands = bands * (1 - cloud) + 0.8 * cloud
    gain = rng.uniform(toward(0.92, 0.7, shift), toward(1.08, 1.3, shift), 4)
    haze = toward(0.0, 0.06, shift)
    bands = bands * gain[:, None, None] + haze
    bands += rng.normal(0, toward(0.006, 0.012, shift), bands.shape)
    label = (kelp & (cloud < 0.5)).astype(np.uint8)
    return bands[:, None].astype(np.float32), label[None], {}
