"""The TCuP-GAN generator: a U-Net whose every level is a ConvLSTM walking the slices of a cube.

Pooling and upsampling act in-plane only, so depth is preserved end to end. Decoder cell states are
seeded from the matching encoder level's last cell state, which carries what the encoder saw across the
whole cube into the decoder. That seed has seen every slice, so the paper's network is *not* causal over
depth even with unidirectional ConvLSTMs (the reference describes it as such; it is not). With
``seed_decoder=False`` and ``bidirectional=False`` slice t of the output depends on slices <= t only.
The head returns logits: the loss and inference apply the sigmoid (channels are independent labels
such as the nested BraTS regions, not a softmax).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tcupgan.models.convlstm import ConvLSTM

__all__ = ["TCuPGenerator", "SliceNorm"]


class SliceNorm(nn.Module):
    """Normalisation applied to each slice separately, (B, C, D, H, W) in and out.

    ``instance`` is InstanceNorm2d per slice: unlike the original's InstanceNorm3d it keeps the network
    causal over depth (3D statistics let later slices change earlier ones) and treats a 2D image (D = 1)
    and a cube alike. ``batch`` is BatchNorm3d; ``none`` is the identity.
    """

    def __init__(self, channels: int, kind: str = "instance") -> None:
        super().__init__()
        if kind not in ("instance", "batch", "none"):
            raise ValueError(f"norm must be 'instance', 'batch' or 'none', got {kind!r}")
        self.kind = kind
        if kind == "instance":
            self.norm = nn.InstanceNorm2d(channels, affine=True)
        elif kind == "batch":
            self.norm = nn.BatchNorm3d(channels)
        else:
            self.norm = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind != "instance":
            return self.norm(x)
        # (B, C, D, H, W) viewed as (B, C * D, H, W): one instance per (channel, slice), no transposed
        # copy. float32 weights also for a bf16 network: then PyTorch keeps the statistics in float32
        # (bf16's 8-bit mantissa loses small variances) without a float32 copy of the activations
        b, c, d, h, w = x.shape
        norm = self.norm
        y = F.instance_norm(
            x.reshape(b, c * d, h, w),
            weight=norm.weight.float().repeat_interleave(d),
            bias=norm.bias.float().repeat_interleave(d),
            eps=norm.eps,
        )
        return y.view(b, c, d, h, w)


def pool_in_plane(x: torch.Tensor) -> torch.Tensor:
    """2 x 2 max pooling of every slice of (B, C, D, H, W), H and W even.

    Without gradients it is the maximum of the four strided views, which on CPUs runs 3-7x faster than
    ``max_pool3d`` (whose forward also finds the indices its backward needs); with gradients
    ``max_pool3d``, whose backward is the faster one. Same numbers either way.
    """
    if torch.is_grad_enabled():
        return F.max_pool3d(x, (1, 2, 2))
    corners = x.unflatten(-1, (-1, 2)).unflatten(-3, (-1, 2))  # (..., H/2, 2, W/2, 2)
    top = torch.maximum(corners[..., 0, :, 0], corners[..., 0, :, 1])
    return torch.maximum(top, torch.maximum(corners[..., 1, :, 0], corners[..., 1, :, 1]))


class _Up(nn.Module):
    """In-plane x2 upsampling: ConvTranspose3d (1, 2, 2) → norm → LeakyReLU(0.2), as in the paper."""

    def __init__(self, in_channels: int, out_channels: int, norm: str) -> None:
        super().__init__()
        self.up = nn.ConvTranspose3d(in_channels, out_channels, (1, 2, 2), stride=(1, 2, 2))
        self.norm = SliceNorm(out_channels, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.norm(self.up(x)), 0.2)


class _LevelConv(nn.Module):
    """Per-slice (1, 3, 3) convolution → norm → LeakyReLU(0.2): a U-Net's second convolution per level."""

    def __init__(self, channels: int, norm: str) -> None:
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, (1, 3, 3), padding=(0, 1, 1))
        self.norm = SliceNorm(channels, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.norm(self.conv(x)), 0.2)


