"""Four-modality brain MRI with gliomas, labelled with BraTS 2023 values.

Tissues (white matter, grey matter, CSF in ventricles and sulci) inside an irregular brain outline;
one or two tumours, each nested: oedema (2) around an enhancing rim (3) around a necrotic core (1).
Each tissue has its own brightness per modality, as in real scans: the enhancing rim is bright on t1c,
oedema on t2f (FLAIR), CSF on t2w. Channel order is tcupgan's BraTS order (t1c, t1n, t2f, t2w).
The ``shift`` variant rescales contrasts per modality, blurs more, adds noise and a stronger bias field.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tcupgan.data.synth.fields import blur, ellipsoid, illumination, smooth_noise, toward

DEFAULT_SHAPE = (48, 96, 96)
#                       t1c   t1n   t2f   t2w
_CONTRAST = {
    "csf": (0.15, 0.15, 0.10, 1.00),
    "gm": (0.55, 0.55, 0.55, 0.50),
    "wm": (0.75, 0.75, 0.45, 0.35),
    "oedema": (0.50, 0.45, 0.95, 0.85),
    "necrosis": (0.20, 0.30, 0.60, 0.90),
    "enhancing": (1.00, 0.50, 0.70, 0.60),
}


def _blob(rng: np.random.Generator, shape: Sequence[int], center, radius: float, rough: float) -> np.ndarray:
    """Radius field of a roughly spherical blob with an irregular surface (< 1 inside)."""
    r = ellipsoid(
        shape, center, [radius * rng.uniform(0.8, 1.2) for _ in range(3)], angle=rng.uniform(0, np.pi)
    )
    return r * (1 + rough * smooth_noise(rng, shape, 4))


def generate(rng: np.random.Generator, *, shift: float = 0.0, shape: Sequence[int] = DEFAULT_SHAPE):
    """One case: image (4, D, H, W) float32, label (D, H, W) uint8 with values 0..3."""
    d, h, w = shape
    centre = np.array(shape) / 2
    brain_r = ellipsoid(shape, centre, (d * 0.45, h * 0.42, w * 0.36)) * (
        1 + 0.04 * smooth_noise(rng, shape, 6)
    )
    brain = brain_r < 1
    wm = brain_r < 0.75 + 0.1 * smooth_noise(rng, shape, 3)
    sulci = (brain_r > 0.8) & (smooth_noise(rng, shape, 1.5) > 1.3)
    ventricles = np.zeros(shape, bool)
    for side in (-1, 1):
        ventricles |= (
            ellipsoid(shape, centre + (0, -h * 0.05, side * w * 0.07), (d * 0.15, h * 0.15, w * 0.04)) < 1
        )
    label = np.zeros(shape, dtype=np.uint8)
    for _ in range(rng.integers(1, 3)):
        size = rng.uniform(0.08, 0.16) * h * toward(1.0, 0.7, shift)
        offset = rng.uniform(-0.22, 0.22, 3) * np.array(shape)
        c = centre + offset
        oedema = _blob(rng, shape, c, size * 1.8, 0.15) < 1
        core = _blob(rng, shape, c, size, 0.1)
        enhancing = core < 1
        necrosis = core < rng.uniform(0.4, 0.7)
        label[oedema & brain & (label == 0)] = 2
        label[enhancing & brain] = 3
        label[necrosis & brain] = 1

    image = np.zeros((4, *shape), np.float32)
    masks = {
        "gm": brain & ~wm,
        "wm": brain & wm,
        "csf": brain & (ventricles | sulci),
        "oedema": label == 2,
        "enhancing": label == 3,
        "necrosis": label == 1,
    }
    gain = rng.uniform(toward(0.9, 0.6, shift), toward(1.1, 1.4, shift), 4)
    for name, mask in masks.items():  # later tissues overwrite earlier ones
        for ch in range(4):
            image[ch][mask] = _CONTRAST[name][ch] * gain[ch]
    texture = 0.04 * smooth_noise(rng, (4, *shape), (0, 1, 2, 2))
    image = (image + texture) * brain
    image = np.stack([blur(ch, toward(0.6, 1.2, shift)) for ch in image])
    image *= illumination(rng, shape, toward(0.08, 0.25, shift))[None]
    image += rng.normal(0, toward(0.03, 0.06, shift), image.shape).astype(np.float32) * brain
    return (np.clip(image, 0, None) * 1000).astype(np.float32), label, {}
