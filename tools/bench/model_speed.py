"""Generator speed: TCuP-GAN against the original code's layout and MONAI's BasicUNet/SegResNet.

Baselines, all on the same input in the same run:
  * ``original_layout``: the original TCuP-GAN's LSTM U-Net (ramanakumars/TCuPGAN ``LSTMUNet``),
    re-implemented from its description in ``tools/bench/original_layout.py``, at the same widths, float32
    (and ``original_layout_bf16``, the baseline for what precision alone buys);
  * ``tcupgan``: this project's generator in its default ConvLSTM mode for the device, float32 and bf16
    (``tcupgan predict --precision bf16``); ``tcupgan_per_step`` / ``tcupgan_batched`` name both modes
    (one convolution over cat([x_t, h]) per slice; or the input projection of all slices in one call);
  * MONAI ``BasicUNet`` and ``SegResNet`` at a similar parameter count (float32).
Measures inference throughput (voxels/s), forward+backward throughput (float32 models), peak memory
(CUDA) and, on CPU, the achieved GFLOP/s against the machine's measured float32 peak (the faster of a
matmul and the same product as a convolution). Prints one JSON object.

    python -m tools.bench.model_speed              # BraTS widths, 4 -> 3 channels, 1 x 32 x 128 x 128
    python -m tools.bench.model_speed --tiny       # seconds; what the test suite runs
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time
from collections.abc import Callable

import torch
from monai.networks.nets import BasicUNet, SegResNet
from torch.utils.flop_counter import FlopCounterMode

from tcupgan.models import ConvLSTM, TCuPGenerator
from tools.bench.common import bench_cli
from tools.bench.original_layout import OriginalLayoutUNet


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_seconds(fns: dict[str, Callable[[], object]], device: torch.device, repeats: int) -> dict:
    """Median seconds per call of each function, timed in interleaved rounds.

    Timing one model after another let drift (the allocator warming up, clock changes, other load) fall
    on whichever ran first: the same network measured 1.54 s first and 1.33 s interleaved. Rounds that
    call every model once spread it evenly.
    """
    for fn in fns.values():
        fn()  # warm-up (allocations, cuDNN autotune)
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def fp32_product_gflops(device: torch.device, n: int = 1024) -> dict[str, float]:
    """GFLOP/s of one n x n x n float32 product, as a matmul (MKL on CPUs) and as a channels-last 1 x 1
    convolution (oneDNN, which the networks' convolutions use). The machine's peak is the faster: on AMD
    CPUs MKL's matmul reaches about half of oneDNN's (201 against 408 GFLOP/s on 2 EPYC cores), so a
    matmul-only peak would credit every network with twice its real share."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    image = a.reshape(1, n, 32, n // 32).contiguous(memory_format=torch.channels_last)
    weight = b.reshape(n, n, 1, 1)
    seconds = median_seconds(
        {"matmul": lambda: a @ b, "conv_1x1": lambda: torch.nn.functional.conv2d(image, weight)}, device, 10
    )
    return {name: round(2 * n**3 / s / 1e9, 1) for name, s in seconds.items()}


def measure(models: dict[str, torch.nn.Module], x: torch.Tensor, repeats: int) -> dict:
    """Inference throughput of every model and forward+backward throughput of the float32 ones."""
    device = x.device
    voxels = x.shape[0] * x.shape[2] * x.shape[3] * x.shape[4]
    inputs = {name: x.to(next(m.parameters()).dtype) for name, m in models.items()}
    results = {}
    for model in models.values():  # outside inference mode, or CUDA copies of the weights could not train
        model.to(device)
    with torch.inference_mode():
        for name, model in models.items():
            model.eval()
            with FlopCounterMode(display=False) as counter:
                model(inputs[name])
            results[name] = {
                "dtype": str(inputs[name].dtype).removeprefix("torch."),
                "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
                "gflop_per_cube": round(counter.get_total_flops() / 1e9, 2),
            }
        calls = {name: (lambda m=m, i=inputs[name]: m(i)) for name, m in models.items()}
        for name, seconds in median_seconds(calls, device, repeats).items():
            flops = results[name]["gflop_per_cube"] * 1e9
            results[name].update(
                infer_s=round(seconds, 4),
                infer_voxels_per_s=round(voxels / seconds),
                infer_gflops=round(flops / seconds / 1e9, 1),
            )

    def step(model: torch.nn.Module, inp: torch.Tensor) -> None:
        model.zero_grad(set_to_none=True)
        model(inp).mean().backward()

    # training is float32 (or autocast): pure-bf16 training is not offered
    trainable = {name: m.train() for name, m in models.items() if inputs[name].dtype == torch.float32}
    steps = {name: (lambda m=m, i=inputs[name]: step(m, i)) for name, m in trainable.items()}
    for name, seconds in median_seconds(steps, device, repeats).items():
        results[name]["train_voxels_per_s"] = round(voxels / seconds)
    if device.type == "cuda":  # one peak over the whole run: the largest model's
        results["peak_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return results


def _models(c_in: int, c_out: int, widths: tuple[int, ...], default: str, dev: torch.device) -> dict:
    """The networks compared: the original layout, tcupgan in both ConvLSTM modes (and bf16, and on GPUs
    with eager gates), MONAI's two at similar parameter counts."""
    original = OriginalLayoutUNet(c_in, c_out, widths)
    reference = TCuPGenerator(c_in, c_out, widths=widths)
    models = {"original_layout": original, "original_layout_bf16": copy.deepcopy(original).to(torch.bfloat16)}
    for mode, batched in (("per_step", False), ("batched", True)):
        net = TCuPGenerator(c_in, c_out, widths=widths, batched_input=batched)
        net.load_state_dict(reference.state_dict())
        models[f"tcupgan_{mode}"] = net
        if mode == default:
            models["tcupgan_bf16"] = copy.deepcopy(net).to(torch.bfloat16)
    if dev.type == "cuda":  # the gate arithmetic fused into one kernel per step is the GPU default
        eager = copy.deepcopy(models["tcupgan_batched"])
        for module in eager.modules():
            if isinstance(module, ConvLSTM):
                module.fuse_gates = False
        models["tcupgan_eager_gates"] = eager
    models["monai_basicunet"] = BasicUNet(3, c_in, c_out, features=(16, 32, 64, 128, 128, 16))
    models["monai_segresnet"] = SegResNet(3, init_filters=8, in_channels=c_in, out_channels=c_out)
    return models


def run(shape: tuple[int, ...], widths: tuple[int, ...], repeats: int, device: str) -> dict:
    dev = torch.device(device)
    torch.manual_seed(0)
    c_in, c_out = shape[1], 3
    x = torch.randn(*shape, device=dev)
    default = "batched" if dev.type == "cuda" else "per_step"
    models = _models(c_in, c_out, widths, default, dev)
    results = measure(models, x, repeats)
    peak_mem = results.pop("peak_mem_mb", None)
    results["tcupgan"] = results[f"tcupgan_{default}"]

    def ratio(a: str, b: str, key: str = "infer_voxels_per_s") -> float:
        return round(results[a][key] / results[b][key], 2)

    ratios = {
        "tcupgan_vs_original_layout_infer": ratio("tcupgan", "original_layout"),
        "tcupgan_vs_original_layout_train": ratio("tcupgan", "original_layout", "train_voxels_per_s"),
        "tcupgan_bf16_vs_original_layout_infer": ratio("tcupgan_bf16", "original_layout"),
        "tcupgan_bf16_vs_original_layout_bf16_infer": ratio("tcupgan_bf16", "original_layout_bf16"),
        "tcupgan_flops_vs_original_layout": ratio("tcupgan", "original_layout", "gflop_per_cube"),
        "batched_vs_per_step_infer": ratio("tcupgan_batched", "tcupgan_per_step"),
        **({"fused_vs_eager_gates_infer": ratio("tcupgan", "tcupgan_eager_gates"),
            "fused_vs_eager_gates_train": ratio("tcupgan", "tcupgan_eager_gates", "train_voxels_per_s")}
           if "tcupgan_eager_gates" in results else {}),
        **{f"{net}_vs_original_layout_infer": ratio(net, "original_layout") for net in ("monai_basicunet",
                                                                                         "monai_segresnet")},
    }  # fmt: skip
    out = {
        "benchmark": "model_speed",
        "baseline": "original_layout: the original TCuP-GAN's LSTM U-Net layout, same widths, float32",
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "input_shape": list(shape),
        "widths": list(widths),
        "repeats": repeats,
        "default_convlstm_mode": default,
        "models": results,
        "ratios": ratios,
        "target": "tcupgan >= 1x the original layout's inference voxels/s, >= 0.8 of the fp32 peak",
    }
    if peak_mem is not None:
        out["peak_mem_mb"] = peak_mem
    if dev.type == "cpu":
        out["cpu_fp32_product_gflops"] = products = fp32_product_gflops(dev)
        out["cpu_fp32_peak_gflops"] = peak = max(products.values())
        out["tcupgan_fraction_of_peak"] = round(results["tcupgan"]["infer_gflops"] / peak, 2)
        out["original_layout_fraction_of_peak"] = round(results["original_layout"]["infer_gflops"] / peak, 2)
    return out


def rows(s: dict) -> list[tuple]:
    """This benchmark's rows of docs/benchmarks.md: (what, tcupgan, baseline, ratio)."""
    r, m = s["ratios"], s["models"]
    flops = f"{m['tcupgan']['gflop_per_cube']} vs {m['original_layout']['gflop_per_cube']} GFLOP per cube"
    bf16 = r["tcupgan_bf16_vs_original_layout_bf16_infer"]
    return [
        (f"generator inference, float32 ({s['default_convlstm_mode']} mode)", flops,
         "original layout float32", f"**{r['tcupgan_vs_original_layout_infer']}x**"),
        ("generator inference, bf16 weights and activations", "", "original layout float32",
         f"**{r['tcupgan_bf16_vs_original_layout_infer']}x** ({bf16}x vs the original layout in bf16)"),
        ("generator training step (forward and backward)", "", "original layout",
         f"{r['tcupgan_vs_original_layout_train']}x"),
        ("ConvLSTM input projections batched vs per step", "", "tcupgan per step",
         f"{r['batched_vs_per_step_infer']}x"),
        *((f"{net} inference (for scale)", "", "original layout", f"{r[f'{net}_vs_original_layout_infer']}x")
          for net in ("monai_basicunet", "monai_segresnet")),
        *([("generator inference, share of the CPU's float32 peak (target 0.8)",
            f"{s['tcupgan_fraction_of_peak']} of {s['cpu_fp32_peak_gflops']} GFLOP/s",
            f"original layout {s['original_layout_fraction_of_peak']}", "")]
          if "cpu_fp32_peak_gflops" in s else []),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
        parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median)")

    def go(args: argparse.Namespace) -> dict:
        if args.tiny:
            return run((1, 4, 16, 32, 32), (4, 8, 16), 1, args.device)
        return run((1, 4, 32, 128, 128), (16, 32, 48, 64, 128), args.repeats, args.device)

    return bench_cli(__doc__, argv, go, options)


if __name__ == "__main__":
    main()
