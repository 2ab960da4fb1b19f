"""The PatchGAN discriminator: scores (image, mask) pairs patch by patch, hence slice by slice.

Its per-slice "realness" is what the volunteer loop ranks: a predicted mask that the discriminator finds
unlike the masks it saw with real labels marks a slice the generator has not generalised to.
"""

from __future__ import annotations

import torch
from torch import nn

from tcupgan.models.generator import SliceNorm

__all__ = ["PatchDiscriminator"]


class PatchDiscriminator(nn.Module):
    """PatchGAN over image ⊕ mask for (B, C, D, H, W) cubes.

    Args:
        image_channels: channels of the image.
        mask_channels: channels of the mask (the generator's ``out_channels``).
        width: filters of the first layer; doubled per layer up to ``8 * width``.
        n_layers: strided (1, 2, 2) conv blocks; each halves the plane.
        depth_kernel: 1 scores each slice alone (the paper's behaviour despite its "cubic" name);
            3 makes a truly cubic discriminator that sees neighbouring slices.
        dropout: dropout after each block (the paper: 0.25).
        norm: per-slice ``instance``, ``batch`` or ``none`` (the first block has none, as in PatchGAN).

    Example:
        >>> disc = PatchDiscriminator(1, 1)
        >>> disc.slice_scores(image, torch.sigmoid(logits))   # (B, D) in [0, 1]
    """

    def __init__(
        self,
        image_channels: int = 1,
        mask_channels: int = 1,
        *,
        width: int = 16,
        n_layers: int = 4,
        depth_kernel: int = 1,
        dropout: float = 0.25,
        norm: str = "instance",
    ) -> None:
        super().__init__()
        if depth_kernel % 2 != 1:
            raise ValueError(f"depth_kernel must be odd (1 or 3), got {depth_kernel}")
        if n_layers < 1:
            raise ValueError("n_layers must be at least 1")
        layers: list[nn.Module] = []
        c_in = image_channels + mask_channels
        for i in range(n_layers):
            c_out = width * min(2**i, 8)
            layers += [
                nn.Conv3d(
                    c_in, c_out, (depth_kernel, 3, 3), stride=(1, 2, 2), padding=(depth_kernel // 2, 1, 1)
                ),
                SliceNorm(c_out, norm if i > 0 else "none"),
                nn.LeakyReLU(0.2),
                nn.Dropout3d(dropout) if dropout > 0 else nn.Identity(),
            ]
            c_in = c_out
        layers.append(nn.Conv3d(c_in, 1, (depth_kernel, 3, 3), padding=(depth_kernel // 2, 1, 1)))
        self.net = nn.Sequential(*layers)
        self.image_channels, self.mask_channels = image_channels, mask_channels
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.normal_(m.weight, 0.0, 0.02)  # the DCGAN/PatchGAN initialisation
                nn.init.zeros_(m.bias)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """image (B, C, D, H, W), mask (B, K, D, H, W) in [0, 1] → patch logits (B, 1, D, h, w)."""
        return self.net(self._pair(image, mask))

    def image_responses(self, image: torch.Tensor) -> torch.Tensor:
        """The first convolution's responses (B, C, D, h, w) to the image alone (an empty mask).

        The one place where the discriminator still sees a slice's brightness, contrast, blur and noise:
        every later block normalises each slice's channels (``norm="instance"``, the default), and its
        verdict is about the mask. A new imaging domain lives in exactly those statistics, so novelty
        (:mod:`tcupgan.inference.novelty`) is measured here."""
        empty = image.new_zeros((image.shape[0], self.mask_channels, *image.shape[2:]))
        return self.net[0](self._pair(image, empty))

    def _pair(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if image.shape[1] != self.image_channels or mask.shape[1] != self.mask_channels:
            raise ValueError(
                f"expected image with {self.image_channels} and mask with {self.mask_channels} channels, "
                f"got {tuple(image.shape)} and {tuple(mask.shape)}"
            )
        return torch.cat([image, mask], dim=1)

    def slice_scores(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Realness per slice, (B, D) in [0, 1]: the mean patch probability of each slice."""
        return torch.sigmoid(self(image, mask)).mean(dim=(1, 3, 4))
