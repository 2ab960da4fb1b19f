"""The original research code's ConvLSTM step, kept as a baseline for tests and benchmarks.

The original concatenates [x_t, h_{t-1}] and runs one convolution per slice, recomputing the input
projection inside the sequential loop. :func:`original_walk` does exactly that with the weights of a
:class:`~tcupgan.models.convlstm.ConvLSTM`, so the two can be compared number for number and speed for
speed; :func:`as_original` switches a whole generator to it.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

from tcupgan.models.convlstm import ConvLSTM

__all__ = ["original_walk", "as_original"]


def original_walk(self: ConvLSTM, x: torch.Tensor, state, direction: int, reverse: bool):
    """Per-step ConvLSTM over cat([x_t, h]) with one convolution, as the original code computes it."""
    b, _, d, h, w = x.shape
    in_conv, hid_conv = self.input_convs[direction], self.hidden_convs[direction]
    weight = torch.cat([in_conv.weight, hid_conv.weight], dim=1)
    if state is None:
        zeros = x.new_zeros(b, self.hidden_channels, h, w)
        state = (zeros, zeros)
    hx, cx = state
    outputs = [None] * d
    for t in range(d - 1, -1, -1) if reverse else range(d):
        gates = F.conv2d(torch.cat([x[:, :, t], hx], dim=1), weight, in_conv.bias, padding=in_conv.padding)
        i, f, o, g = gates.chunk(4, dim=1)
        cx = torch.sigmoid(f) * cx + torch.sigmoid(i) * torch.tanh(g)
        hx = torch.sigmoid(o) * torch.tanh(cx)
        outputs[t] = hx
    return torch.stack(outputs, dim=2), (hx, cx)


def as_original(model: nn.Module) -> nn.Module:
    """Make every ConvLSTM in ``model`` compute the original way (in place; weights unchanged)."""
    for module in model.modules():
        if isinstance(module, ConvLSTM):
            module._walk = types.MethodType(original_walk, module)
    return model
