"""Generator speed: TCuP-GAN vs the original per-step ConvLSTM and MONAI's BasicUNet/SegResNet.

Baselines, all on the same input in the same run:
  * ``original``: the same network and weights computing each ConvLSTM step the original way
    (one convolution over cat([x_t, h]) per slice, :mod:`tcupgan.models.reference`);
  * ``batched`` / ``per_step``: tcupgan's ConvLSTM with the input projection batched over all slices or
    computed per step (the default picks per device);
  * MONAI ``BasicUNet`` and ``SegResNet`` at a similar parameter count.
Measures inference throughput (voxels/s), forward+backward throughput, peak memory (CUDA) and, on CPU,
the achieved GFLOP/s against a measured matmul peak. Prints one JSON object.

    python -m tools.bench.model_speed              # BraTS widths, 4 -> 3 channels, 1 x 32 x 128 x 128
    python -m tools.bench.model_speed --tiny       # seconds; what the test suite runs
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from monai.networks.nets import BasicUNet, SegResNet
from torch.utils.flop_counter import FlopCounterMode

from tcupgan.models import TCuPGenerator
from tcupgan.models.reference import as_original
from tools.bench.common import bench_cli


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up (allocations, cuDNN autotune)
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeats


def matmul_peak_gflops(device: torch.device, n: int = 1024) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    seconds = _time(lambda: a @ b, device, 10)
    return 2 * n**3 / seconds / 1e9


def measure(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> dict:
    device = x.device
    voxels = x.shape[0] * x.shape[2] * x.shape[3] * x.shape[4]
    model = model.to(device)
    model.eval()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            model(x)
        infer = _time(lambda: model(x), device, repeats)
    model.train()

    def step():
        model.zero_grad(set_to_none=True)
        model(x).float().mean().backward()

    train = _time(step, device, max(1, repeats // 2))
    out = {
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        "infer_s": round(infer, 4),
        "infer_voxels_per_s": round(voxels / infer),
        "gflop_per_cube": round(counter.get_total_flops() / 1e9, 2),
        "infer_gflops": round(counter.get_total_flops() / infer / 1e9, 1),
        "train_voxels_per_s": round(voxels / train),
    }
    if device.type == "cuda":
        out["peak_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def run(shape: tuple[int, ...], widths: tuple[int, ...], repeats: int, device: str) -> dict:
    dev = torch.device(device)
    torch.manual_seed(0)
    c_in, c_out = shape[1], 3
    x = torch.randn(*shape, device=dev)
    reference = TCuPGenerator(c_in, c_out, widths=widths)
    models = {}
    for name, batched in (("batched", True), ("per_step", False)):
        net = TCuPGenerator(c_in, c_out, widths=widths, batched_input=batched)
        net.load_state_dict(reference.state_dict())
        models[name] = net
    models["original"] = as_original(TCuPGenerator(c_in, c_out, widths=widths))
    models["monai_basicunet"] = BasicUNet(3, c_in, c_out, features=(16, 32, 64, 128, 128, 16))
    models["monai_segresnet"] = SegResNet(3, init_filters=8, in_channels=c_in, out_channels=c_out)
    results = {name: measure(m, x, repeats) for name, m in models.items()}
    default = "batched" if dev.type == "cuda" else "per_step"
    base = results["original"]["infer_voxels_per_s"]
    ratios = {
        f"{name}_vs_original_infer": round(r["infer_voxels_per_s"] / base, 2) for name, r in results.items()
    }
    ratios["default_vs_original_train"] = round(
        results[default]["train_voxels_per_s"] / results["original"]["train_voxels_per_s"], 2
    )
    out = {
        "benchmark": "model_speed",
        "baseline": "original per-step ConvLSTM (same widths and weights)",
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "input_shape": list(shape),
        "widths": list(widths),
        "default_convlstm_mode": default,
        "models": results,
        "ratios": ratios,
        "target": "default >= 2x original inference throughput",
    }
    if dev.type == "cpu":
        peak = matmul_peak_gflops(dev)
        out["cpu_matmul_peak_gflops"] = round(peak, 1)
        out["default_fraction_of_peak"] = round(results[default]["infer_gflops"] / peak, 2)
    return out


def main(argv: list[str] | None = None) -> dict:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
        parser.add_argument("--repeats", type=int, default=3)

    def go(args: argparse.Namespace) -> dict:
        if args.tiny:
            return run((1, 4, 16, 32, 32), (4, 8, 16), 1, args.device)
        return run((1, 4, 32, 128, 128), (16, 32, 48, 64, 128), args.repeats, args.device)

    return bench_cli(__doc__, argv, go, options)


if __name__ == "__main__":
    main()
