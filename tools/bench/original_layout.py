"""The original TCuP-GAN generator's layout, re-implemented from its description for speed baselines.

ramanakumars/TCuPGAN's ``LSTMUNet`` (``tcupgan/model.py``, ``lstm_layers.py``) places its work so:

* **encoder level i**: a ConvLSTM (one 3 x 3 convolution over ``cat([x_t, h])`` per slice, no bias) at
  the level's input resolution; its hidden sequence is max-pooled in-plane before the next level, and its
  last cell state goes through a 1 x 1 convolution (to the width of the decoder level it will seed) and
  the same pooling;
* **decoder level i**: a ConvLSTM at the *coarse* resolution, its cell state seeded by the matching
  encoder cell state, its input the previous decoder output concatenated with the matching (pooled)
  encoder output; its hidden sequence is then upsampled by a (1, 2, 2) transposed convolution with
  instance norm and LeakyReLU(0.2), its cell state by a 2 x 2 transposed convolution (the last level's
  width is the number of output channels);
* a (1, 3, 3) convolution head (then a sigmoid, left out here: these are logits).

So no ConvLSTM runs at full resolution except the first encoder level: tcupgan's generator runs a decoder
ConvLSTM on the concatenated skip at every level's own resolution, which is where its extra FLOPs are.
Tensors are (B, C, D, H, W) as in tcupgan. Used by ``tools/bench/model_speed.py`` only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class _Cell(nn.Module):
    """ConvLSTM over depth: per slice, gates = conv(cat([x_t, h])) (the original's cell, no bias)."""

    def __init__(self, in_channels: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.conv = nn.Conv2d(in_channels + hidden, 4 * hidden, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, d, h, w = x.shape
        hx = x.new_zeros(b, self.hidden, h, w)
        c = x.new_zeros(b, self.hidden, h, w) if c is None else c
        out = []
        for t in range(d):
            i, f, o, g = self.conv(torch.cat([x[:, :, t], hx], 1)).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            hx = torch.sigmoid(o) * torch.tanh(c)
            out.append(hx)
        return torch.stack(out, 2), c


class _Down(nn.Module):
    def __init__(self, in_channels: int, hidden: int, seed_width: int) -> None:
        super().__init__()
        self.cell = _Cell(in_channels, hidden)
        self.seed = nn.Sequential(nn.Conv2d(hidden, seed_width, 1, bias=False), nn.MaxPool2d(2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seq, c = self.cell(x, None)
        return nn.functional.max_pool3d(seq, (1, 2, 2)), self.seed(c)


class _Up(nn.Module):
    def __init__(self, in_channels: int, hidden: int) -> None:
        super().__init__()
        self.cell = _Cell(in_channels, hidden)
        self.up_seq = nn.Sequential(nn.ConvTranspose3d(hidden, hidden, (1, 2, 2), stride=(1, 2, 2)),
                                    nn.InstanceNorm3d(hidden), nn.LeakyReLU(0.2))  # fmt: skip
        self.up_cell = nn.Sequential(nn.ConvTranspose2d(hidden, hidden, 2, stride=2),
                                     nn.InstanceNorm2d(hidden), nn.LeakyReLU(0.2))  # fmt: skip

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seq, c = self.cell(x, c)
        return self.up_seq(seq), self.up_cell(c)


class OriginalLayoutUNet(nn.Module):
    """The original's LSTM U-Net layout at ``widths`` (the paper's 16, 32, 48, 64, 128)."""

    def __init__(
        self, in_channels: int, out_channels: int, widths: Sequence[int] = (16, 32, 48, 64, 128)
    ) -> None:
        super().__init__()
        widths = list(widths)
        decoder = [*widths[::-1][1:], out_channels]  # decoder level widths, coarse to fine
        seeds = decoder[::-1]  # encoder level i seeds the decoder level of width seeds[i]
        ins = [in_channels, *widths[:-1]]
        self.down = nn.ModuleList(_Down(ins[i], widths[i], seeds[i]) for i in range(len(widths)))
        skip = widths[::-1]  # the encoder output a decoder level takes beside the previous one
        self.up = nn.ModuleList(
            _Up(widths[-1] if i == 0 else decoder[i - 1] + skip[i], decoder[i]) for i in range(len(decoder))
        )
        self.head = nn.Conv3d(out_channels, out_channels, (1, 3, 3), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs, cells = [], []
        for level in self.down:
            x, c = level(x)
            outputs.append(x)
            cells.append(c)
        outputs, cells = outputs[::-1], cells[::-1]
        for i, level in enumerate(self.up):
            x, _ = level(x if i == 0 else torch.cat([x, outputs[i]], 1), cells[i])
        return self.head(x)
