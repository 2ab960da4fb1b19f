"""What the discriminator may be shown besides (crop, true mask) and (crop, the generator's mask).

The paper's discriminator only ever sees the generator where it works, and learns to tell its soft masks
from hard true ones without checking them against the image. These give it wrong masks to catch
(:func:`corrupted_masks`, ``model.disc_corrupted``) and hard images on which the generator fails
(:func:`degraded_images`, ``model.disc_degraded``); docs/selection-study.md measures both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.layers import gaussian_1d, separable_filtering

__all__ = ["corrupted_masks", "degraded_images"]


def corrupted_masks(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Plausible wrong masks for the discriminator's fake side, one corruption per sample.

    Against the generator's fakes alone a discriminator can tell real from fake by softness (true masks are
    hard, sigmoids are not) without ever checking the mask against the image: the demo's scored an emptied
    mask on a slice full of droplets as real as the true one. Shown true masks made wrong in the ways a
    generator fails (shifted in-plane, grown, shrunk, emptied, or another sample's mask), it has to check the
    mask against the image: what ranking slices for volunteers needs. Returns the masks (B, K, D, H, W) and
    the slices they made wrong (B, D): an empty slice emptied or shrunk is still a true mask and must not be
    called fake.
    (Labelling only the changed patches fake instead taught the demo's discriminator that empty masks look
    real: most unchanged patches are empty.)
    """
    out = []
    for b in range(target.shape[0]):
        mask, kind = target[b : b + 1], int(torch.randint(5, ()))
        if kind == 0:
            shift = torch.randint(4, 13, (2,)) * (torch.randint(0, 2, (2,)) * 2 - 1)  # 4-12 px, either way
            mask = torch.roll(mask, shifts=tuple(shift.tolist()), dims=(-2, -1))
        elif kind == 1:
            mask = F.max_pool3d(mask, (1, 5, 5), stride=1, padding=(0, 2, 2))
        elif kind == 2:
            mask = -F.max_pool3d(-mask, (1, 5, 5), stride=1, padding=(0, 2, 2))
        elif kind == 3:
            mask = torch.zeros_like(mask)
        else:
            mask = target[(b + 1) % target.shape[0]][None].flip(-1)
        out.append(mask)
    wrong = torch.cat(out)
    return wrong, (wrong - target).abs().amax(dim=(1, 3, 4)) > 0.5


def degraded_images(image: torch.Tensor) -> torch.Tensor:
    """The crops made harder to read, the ways another microscope, scanner or survey does: in-plane
    blur, flatter and weaker contrast, uneven illumination and more noise, each sample its own strength,
    then each channel stretched back to 0..1 between its 1st and 99th percentiles as
    :func:`~tcupgan.data.transforms.normalise` does a cube.

    Why: the discriminator only ever judges the generator where it works (the training domain), so its
    verdict says little where the generator fails: on crops of the demo's domain-shifted fatchecker cubes
    the generator's Dice was 0.00 and the verdict on its masks the same as on normal crops (Dice 0.68-0.73).
    On degraded crops the generator misses and blurs objects (Dice about 0.19 with these ranges), and
    (degraded crop, its mask) against (degraded crop, true mask) shows the discriminator what a wrong mask
    on a hard image looks like; the image is the same on both sides, so it cannot win by how familiar the
    image looks. Milder ranges (the generator's Dice about 0.5) changed nothing (docs/selection-study.md).
    """
    b = image.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return torch.empty(b, 1, 1, 1, 1, device=image.device).uniform_(lo, hi)

    out = []
    for sample, sigma in zip(image, uniform(0.5, 2.5).flatten(), strict=True):
        kernel = gaussian_1d(sigma, truncated=3.0, normalize=True).to(image)
        unit = torch.ones(1, dtype=image.dtype, device=image.device)  # no blur across slices
        out.append(separable_filtering(sample[None], [unit, kernel, kernel], mode="reflect"))
    x = torch.cat(out).clamp(0, 1) ** uniform(0.3, 1.0)  # gamma < 1 flattens the bright objects' contrast
    mean = x.mean(dim=(1, 2, 3, 4), keepdim=True)
    x = mean + (x - mean) * uniform(0.3, 1.0)
    field = F.interpolate(torch.rand(b, 1, 2, 3, 3, device=image.device) * 2 - 1, size=x.shape[2:],
                          mode="trilinear", align_corners=True)  # fmt: skip
    x = x * (1 + uniform(0.0, 0.4) * field)
    x = x + torch.randn_like(x) * uniform(0.05, 0.3)
    values = x.flatten(2)[..., :: max(1, x[0, 0].numel() // 100_000)]  # torch.quantile's size limit
    lo, hi = torch.quantile(values, torch.tensor([0.01, 0.99]).to(x), dim=2)[..., None, None, None]
    return (x - lo) / (hi - lo).clamp_min(1e-6)
