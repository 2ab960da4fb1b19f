"""Random slice and crop reads from the cube store vs the same volumes as .nii.gz (nibabel).

Baseline: what users do without tcupgan — keep BraTS-style gzipped NIfTI files and load them with
nibabel for every slice or crop they need (gzip has no random access, so each read decompresses the
file up to the data). Prints one JSON object with reads/s of both and the ratio.

    python -m tools.bench.store_io                 # 6 four-channel 155x240x240 cubes
    python -m tools.bench.store_io --tiny          # seconds; what the test suite runs
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from tcupgan.data import CubeStore, make_scene
from tools.bench.common import bench_cli


def _timed(fn, n: int) -> float:
    """Reads per second over ``n`` calls."""
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def write_both(tmp: Path, n_cubes: int, shape: tuple[int, int, int], seed: int) -> tuple[CubeStore, list]:
    """The same four-channel cubes as a store and as one .nii.gz per channel (BraTS's layout)."""
    store = CubeStore.create(
        tmp / "s.zarr", task="brats", channel_names=list("abcd"), class_names=list("xyz")
    )
    files = []
    small = (min(shape[0], 48), min(shape[1], 96), min(shape[2], 96))
    for i in range(n_cubes):
        image, _, _, _ = make_scene("brats", seed, i, shape=small)
        reps = [-(-s // t) for s, t in zip(shape, small, strict=True)]  # tile up to the wanted size
        image = np.tile(image, [1, *reps])[:, : shape[0], : shape[1], : shape[2]].round()
        store.write_cube(f"c{i}", image)
        paths = [tmp / f"c{i}_{c}.nii.gz" for c in range(4)]
        for channel, path in zip(image, paths, strict=True):
            nib.save(nib.Nifti1Image(channel.transpose(2, 1, 0).astype(np.int16), np.eye(4)), str(path))
        files.append(paths)
    return store, files


def run(n_cubes: int, shape: tuple[int, int, int], n_reads: int, crop: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store, files = write_both(tmp, n_cubes, shape, seed)
        d, h, w = shape
        picks = [(int(rng.integers(n_cubes)), int(rng.integers(d))) for _ in range(n_reads)]
        corners = [
            (int(rng.integers(n_cubes)), *(int(rng.integers(0, max(1, s - crop))) for s in (d, h, w)))
            for _ in range(n_reads)
        ]
        cubes = [store[f"c{i}"] for i in range(n_cubes)]

        def store_slice(i):
            cube, z = picks[i]
            return cubes[cube].image[:, z]

        def nifti_slice(i):
            cube, z = picks[i]
            return np.stack([np.asanyarray(nib.load(str(p)).dataobj[:, :, z]) for p in files[cube]])

        def store_crop(i):
            cube, z, y, x = corners[i]
            return cubes[cube].image[:, z : z + crop, y : y + crop, x : x + crop]

        def nifti_crop(i):
            cube, z, y, x = corners[i]
            return np.stack(
                [
                    np.asanyarray(nib.load(str(p)).dataobj[x : x + crop, y : y + crop, z : z + crop])
                    for p in files[cube]
                ]
            )

        np.testing.assert_array_equal(store_slice(0), nifti_slice(0).transpose(0, 2, 1))  # same data
        results = {
            "store_slice_per_s": _timed(store_slice, n_reads),
            "nifti_slice_per_s": _timed(nifti_slice, max(2, n_reads // 4)),
            "store_crop_per_s": _timed(store_crop, n_reads),
            "nifti_crop_per_s": _timed(nifti_crop, max(2, n_reads // 4)),
        }
        store_bytes = sum(p.stat().st_size for p in (tmp / "s.zarr").rglob("*") if p.is_file())
        nifti_bytes = sum(p.stat().st_size for paths in files for p in paths)
    return {
        "benchmark": "store_io",
        "baseline": "nibabel reading the same volumes from .nii.gz",
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "cubes": n_cubes,
        "cube_shape": [4, *shape],
        "crop": crop,
        **{k: round(v, 2) for k, v in results.items()},
        "slice_ratio": round(results["store_slice_per_s"] / results["nifti_slice_per_s"], 1),
        "crop_ratio": round(results["store_crop_per_s"] / results["nifti_crop_per_s"], 1),
        "store_mb": round(store_bytes / 2**20, 1),
        "nifti_gz_mb": round(nifti_bytes / 2**20, 1),
        "target": "slice_ratio >= 20",
    }


def rows(s: dict) -> list[tuple]:
    """This benchmark's rows of docs/benchmarks.md: (what, tcupgan, baseline, ratio)."""
    return [
        ("random slice reads (store vs nibabel .nii.gz)", f"{s['store_slice_per_s']}/s",
         f"{s['nifti_slice_per_s']}/s", f"**{s['slice_ratio']}x**"),
        ("random crop reads", f"{s['store_crop_per_s']}/s", f"{s['nifti_crop_per_s']}/s",
         f"{s['crop_ratio']}x"),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--cubes", type=int, default=6)
        parser.add_argument("--reads", type=int, default=200)

    def go(args: argparse.Namespace) -> dict:
        return run(2, (16, 48, 48), 8, 16) if args.tiny else run(args.cubes, (155, 240, 240), args.reads, 64)

    return bench_cli(__doc__, argv, go, options)


if __name__ == "__main__":
    main()
