"""Throughput of ``predict`` (cubes/s, voxels/s) vs MONAI sliding-window inference with SegResNet.

Baseline: what a MONAI user would run — ``sliding_window_inference`` with the same window and overlap
and Gaussian blending over each whole cube (loaded into memory), with MONAI's ``SegResNet``. tcupgan's
number includes everything ``predict`` does: reading from the store block by block, the discriminator's
slice scores, entropy and writing four arrays. ``--precision 32`` and ``bf16`` are both timed (``auto``,
the default, is one of them: bf16 on GPUs and CPUs with bf16 arithmetic), with how far bf16's
probabilities and labels land from float32's. Prints one JSON object.

    python -m tools.bench.predict_speed            # 4 cubes of 1 x 32 x 128 x 128, demo widths
    python -m tools.bench.predict_speed --tiny     # seconds; what the test suite runs
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import tempfile
import time
from pathlib import Path

import torch
from monai.inferers import sliding_window_inference
from monai.networks.nets import SegResNet

from tcupgan.data import CubeStore, synthesize
from tcupgan.data.transforms import normalise
from tcupgan.inference import predict_store
from tcupgan.inference.predict import resolve_precision
from tools.bench.common import bench_cli, save_checkpoint


def _timed_predict(ckpt: Path, store: Path, roi: tuple[int, int, int], device: str, precision: str) -> float:
    """Seconds of a second ``predict`` of every cube: the first warms up (allocations, cuDNN autotuning
    and, on a GPU, compiling the CUDA graphs, which later runs load from the cache)."""
    predict_store(ckpt, store, roi=roi, device=device, precision=precision, overwrite=True)
    start = time.perf_counter()
    predict_store(ckpt, store, roi=roi, device=device, precision=precision, overwrite=True)
    return time.perf_counter() - start


def _monai_seconds(store: CubeStore, roi: tuple[int, int, int], device: str) -> float:
    """MONAI's sliding window with SegResNet over every cube (read, normalised, predicted, copied back),
    after one warm-up cube; on a GPU under autocast, as MONAI's bundles run inference."""
    net = SegResNet(3, init_filters=8, in_channels=1, out_channels=1).to(device).eval()
    autocast = torch.autocast("cuda", torch.float16) if device == "cuda" else contextlib.nullcontext()

    def infer(name: str) -> None:
        x = torch.from_numpy(normalise(store[name].image[...], store[name].attrs))[None].to(device)
        sliding_window_inference(x, roi, 4, net, overlap=0.25, mode="gaussian").cpu()

    with torch.no_grad(), autocast:
        infer(store.names()[0])
        start = time.perf_counter()
        for name in store.names():
            infer(name)
    return time.perf_counter() - start


def run(n: int, shape: tuple[int, int, int], roi: tuple[int, int, int], widths: tuple[int, ...]) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize("fatchecker", tmp / "s.zarr", n=n, shape=shape)
        ckpt = save_checkpoint(tmp / "m.ckpt", widths)
        ours = _timed_predict(ckpt, tmp / "s.zarr", roi, device, "32")
        store = CubeStore(tmp / "s.zarr")
        float32 = {name: store[name]["probability"][...].astype(int) for name in store.names()}
        ours_bf16 = _timed_predict(ckpt, tmp / "s.zarr", roi, device, "bf16")
        prob_diff = max(int(abs(store[n]["probability"][...] - p).max()) for n, p in float32.items())
        same_label = sum(
            int(((store[n]["probability"][...] > 127) == (p > 127)).sum()) for n, p in float32.items()
        )
        monai = _monai_seconds(store, roi, device)
    voxels = n * shape[0] * shape[1] * shape[2]
    return {
        "benchmark": "predict_speed",
        "baseline": "MONAI sliding_window_inference + SegResNet(init_filters=8), same cubes/window/overlap "
        "(float16 autocast on GPUs), each timed after a warm-up",
        "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
        "default_precision": resolve_precision("auto", torch.device(device)),
        "cubes": n,
        "cube_shape": [1, *shape],
        "roi": list(roi),
        "tcupgan_widths": list(widths),
        "tcupgan_cubes_per_s": round(n / ours, 3),
        "tcupgan_voxels_per_s": round(voxels / ours),
        "monai_cubes_per_s": round(n / monai, 3),
        "monai_voxels_per_s": round(voxels / monai),
        "ratio": round(monai / ours, 2),
        "tcupgan_bf16_cubes_per_s": round(n / ours_bf16, 3),
        "bf16_ratio": round(monai / ours_bf16, 2),
        "bf16_vs_float32": round(ours / ours_bf16, 2),
        "bf16_max_probability_diff_255ths": prob_diff,
        "bf16_label_agreement": round(same_label / voxels, 5),
    }


def rows(s: dict) -> list[tuple]:
    """This benchmark's rows of docs/benchmarks.md: (what, tcupgan, baseline, ratio)."""
    bf16_here, default = s.get("default_precision") == "bf16", " (the default here)"
    return [
        (f"`predict --precision 32`{'' if bf16_here else default} vs MONAI sliding window + SegResNet",
         f"{s['tcupgan_cubes_per_s']} cubes/s", f"{s['monai_cubes_per_s']} cubes/s", f"**{s['ratio']}x**"),
        (f"`predict --precision bf16`{default if bf16_here else ''} vs the same MONAI run (float32)",
         f"{s['tcupgan_bf16_cubes_per_s']} cubes/s ({s['bf16_vs_float32']}x our float32; "
         f"{s['bf16_label_agreement']:.2%} same labels)", f"{s['monai_cubes_per_s']} cubes/s",
         f"**{s['bf16_ratio']}x**"),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    def go(args: argparse.Namespace) -> dict:
        if args.tiny:
            return run(1, (8, 32, 32), (8, 32, 32), (4, 8))
        return run(4, (32, 128, 128), (32, 64, 64), (8, 16, 32, 64))

    return bench_cli(__doc__, argv, go)


if __name__ == "__main__":
    main()
