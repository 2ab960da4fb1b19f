"""Generator training step time at the demo's and BraTS's crop sizes: eager gate arithmetic (how the
ConvLSTM ran when issue 45 was filed) against the fused gate kernel and the compiled generator.

One step is the generator's forward pass, a DiceCE loss, the backward pass and a NAdam step, in float32
and under bf16 autocast (``--trainer.precision bf16-mixed``, the GPU configs' choice). Variants:

* ``eager``: every ConvLSTM step's gate arithmetic as eight element-wise kernels (the baseline), at
  both precisions;
* ``fused``: one compiled kernel per step (:data:`tcupgan.models.convlstm.FUSED`, the GPU default), at
  both precisions;
* ``compiled``: the whole generator compiled in place (``--model.compile true``), on CUDA and in bf16
  only (each compilation takes minutes).

The first steps warm up (compilation, cuDNN autotuning); the median of the timed ones is reported. Prints
one JSON object with each variant's seconds per step and its ratio to ``eager`` at the same precision.

    python -m tools.bench.train_step               # on the GPU where there is one (tools/gpu_check.sh)
    python -m tools.bench.train_step --tiny        # small crops on the CPU, for the tests
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
from monai.losses import DiceCELoss

from tcupgan.models import ConvLSTM, TCuPGenerator
from tcupgan.training.plan import PAPER_WIDTHS
from tools.bench.common import bench_cli

# (name, channels in, classes, crop (D, H, W), batch): configs/demo.yaml; a BraTS crop as planned for a GPU
CROPS = (("demo", 1, 1, (16, 64, 64), 2), ("brats", 4, 3, (32, 128, 128), 2))
TINY_CROPS = (("tiny", 1, 1, (4, 32, 32), 2),)


def _generator(channels: int, classes: int, widths: tuple[int, ...], variant: str, device) -> torch.nn.Module:
    torch.manual_seed(0)
    net = TCuPGenerator(channels, classes, widths=widths).to(device)
    for module in net.modules():
        if isinstance(module, ConvLSTM):
            module.fuse_gates = variant != "eager"
    if variant == "compiled":
        net.compile()
    return net


def seconds_per_step(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool, steps: int) -> float:
    """Median seconds of ``steps`` timed training steps after three warm-up steps."""
    loss, optimiser = DiceCELoss(sigmoid=True, squared_pred=True), torch.optim.NAdam(net.parameters(), 1e-3)
    cuda = x.device.type == "cuda"
    times = []
    for step in range(steps + 3):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        autocast = torch.autocast(x.device.type, torch.bfloat16) if bf16 else contextlib.nullcontext()
        with autocast:
            value = loss(net(x).float(), y)
        optimiser.zero_grad(set_to_none=True)
        value.backward()
        optimiser.step()
        if cuda:
            torch.cuda.synchronize()
        if step >= 3:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(crops: tuple, widths: tuple[int, ...], device: str, steps: int) -> dict:
    dev = torch.device(device)
    variants = ("eager", "fused", "compiled") if dev.type == "cuda" else ("eager", "fused")
    results = {}
    for name, channels, classes, crop, batch in crops:
        x = torch.randn(batch, channels, *crop, device=dev)
        y = (torch.rand(batch, classes, *crop, device=dev) > 0.8).float()
        seconds = {
            f"{variant}_{precision}": round(seconds_per_step(
                _generator(channels, classes, widths, variant, dev), x, y, precision == "bf16", steps), 4)
            for variant in variants for precision in ("fp32", "bf16")
            if not (variant == "compiled" and precision == "fp32")  # compiling is minutes: bf16 only
        }  # fmt: skip
        ratios = {
            key: round(value / seconds[f"eager_{key.rsplit('_', 1)[1]}"], 2) for key, value in seconds.items()
        }
        results[name] = {"input": [batch, channels, *crop], "seconds_per_step": seconds,
                         "vs_eager_same_precision": ratios}  # fmt: skip
    return {
        "benchmark": "train_step",
        "baseline": "eager: the ConvLSTM's gate arithmetic as separate kernels, as when issue 45 was filed",
        "target": "<= 0.5x the eager step at the demo and BraTS crops on one GPU",
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "widths": list(widths),
        "crops": results,
    }


def main(argv: list[str] | None = None) -> dict:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
        parser.add_argument("--steps", type=int, default=10, help="timed steps after the warm-up (median)")

    def go(args: argparse.Namespace) -> dict:
        if args.tiny:
            return run(TINY_CROPS, (4, 8), "cpu", 1)
        return run(CROPS, PAPER_WIDTHS, args.device, args.steps)

    return bench_cli(__doc__, argv, go, options)


if __name__ == "__main__":
    main()
