"""A convolutional LSTM that walks the depth axis of a cube: slices are its time steps.

The gates are ``conv(x_t) + conv(h_{t-1})``. Only the hidden part is sequential, so the input part can be
computed for every slice in one batched convolution (``batched_input=True``) instead of once per step.
Per step (``False``) is the original TCuP-GAN's computation, one convolution over ``cat([x_t, h])``.
Which is faster depends on the device: one large call wins where per-call overhead dominates (GPUs,
small planes, many slices); on a CPU the convolutions' arithmetic dominates and the single convolution
per step is fastest (``tools/bench/model_speed.py``: batched 0.6-0.9x of it on 2 cores). Both give the same
numbers (``tests/models/test_networks.py``), so the choice is a speed switch only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tcupgan.models.compiling import CompiledOrEager

__all__ = ["ConvLSTM"]

State = tuple[torch.Tensor | None, torch.Tensor | None]


class ConvLSTM(nn.Module):
    """ConvLSTM over depth for (B, C, D, H, W) tensors.

    Args:
        in_channels: channels of the input slices.
        hidden_channels: channels of the hidden and cell states (and of the output).
        kernel_size: in-plane kernel of both gate convolutions (odd; the paper uses 3).
        bidirectional: also walk the slices backwards and fuse both directions with a 1x1 convolution.
            Off in the paper: then slice t only sees slices <= t.
        batched_input: compute the input-to-gates convolution for all slices in one call (True), per
            step (False), or choose by device (None: batched on GPUs, per step on CPUs).
        fuse_gates: run each step's gate arithmetic as one compiled kernel (:data:`FUSED`), or
            choose by device (None: on GPUs, where a step's eight small element-wise kernels cost more in
            launches than in arithmetic; on 2 CPU cores it trained no faster). Same numbers either way.

    Example:
        >>> lstm = ConvLSTM(1, 16)
        >>> out, (h, c) = lstm(torch.randn(2, 1, 8, 32, 32))   # out: (2, 16, 8, 32, 32)
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        *,
        kernel_size: int = 3,
        bidirectional: bool = False,
        batched_input: bool | None = None,
        fuse_gates: bool | None = None,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd to keep the plane size, got {kernel_size}")
        self.hidden_channels = hidden_channels
        self.bidirectional = bidirectional
        self.batched_input = batched_input
        self.fuse_gates = fuse_gates
        directions = 2 if bidirectional else 1
        pad = kernel_size // 2
        self.input_convs = nn.ModuleList(
            nn.Conv2d(in_channels, 4 * hidden_channels, kernel_size, padding=pad, bias=True)
            for _ in range(directions)
        )
        self.hidden_convs = nn.ModuleList(
            nn.Conv2d(hidden_channels, 4 * hidden_channels, kernel_size, padding=pad, bias=False)
            for _ in range(directions)
        )
        self.fuse = nn.Conv3d(2 * hidden_channels, hidden_channels, 1) if bidirectional else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier gates and a forget-gate bias of 1, so early training remembers rather than forgets."""
        for conv in [*self.input_convs, *self.hidden_convs]:
            nn.init.xavier_uniform_(conv.weight)
        for conv in self.input_convs:
            nn.init.zeros_(conv.bias)
            conv.bias.data[self.hidden_channels : 2 * self.hidden_channels] = 1.0

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Run over the slices.

        Args:
            x: (B, C, D, H, W).
            state: initial (h, c), each (B, hidden, H, W) or None for zeros; None for both zeros. With
                ``bidirectional`` the same initial state starts both directions.

        Returns:
            output (B, hidden, D, H, W) and the forward direction's last (h, c).
        """
        forward_out, last = self._walk(x, state, 0, reverse=False)
        if not self.bidirectional:
            return forward_out, last
        backward_out, _ = self._walk(x, state, 1, reverse=True)
        return self.fuse(torch.cat([forward_out, backward_out], dim=1)), last

    def _walk(
        self, x: torch.Tensor, state: State | None, direction: int, reverse: bool
    ) -> tuple[torch.Tensor, State]:
        """One direction's walk. A zero hidden state (None) skips the hidden convolution: on the first
        slice of every walk it would only multiply zeros, which is all of it for single-slice crops."""
        d = x.shape[2]
        in_conv, hid_conv = self.input_convs[direction], self.hidden_convs[direction]
        hx, cx = state if state is not None else (None, None)
        batched = self.batched_input if self.batched_input is not None else x.device.type != "cpu"
        fused = self.fuse_gates if self.fuse_gates is not None else x.device.type == "cuda"
        # inside a compiled network inductor fuses the gates itself: a nested compile would break its graph
        if fused and not torch.compiler.is_compiling():
            cell = FUSED
        else:
            cell = lstm_cell if torch.is_grad_enabled() else lstm_cell_by_sigmoid
        if batched:
            x_gates = in_conv(x.transpose(1, 2).flatten(0, 1)).unflatten(0, (x.shape[0], d))
        else:  # one convolution over cat([x_t, h]): ~10% faster on a CPU than conv(x_t) + conv(h)
            weight = torch.cat([in_conv.weight, hid_conv.weight], dim=1)
        outputs = [None] * d
        for t in range(d - 1, -1, -1) if reverse else range(d):
            if batched:
                gates = x_gates[:, t] if hx is None else x_gates[:, t] + hid_conv(hx)
            elif hx is None:
                gates = in_conv(x[:, :, t])
            else:
                gates = F.conv2d(
                    torch.cat([x[:, :, t], hx], 1), weight, in_conv.bias, padding=in_conv.padding
                )
            hx, cx = cell(gates, cx)
            outputs[t] = hx
        return torch.stack(outputs, dim=2), (hx, cx)


def lstm_cell(gates: torch.Tensor, cx: torch.Tensor | None) -> State:
    """The gate arithmetic of one step: gates (B, 4*hidden, H, W) as (i, f, o, g), previous cell state or
    None for zeros → (h, c)."""
    i, f, o, g = gates.chunk(4, dim=1)
    new = torch.sigmoid(i) * torch.tanh(g)
    cx = new if cx is None else torch.sigmoid(f) * cx + new
    return torch.sigmoid(o) * torch.tanh(cx), cx


def lstm_cell_by_sigmoid(gates: torch.Tensor, cx: torch.Tensor | None) -> State:
    """:func:`lstm_cell` for float32 inference: one sigmoid over the i, f and o gates and tanh(x) as
    2 sigmoid(2x) - 1, because PyTorch's CPU tanh is several times slower than its sigmoid (the step runs
    2x faster on 2 cores). Same numbers within float32 rounding. Its backward is slower, so training
    keeps :func:`lstm_cell`, and so do other dtypes: bf16 spaces sigmoid's outputs near 1/2 by 2^-8,
    too coarse for the tanh of small values."""
    if gates.dtype != torch.float32:
        return lstm_cell(gates, cx)
    hidden = gates.shape[1] // 4
    i, f, o = torch.sigmoid(gates[:, : 3 * hidden]).chunk(3, dim=1)
    new = i * _tanh_by_sigmoid(gates[:, 3 * hidden :])
    cx = new if cx is None else torch.addcmul(new, f, cx)
    return o * _tanh_by_sigmoid(cx), cx


def _tanh_by_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x * 2).mul_(2).sub_(1)


# the gate arithmetic as one compiled kernel per step, forward and backward: four activations, two
# products and the cell update read the gates once instead of in eight passes over memory
FUSED = CompiledOrEager(lstm_cell, "fused ConvLSTM gates", dynamic=True)
