"""Peak memory of ``predict`` on a large cube vs a small one, same model and window.

Each prediction runs in a fresh process that reports its own peak RSS; an idle process that only imports
tcupgan and loads the model is the baseline that both include. Target: the 1 x 64 x 1024 x 1024 cube
costs < 1.5x the peak of the 1 x 64 x 256 x 256 one (16x the voxels). Prints one JSON object.

    python -m tools.bench.predict_memory           # 64 x 1024^2 vs 64 x 256^2 (a few minutes on 2 cores)
    python -m tools.bench.predict_memory --tiny    # seconds; what the test suite runs
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tcupgan.data import CubeStore, make_scene
from tools.bench.common import bench_cli, save_checkpoint

_CHILD = """
import resource, sys
from tcupgan.inference import predict_store, load_model
ckpt, store, cube, d, h, w = sys.argv[1:7]
if cube == "-":
    load_model(ckpt)
else:
    predict_store(ckpt, store, cubes=[cube], roi=(int(d), int(h), int(w)))
try:  # this process's own peak: ru_maxrss would include the parent's memory from before exec
    print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")))  # KiB
except OSError:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
"""


def peak_rss_mb(ckpt: Path, store: Path, cube: str, roi: tuple[int, int, int]) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(ckpt), str(store), cube, *map(str, roi)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def run(small: tuple[int, int, int], large: tuple[int, int, int], roi: tuple[int, int, int]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = CubeStore.create(tmp / "s.zarr", task="binary", channel_names=["em"], class_names=["fg"])
        tile, label, _, _ = make_scene("fatchecker", 0, 0, shape=small)
        store.write_cube("small", tile, label)
        reps = (1, 1, large[1] // small[1], large[2] // small[2])
        store.write_cube("large", np.tile(tile, reps), np.tile(label, reps[1:]))
        del tile, label
        ckpt = save_checkpoint(tmp / "model.ckpt", (8, 16))
        idle = peak_rss_mb(ckpt, tmp / "s.zarr", "-", roi)
        small_mb = peak_rss_mb(ckpt, tmp / "s.zarr", "small", roi)
        large_mb = peak_rss_mb(ckpt, tmp / "s.zarr", "large", roi)
    return {
        "benchmark": "predict_memory",
        "baseline": "peak RSS of predict on the small cube (same model, same window)",
        "small_cube": [1, *small],
        "large_cube": [1, *large],
        "roi": list(roi),
        "idle_process_mb": round(idle, 1),
        "small_peak_mb": round(small_mb, 1),
        "large_peak_mb": round(large_mb, 1),
        "ratio": round(large_mb / small_mb, 2),
        "ratio_above_idle": round((large_mb - idle) / max(small_mb - idle, 1e-6), 2),
        "voxel_ratio": round(np.prod(large) / np.prod(small), 1),
        "target": "ratio < 1.5",
    }


def rows(s: dict) -> list[tuple]:
    """This benchmark's row of docs/benchmarks.md: (what, tcupgan, baseline, ratio)."""
    return [(f"`predict` peak memory, {s['voxel_ratio']}x the voxels", f"{s['large_peak_mb']} MB",
             f"{s['small_peak_mb']} MB", f"**{s['ratio']}x** (lower is better)")]  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    def go(args: argparse.Namespace) -> dict:
        if args.tiny:
            return run((8, 32, 32), (8, 64, 64), (8, 32, 32))
        return run((64, 256, 256), (64, 1024, 1024), (32, 128, 128))

    return bench_cli(__doc__, argv, go)


if __name__ == "__main__":
    main()
