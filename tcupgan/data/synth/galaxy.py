"""Galaxy cutouts with spiral arms and bars, and Galaxy Zoo 3D-style volunteer vote fractions.

An inclined disk with a bulge, ``m`` logarithmic spiral arms (varied number, pitch and winding) and,
in about half the galaxies, a bar of known length and angle from whose ends the arms start. Colours
follow stellar populations (red bulge and bar, blue arms); the sky adds noise, a PSF blur and field stars.
Ground truth: label bit flags (1 = spiral arm, 2 = bar), ``vote_fraction`` (2, 1, H, W) from fifteen
simulated volunteers who each draw the structures with jitter, fattening and occasional misses, and the
true ``bar_length_px``/``bar_angle_deg`` in the cube attributes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from tcupgan.data.synth.fields import blur, grid, toward

DEFAULT_SHAPE = (1, 128, 128)
N_VOLUNTEERS = 15


def _volunteer_drawings(rng: np.random.Generator, mask: np.ndarray, p_miss: float) -> np.ndarray:
    """Fraction of ``N_VOLUNTEERS`` noisy drawings of ``mask`` that cover each pixel."""
    votes = np.zeros(mask.shape, np.float32)
    if not mask.any():
        return votes
    for _ in range(N_VOLUNTEERS):
        if rng.random() < p_miss:
            continue
        drawn = ndimage.shift(mask.astype(np.float32), rng.normal(0, 1.0, 2), order=0) > 0.5
        grow = int(rng.integers(-1, 3))
        if grow > 0:
            drawn = ndimage.binary_dilation(drawn, iterations=grow)
        elif grow < 0:
            drawn = ndimage.binary_erosion(drawn)
        votes += drawn
    return votes / N_VOLUNTEERS


def _spiral_arms(rng: np.random.Generator, r: np.ndarray, theta: np.ndarray, *, r_in: float,
                 phase: float | None) -> tuple[np.ndarray, np.ndarray, int, float]:  # fmt: skip
    """Logarithmic spiral arms over the disk's polar grid: their light, their mask, how many there are and
    their pitch angle (radians); ``phase`` None draws one."""
    h = r.shape[0]
    scale = h / 128
    m = int(rng.choice([1, 2, 2, 2, 3, 4]))
    pitch = np.deg2rad(rng.uniform(12, 30))
    r_out = rng.uniform(0.36, 0.46) * h
    phase = rng.uniform(0, 2 * np.pi) if phase is None else phase
    arm_width = rng.uniform(0.28, 0.42)
    arms = np.zeros(r.shape, np.float32)
    for k in range(m):
        expected = np.log(r / r_in) / np.tan(pitch) + phase + 2 * np.pi * k / m
        delta = np.angle(np.exp(1j * (theta - expected)))  # wrapped angular offset from the arm
        arms = np.maximum(arms, np.exp(-((delta / arm_width) ** 2)))
    span = (r > r_in) & (r < r_out)
    taper = np.clip((r - r_in) / (4 * scale), 0, 1) * np.clip((r_out - r) / (6 * scale), 0, 1)
    arms = arms * taper * span
    return arms, (arms > 0.5) & span & (taper > 0.3), m, pitch


def generate(rng: np.random.Generator, *, shift: float = 0.0, shape: Sequence[int] = DEFAULT_SHAPE):
    """One galaxy: image (3, 1, H, W) float32, label (1, H, W) bit flags, attrs with the true bar."""
    _, h, w = shape
    yy, xx = grid((h, w))
    cy, cx = h / 2 + rng.normal(0, 1.5), w / 2 + rng.normal(0, 1.5)
    pa = rng.uniform(0, np.pi)  # disk position angle
    q = rng.uniform(0.55, 1.0)  # disk axis ratio (inclination)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(pa) + dy * np.sin(pa)
    v = (-dx * np.sin(pa) + dy * np.cos(pa)) / q
    r = np.hypot(u, v) + 1e-6
    theta = np.arctan2(v, u)
    scale = h / 128
    r_disk = rng.uniform(9, 14) * scale
    disk = np.exp(-r / r_disk)
    bulge = np.exp(-((r / (rng.uniform(2.0, 3.5) * scale)) ** 0.8))

    has_bar = rng.random() < 0.5
    bar_len = rng.uniform(18, 34) * scale if has_bar else 0.0
    bar_angle = rng.uniform(0, np.pi)
    bar_width = rng.uniform(3.0, 4.5) * scale
    bu = dx * np.cos(bar_angle) + dy * np.sin(bar_angle)
    bv = -dx * np.sin(bar_angle) + dy * np.cos(bar_angle)
    bar_mask = has_bar & (np.abs(bu) <= bar_len / 2) & (np.abs(bv) <= bar_width / 2)
    bar = np.exp(-((np.abs(bu) / (bar_len / 2 + 1e-6)) ** 6) - (bv / bar_width) ** 2) if has_bar else 0 * r

    phase = bar_angle - pa if has_bar else None  # barred arms start at the bar's ends
    arms, arm_mask, m, pitch = _spiral_arms(rng, r, theta, r_in=max(bar_len / 2, 6 * scale), phase=phase)

    red, blue = np.array([1.0, 0.75, 0.55]), np.array([0.55, 0.75, 1.0])
    light = (
        bulge[None] * red[:, None, None] * 1.2
        + disk[None] * 0.35
        + arms[None] * disk[None] ** 0.35 * blue[:, None, None] * 0.6
        + bar[None] * red[:, None, None] * 0.5
    )
    for _ in range(rng.integers(2, 7)):  # field stars
        sy, sx = rng.uniform(0, h), rng.uniform(0, w)
        light += rng.uniform(0.3, 1.5) * np.exp(-((yy - sy) ** 2 + (xx - sx) ** 2) / 1.5)[None]
    psf = rng.uniform(toward(0.7, 1.4, shift), toward(1.1, 2.2, shift))
    image = np.stack([blur(c, psf) for c in light])
    image += rng.normal(0, toward(0.02, 0.05, shift), image.shape)
    image = np.arcsinh(image / 0.1).astype(np.float32)  # the asinh stretch survey cutouts use

    label = (arm_mask.astype(np.uint8) | (bar_mask.astype(np.uint8) << 1))[None]
    votes = np.stack([_volunteer_drawings(rng, arm_mask, 0.1), _volunteer_drawings(rng, bar_mask, 0.25)])[
        :, None
    ]
    attrs = {
        "bar_length_px": float(bar_len),
        "bar_angle_deg": float(np.rad2deg(bar_angle) % 180),
        "n_arms": m,
        "pitch_deg": float(np.rad2deg(pitch)),
        "centre_yx": [float(cy), float(cx)],
    }
    return image[:, None], label, attrs, {"vote_fraction": votes.astype(np.float32)}
