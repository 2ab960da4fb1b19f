"""Generator inference on a CPU: what each way of running the same weights costs and changes.

Times one ``TCuPGenerator`` (random weights, eval mode, no gradients) on one input, every variant in
interleaved rounds (``tools/bench/model_speed.median_seconds``), and prints one JSON line: seconds per call,
speed against eager float32 and the largest logit difference from it. Variants:

  * ``eager_fp32``: the product on CPUs without bf16 instructions (the reference); without gradients
    it pools by the maximum of strided views and runs the gates by sigmoid alone;
  * ``training_ops_fp32``: the same weights through the ops training uses (``max_pool3d``, tanh),
    what inference ran until the fourteenth session;
  * ``eager_bf16``: ``predict --precision bf16``, the product's default on CPUs with them;
  * ``fused_gates``: each step's gate arithmetic as one compiled kernel (``ConvLSTM(fuse_gates=True)``);
  * ``slices_channels_last``: the whole network on (D * B, C, H, W) channels-last slices, the layout
    oneDNN's 2D convolutions run fastest in (a prototype written here with the generator's weights);
  * ``compiled`` (``--compile``): the whole generator through ``torch.compile``; the first call compiles
    for minutes, its seconds are reported as ``compile_s``.

``--train`` times a training step instead (forward and backward of the mean logit), eager against the
channels-last slices, in float32 and under bf16 autocast (the plan's precision on CPUs with bf16).

    python studies/cpu-inference/variants.py --shape 4 1 32 64 64 --widths 8 16 32 64
    python studies/cpu-inference/variants.py --shape 1 4 32 128 128 --widths 16 32 48 64 128 --compile
    python studies/cpu-inference/variants.py --shape 8 1 1 256 256 --widths 16 32 48 64 128 --train
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tcupgan.allocator import reuse_freed_memory  # noqa: E402
from tcupgan.models import ConvLSTM, TCuPGenerator  # noqa: E402
from tcupgan.models import convlstm as convlstm_module  # noqa: E402
from tools.bench.model_speed import median_seconds  # noqa: E402


def _slice_norm(module, s: torch.Tensor) -> torch.Tensor:
    norm = module.norm  # instance norm per (slice, channel) = group norm with one channel per group
    return F.group_norm(s, s.shape[1], norm.weight, norm.bias, norm.eps)


def _walk(lstm: ConvLSTM, s: torch.Tensor, batch: int, seed: torch.Tensor | None):
    """One ConvLSTM direction over slices stored depth-major: rows t * batch ... (t + 1) * batch - 1."""
    in_conv, hid_conv = lstm.input_convs[0], lstm.hidden_convs[0]
    weight = torch.cat([in_conv.weight, hid_conv.weight], 1)
    hx, cx, outputs = None, seed, []
    for t in range(s.shape[0] // batch):
        x_t = s[t * batch : (t + 1) * batch]
        inputs, w = (x_t, in_conv.weight) if hx is None else (torch.cat([x_t, hx], 1), weight)
        hx, cx = convlstm_module.lstm_cell(F.conv2d(inputs, w, in_conv.bias, padding=in_conv.padding), cx)
        outputs.append(hx)
    return torch.cat(outputs, 0), cx


def slices_channels_last(net: TCuPGenerator, x: torch.Tensor) -> torch.Tensor:
    """The generator's forward on (D * B, C, H, W) channels-last slices (unidirectional, instance norm,
    level convolutions, planes divisible by its pooling: what this study runs)."""
    b, _, d, h, w = x.shape
    s = x.permute(2, 0, 1, 3, 4).reshape(d * b, -1, h, w).contiguous(memory_format=torch.channels_last)

    def level_conv(module, s):
        conv = module.conv
        return F.leaky_relu(
            _slice_norm(module.norm, F.conv2d(s, conv.weight[:, :, 0], conv.bias, padding=1)), 0.2
        )

    skips, seeds = [], []
    for level, (encoder, conv) in enumerate(zip(net.encoders, net.encoder_convs, strict=True)):
        s, c = _walk(encoder, s, b, None)
        s = level_conv(conv, s)
        if level < len(net.encoders) - 1:
            skips.append(s)
            seeds.append(net.cell_seeds[level](c))
            s = F.max_pool2d(s, 2)
    for up, decoder, conv, skip, seed in zip(net.ups, net.decoders, net.decoder_convs, skips[::-1],
                                             seeds[::-1], strict=True):  # fmt: skip
        upsampled = F.conv_transpose2d(s, up.up.weight[:, :, 0], up.up.bias, stride=2)
        upsampled = F.leaky_relu(_slice_norm(up.norm, upsampled), 0.2)
        s, _ = _walk(decoder, net.merge_skip(upsampled, skip), b, seed)
        s = level_conv(conv, s)
    logits = F.conv2d(s, net.head.weight[:, :, 0], net.head.bias, padding=1)
    return logits.view(d, b, -1, h, w).permute(1, 2, 0, 3, 4).contiguous()


def variants(net: TCuPGenerator, x: torch.Tensor, compile_too: bool) -> tuple[dict[str, Callable], dict]:
    """name → a call returning float32 logits (called without gradients); and extra facts (compile
    seconds)."""
    lstms = [m for m in net.modules() if isinstance(m, ConvLSTM)]
    net_bf16 = copy.deepcopy(net).bfloat16()
    frozen = copy.deepcopy(net).requires_grad_(False)

    def training_ops():
        with torch.enable_grad():  # nothing requires a gradient: no graph, but the training path's ops
            return frozen(x)

    def fused():
        for lstm in lstms:
            lstm.fuse_gates = True
        try:
            return net(x)
        finally:
            for lstm in lstms:
                lstm.fuse_gates = None

    calls = {
        "eager_fp32": lambda: net(x),
        "training_ops_fp32": training_ops,
        "eager_bf16": lambda: net_bf16(x.bfloat16()).float(),
        "fused_gates": fused,
        "slices_channels_last": lambda: slices_channels_last(net, x),
    }
    extra = {}
    if compile_too:
        compiled = torch.compile(net, dynamic=False)
        start = time.perf_counter()
        compiled(x)
        extra["compile_s"] = round(time.perf_counter() - start, 1)
        calls["compiled"] = lambda: compiled(x)
    return calls, extra


def training_steps(net: TCuPGenerator, x: torch.Tensor) -> dict[str, Callable]:
    """name → one forward and backward pass, eager or on channels-last slices, float32 or bf16 autocast."""

    def step(forward: Callable, bf16: bool) -> Callable:
        def call():
            with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                logits = forward(x)
            logits.float().mean().backward()

        return call

    steps = {
        f"{name}_{precision}": step(forward, precision == "bf16_autocast")
        for name, forward in (
            ("eager", net),
            ("slices_channels_last", lambda x: slices_channels_last(net, x)),
        )
        for precision in ("fp32", "bf16_autocast")
    }
    return steps


def timed(seconds: dict[str, float], reference: str, difference: dict[str, float] | None = None) -> dict:
    return {
        name: {"s": round(s, 4), f"vs_{reference}": round(seconds[reference] / s, 2)}
        | ({"max_logit_difference": float(f"{difference[name]:.2g}")} if difference else {})
        for name, s in seconds.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", type=int, nargs=5, default=[4, 1, 32, 64, 64], help="B C D H W")
    parser.add_argument("--widths", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--compile", action="store_true", help="also the whole generator compiled")
    parser.add_argument("--train", action="store_true", help="time training steps instead")
    args = parser.parse_args()
    reuse_freed_memory()  # as predict and training do
    torch.manual_seed(0)
    net = TCuPGenerator(args.shape[1], 1, widths=args.widths).eval()
    x = torch.randn(args.shape)
    result = {"shape": args.shape, "widths": args.widths, "threads": torch.get_num_threads()}
    if args.train:
        seconds = median_seconds(training_steps(net.train(), x), x.device, args.repeats)
        print(json.dumps(result | {"training_steps": timed(seconds, "eager_fp32")}))
        return
    with torch.no_grad():
        calls, extra = variants(net, x, args.compile)
        reference = calls["eager_fp32"]()
        difference = {name: float((call() - reference).abs().max()) for name, call in calls.items()}
        seconds = median_seconds(calls, x.device, args.repeats)
    print(json.dumps(result | extra | {"variants": timed(seconds, "eager_fp32", difference)}))


if __name__ == "__main__":
    main()
