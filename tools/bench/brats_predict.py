"""A whole BraTS-sized cube through ``predict``: seconds per cube, for the one-GPU target (< 1 s in bf16).

One synthetic BraTS case of 4 x 155 x 240 x 240, a TCuP-GAN at the paper's widths (16, 32, 48, 64, 128;
untrained weights: speed does not depend on them), ``predict_store`` with the whole cube as one window
(the ConvLSTM walks all 155 slices once; windows of fewer slices would walk overlaps twice), every slice
scorer included, as users run it: float32 and bf16 eager, and on CUDA bf16 as CUDA graphs (predict's
GPU default). The first run warms up (allocations, cuDNN autotuning, compiling); the median of the next
``--repeats`` is reported per variant, and the first run's time beside it.

    python -m tools.bench.brats_predict                  # on the GPU where there is one, else the CPU
    python -m tools.bench.brats_predict --tiny           # 4 x 8 x 48 x 48 on the CPU, for the tests
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from tcupgan.training.plan import PAPER_WIDTHS
from tools.bench.common import bench_cli


def run(shape: tuple[int, int, int], widths: tuple[int, ...], device: str, repeats: int) -> dict:
    from tcupgan.data import synthesize
    from tcupgan.inference import predict_store
    from tcupgan.training.module import TCuPGAN, write_checkpoint

    work = Path(tempfile.mkdtemp(prefix="tcupgan-brats-predict-"))
    synthesize("brats", work / "brats.zarr", n=1, shape=shape)
    model = TCuPGAN(in_channels=4, out_channels=3, task="brats", widths=widths, val_roi=list(shape))
    ckpt = write_checkpoint(model, work / "brats.ckpt")
    seconds = {}
    variants = [("32", False), ("bf16", False)] + ([("bf16", True)] if device == "cuda" else [])
    for precision, compiled in variants:
        times = []
        for _ in range(repeats + 1):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            predict_store(ckpt, work / "brats.zarr", device=device, precision=precision, compile=compiled,
                          overwrite=True)  # fmt: skip
            times.append(time.perf_counter() - start)
        seconds[precision + ("_cuda_graphs" if compiled else "")] = {
            "first_s": round(times[0], 2),
            "median_s": round(statistics.median(times[1:]), 3),
        }
    return {
        "benchmark": "brats_predict",
        "baseline": "the target: one BraTS case in under 1 s on one H100/H200 in bf16",
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "cube": [4, *shape],
        "widths": list(widths),
        "seconds_per_cube": seconds,
    }


def main(argv: list[str] | None = None) -> dict:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
        parser.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up (median)")

    def go(args: argparse.Namespace) -> dict:
        if args.tiny:
            return run((8, 48, 48), (4, 8), "cpu", 1)
        return run((155, 240, 240), PAPER_WIDTHS, args.device, args.repeats)

    return bench_cli(__doc__, argv, go, options)


if __name__ == "__main__":
    main()