class TCuPGenerator(nn.Module):
    """TCuP-GAN generator (LSTM U-Net) for (B, C, D, H, W) cubes; D = 1 for 2D images.

    Args:
        in_channels: input channels (1 for EM, 4 for BraTS, 3 for RGB).
        out_channels: output label channels (1 binary, 3 for BraTS ET/TC/WT, K multilabel).
        widths: ConvLSTM hidden channels per level, shallow to deep; the last is the bottleneck.
            The paper's (16, 32, 48, 64, 128) gives ~2.4 M parameters for BraTS.
        kernel_size: ConvLSTM in-plane kernel.
        bidirectional: walk the slices both ways at every level (off in the paper).
        dropout: dropout after each encoder level (0 disables).
        norm: ``instance`` (per slice), ``batch`` or ``none`` in the upsampling blocks.
        batched_input: ConvLSTM input projections for all slices at once (True), per step (False) or
            by device (None); a speed choice only, the numbers are the same.
        seed_decoder: start decoder cell states from the encoder's last cell states (the paper). Off
            makes a unidirectional network strictly causal over depth.
        level_conv: after every ConvLSTM level, a per-slice 3 x 3 convolution → norm → LeakyReLU(0.2)
            (not in the paper). Where crops are single sections (serial-section EM) the hidden
            convolution never runs and a level is one convolution with a gated activation; the second
            convolution, as every U-Net level has, learns more per step for about 13% more arithmetic
            (studies/real-em). Off is the paper's network.
        skip_merge: how a decoder level takes the encoder's output at its resolution: ``add``
            (``up(x) + skip``, w channels, as LinkNet does) or ``concatenate`` (the paper: its ConvLSTM
            reads 2w channels). Adding does a third less arithmetic on single sections and a fifth less
            on cubes, and in the same training time learned as much (studies/real-em).

    Planes whose size is not a multiple of ``2 ** (len(widths) - 1)`` are zero-padded on the way in and
    cropped on the way out.

    Example:
        >>> net = TCuPGenerator(in_channels=4, out_channels=3)
        >>> logits = net(torch.randn(1, 4, 16, 96, 96))   # (1, 3, 16, 96, 96)
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        *,
        widths: Sequence[int] = (16, 32, 48, 64, 128),
        kernel_size: int = 3,
        bidirectional: bool = False,
        dropout: float = 0.0,
        norm: str = "instance",
        batched_input: bool | None = None,
        seed_decoder: bool = True,
        level_conv: bool = True,
        skip_merge: str = "add",
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2 or min(widths) < 1:
            raise ValueError(f"widths needs at least two positive levels, got {widths}")
        SliceNorm(1, norm)  # validates the name before anything is built
        if skip_merge not in ("concatenate", "add"):
            raise ValueError(f"skip_merge must be 'concatenate' or 'add', got {skip_merge!r}")
        self.skip_merge = skip_merge
        self.in_channels, self.out_channels, self.widths = in_channels, out_channels, widths
        self.divisor = 2 ** (len(widths) - 1)
        lstm = {"kernel_size": kernel_size, "bidirectional": bidirectional, "batched_input": batched_input}
        self.encoders = nn.ModuleList(
            ConvLSTM(c_in, c_out, **lstm)
            for c_in, c_out in zip((in_channels, *widths[:-1]), widths, strict=True)
        )
        self.seed_decoder = seed_decoder
        self.cell_seeds = nn.ModuleList(nn.Conv2d(w, w, 1) for w in widths[:-1]) if seed_decoder else None
        self.ups = nn.ModuleList(
            _Up(deep, w, norm) for deep, w in zip(widths[:0:-1], widths[-2::-1], strict=True)
        )
        skip_inputs = 2 if skip_merge == "concatenate" else 1  # decoder input channels per width
        self.decoders = nn.ModuleList(ConvLSTM(skip_inputs * w, w, **lstm) for w in widths[-2::-1])
        self.encoder_convs, self.decoder_convs = (
            nn.ModuleList(_LevelConv(w, norm) if level_conv else nn.Identity() for w in level_widths)
            for level_widths in (widths, widths[-2::-1])
        )
        self.dropout = nn.Dropout3d(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Conv3d(widths[0], out_channels, (1, 3, 3), padding=(0, 1, 1))
        self._init_weights()

    def _init_weights(self) -> None:
        """Kaiming for the (LeakyReLU) up- and level convolutions, Xavier for the head, small cell
        seeds; ConvLSTMs init themselves.

        The original defined an init function but never applied it; this one runs in the constructor.
        """
        for module in self.modules():
            if isinstance(module, (nn.ConvTranspose3d, nn.Conv3d)) and module is not self.head:
                nn.init.kaiming_normal_(module.weight, a=0.2, nonlinearity="leaky_relu")
                nn.init.zeros_(module.bias)
        for seed in self.cell_seeds or []:
            nn.init.xavier_uniform_(seed.weight, gain=0.5)
            nn.init.zeros_(seed.bias)
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def merge_skip(self, upsampled: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """A decoder level's input: the upsampled deeper level and the encoder's skip, by ``skip_merge``."""
        if self.skip_merge == "concatenate":
            return torch.cat([upsampled, skip], dim=1)
        return upsampled + skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, D, H, W) float → logits (B, out_channels, D, H, W)."""
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected (B, {self.in_channels}, D, H, W), got {tuple(x.shape)}; "
                "a 2D image batch (B, C, H, W) needs x.unsqueeze(2)"
            )
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.divisor, (-w) % self.divisor
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        skips, seeds = [], []
        for level, (encoder, conv) in enumerate(zip(self.encoders, self.encoder_convs, strict=True)):
            x, (_, c) = encoder(x)
            x = conv(x)
            if level < len(self.encoders) - 1:
                skips.append(x)
                seeds.append(self.cell_seeds[level](c) if self.seed_decoder else None)
                x = pool_in_plane(self.dropout(x))
        levels = zip(self.ups, self.decoders, self.decoder_convs, skips[::-1], seeds[::-1], strict=True)
        for up, decoder, conv, skip, seed in levels:
            x, _ = decoder(self.merge_skip(up(x), skip), (None, seed))
            x = conv(x)
        logits = self.head(x)
        return logits[..., :h, :w]
