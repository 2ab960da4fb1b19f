"""``tcupgan plan``: training and prediction settings from the data, as nnU-Net plans its own.

A store's *fingerprint* (how many cubes, their channels, median shape and spacing, how anisotropic they
are, how much of each class there is) and the machine's (CPU cores, GPU memory) decide what a user would
otherwise tune by hand:

* **crop shape**: in-plane as large as the voxel budget and the training cubes allow (a multiple of the
  U-Net's downsampling), and as deep as the same *physical* extent for near-isotropic data (an MRI gets
  as many slices as pixels across, at most 32), but single sections where sections are more than three
  times as far apart as pixels (serial-section EM: on the real EM sample, in the same 240 s, eight
  crops of 1 x 256 x 256 per step reached held-out Dice 0.36, four of 2 slices 0.33, two of 4 0.27,
  one of 8 0.12; studies/real-em/README.md); 1 for 2D images;
* **batch size**: at least two crops, as nnU-Net keeps, and as many as the voxel budget holds (the budget
  grows with GPU memory, or on a CPU with its cores), with planes of at most 256 px: more crops per step
  rather than larger ones;
* **network widths**: the paper's five levels, fewer where the crop is too small in-plane for them;
* **prediction window**: the crop's depth and as much of the plane as ``PREDICT_WINDOW_VOXELS`` (2^20)
  holds, at least twice the crop's plane, within the cubes: fewer, larger windows recompute less of the
  sliding window's overlap (on the real EM sample whole 1024 x 1024 sections instead of 512 x 512
  windows made ``predict`` 1.4-1.6x faster once warm, held-out Dice no lower; studies/cpu-inference);
* **epoch length**: enough crops to cover the labelled training voxels about once, 16 to 400;
* **normalisation**: each channel's 1st–99th percentile of its cube, as every step of tcupgan reads it;
* **precision**: bf16 autocast (``bf16-mixed``) when training on a CPU with bf16 arithmetic of its own
  (AVX512-BF16 or AMX): on the real EM crops a step took 1.4 s instead of 2.1 s and the same budget
  reached a higher held-out Dice; float32 elsewhere (CPUs without those instructions emulate bf16, and
  on an H200 it trained no faster).

The plan is a LightningCLI config the user can read and edit; ``tcupgan fit --plan PLAN.yaml`` reads it
before the user's own ``--config``, so whatever the config sets wins and the plan fills the rest.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tcupgan.data.store import CubeStore
from tcupgan.errors import InputError, StoreError

__all__ = [
    "Fingerprint",
    "Machine",
    "cpu_has_bf16",
    "fingerprint",
    "machine",
    "plan",
    "training_precision",
    "write_plan",
]

CPU_VOXELS_PER_CORE = 2**18  # 8 x 256 x 256 crops train at a few seconds a step on two cores
GPU_VOXELS_PER_GIB = 2**18
PAPER_WIDTHS = (16, 32, 48, 64, 128)
MIN_PLANE_AT_BOTTOM = 8  # pixels left in-plane at the U-Net's coarsest level
MIN_BATCH = 2
MAX_PLANE = 256  # in-plane crop: more crops per step rather than larger ones (they learnt more per step)
ANISOTROPIC, THIN_DEPTH = 3.0, 1  # sections over 3x farther apart than pixels: single-section crops
PREDICT_WINDOW_VOXELS = 2**20  # a 1024 x 1024 section, 16 x 256 x 256: predict's memory follows it


@dataclass(frozen=True)
class Fingerprint:
    """What a plan reads from a store (``tcupgan plan`` prints it)."""

    cubes: int
    labelled_train_cubes: int
    channels: int
    task: str
    median_shape: tuple[int, int, int]  # (D, H, W)
    smallest_shape: tuple[int, int, int]  # of every cube: bounds the prediction window
    smallest_train_shape: tuple[int, int, int]  # of the labelled train cubes: bounds the crops
    median_spacing: tuple[float, float, float]  # (z, y, x)
    foreground_fraction: tuple[float, ...]  # per label value > 0 (binary: one)
    train_voxels: int


@dataclass(frozen=True)
class Machine:
    cores: int
    gpu_memory_gib: float | None
    cpu_bf16: bool = False  # the CPU multiplies bf16 itself (AVX512-BF16, AMX) rather than emulating it


def fingerprint(store_path: str | Path, max_label_cubes: int = 8) -> Fingerprint:
    """The store's fingerprint, from cube attributes and a sample of the labels (a quarter of the pixels
    of at most ``max_label_cubes`` labelled train cubes); one clear line where nothing can be planned."""
    if not CubeStore.exists(store_path):
        raise StoreError(f"no cube store at '{store_path}'; ingest or synthesise one first")
    store = CubeStore(store_path)
    names = store.names()
    if not names:
        raise StoreError(f"store '{store.path}' holds no cubes; ingest some before planning")
    train = [n for n in store.names(split="train") if store[n].label is not None]
    if not train:
        raise StoreError(
            f"store '{store.path}' has no labelled cubes in split 'train': a plan is for training; "
            "ingest labels (--labels, --masks) or set splits (--split train)"
        )
    shape_of = {n: store[n].shape[1:] for n in names}  # each cube's metadata read once
    shapes, train_shapes = np.array(list(shape_of.values())), np.array([shape_of[n] for n in train])
    if int(shapes[:, 0].sum()) <= 1:
        raise StoreError(f"store '{store.path}' holds a single slice: nothing to train and validate on")
    spacing = np.array([store[n].attrs.get("spacing", [1.0, 1.0, 1.0]) for n in names], float)
    return Fingerprint(
        cubes=len(names),
        labelled_train_cubes=len(train),
        channels=len(store.channel_names),
        task=store.task,
        median_shape=tuple(int(v) for v in np.median(shapes, axis=0)),
        smallest_shape=tuple(int(v) for v in shapes.min(axis=0)),
        smallest_train_shape=tuple(int(v) for v in train_shapes.min(axis=0)),
        median_spacing=tuple(float(v) for v in np.median(spacing, axis=0)),
        foreground_fraction=_foreground(store, train[:max_label_cubes]),
        train_voxels=int(train_shapes.prod(axis=1).sum()),
    )


def _foreground(store: CubeStore, names: list[str]) -> tuple[float, ...]:
    counts: dict[int, int] = {}
    total = 0
    for name in names:
        label = store[name].label[:, ::2, ::2]
        values, n = np.unique(label, return_counts=True)
        total += label.size
        for v, c in zip(values.tolist(), n.tolist(), strict=True):
            counts[v] = counts.get(v, 0) + c
    return tuple(round(counts[v] / total, 6) for v in sorted(counts) if v > 0)


def machine() -> Machine:
    """This machine: its CPU cores (those this process may use) and the first GPU's memory."""
    import torch

    gpu = None
    if torch.cuda.is_available():
        gpu = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return Machine(cores=cores, gpu_memory_gib=gpu, cpu_bf16=cpu_has_bf16())


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 instructions (x86 AVX512-BF16 or AMX, from Linux's ``/proc/cpuinfo``).

    PyTorch runs bf16 on any AVX512 CPU, but without these instructions oneDNN emulates it, converting
    around every product, so float32 is the safe choice there. Elsewhere (ARM, macOS, Windows): False.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def plan(fp: Fingerprint, host: Machine, store: str | Path) -> dict:
    """The settings for ``fp`` on ``host`` as a LightningCLI config (``model``, ``data``, ``trainer``)."""
    budget = (
        int(host.gpu_memory_gib * GPU_VOXELS_PER_GIB)
        if host.gpu_memory_gib
        else host.cores * CPU_VOXELS_PER_CORE
    )
    levels = _levels(min(fp.smallest_train_shape[1:]))
    crop = _crop(fp, budget // MIN_BATCH, 2 ** (levels - 1))
    batch = max(MIN_BATCH, budget // math.prod(crop))
    window = _window(fp, crop)
    epoch = int(np.clip(round(fp.train_voxels / math.prod(crop)), 16, 400))  # crops covering the voxels once
    return {
        "model": {"widths": list(PAPER_WIDTHS[:levels]), "val_roi": window},
        "data": {
            "store": str(store),
            "crop_size": list(crop),
            "batch_size": int(batch),
            "samples_per_epoch": epoch,
        },  # fmt: skip
        "trainer": {"accelerator": "auto", "devices": 1, "precision": training_precision(host)},
    }


def training_precision(host: Machine) -> str:
    """bf16 autocast where training runs on a CPU that has bf16 instructions, else float32."""
    return "bf16-mixed" if host.gpu_memory_gib is None and host.cpu_bf16 else "32-true"


def _window(fp: Fingerprint, crop: tuple[int, int, int]) -> list[int]:
    """(D, H, W) of predict's sliding window: the crop's depth, in-plane as much as
    ``PREDICT_WINDOW_VOXELS`` holds but at least twice the crop, within the smallest cube."""
    depth = min(crop[0], fp.smallest_shape[0])
    side = math.isqrt(PREDICT_WINDOW_VOXELS // depth)
    return [depth, *(min(max(2 * c, side), s) for c, s in zip(crop[1:], fp.smallest_shape[1:], strict=True))]


def _levels(plane: int) -> int:
    """U-Net levels (at most the paper's five) that leave ``MIN_PLANE_AT_BOTTOM`` pixels at the bottom."""
    return int(np.clip(math.floor(math.log2(max(plane, 1) / MIN_PLANE_AT_BOTTOM)) + 1, 1, len(PAPER_WIDTHS)))


def _crop(fp: Fingerprint, budget: int, multiple: int) -> tuple[int, int, int]:
    """(D, H, W): the largest square plane (a multiple of ``multiple``, within the smallest training cube)
    whose depth (:func:`_depth`) fits the voxel budget of one crop."""
    h, w = fp.smallest_train_shape[1:]
    plane = max(multiple, (min(h, w, MAX_PLANE) // multiple) * multiple)
    while True:
        depth = _depth(fp, plane)
        if depth * plane * plane <= budget or plane <= multiple:
            return depth, plane, plane
        plane -= multiple


def _depth(fp: Fingerprint, plane: int) -> int:
    """Slices per crop for a square ``plane``: 1 for 2D images, ``THIN_DEPTH`` for sections much farther
    apart than pixels, else the same physical extent as the plane (within 4-32 and the training cubes)."""
    cap = fp.smallest_train_shape[0]
    z, y = fp.median_spacing[0], min(fp.median_spacing[1:])
    if cap == 1:
        return 1
    if z > ANISOTROPIC * y:
        return min(THIN_DEPTH, cap)
    return int(np.clip(round(plane * y / z), min(4, cap), min(32, cap)))


def write_plan(store_path: str | Path, out: str | Path, host: Machine | None = None) -> tuple[dict, str]:
    """Plan ``store_path`` on this machine (or ``host``) and write it as a commented YAML config."""
    import yaml

    out = Path(out)
    if out.suffix not in (".yaml", ".yml"):
        raise InputError(f"--out '{out}' should be a .yaml file (a LightningCLI config)")
    fp, host = fingerprint(store_path), host or machine()
    settings = plan(fp, host, store_path)
    lines = [f"# tcupgan plan for {store_path}, on {host.cores} CPU cores"
             + (" with bf16 instructions" if host.cpu_bf16 else "")
             + (f" and a GPU of {host.gpu_memory_gib} GiB" if host.gpu_memory_gib else "")]  # fmt: skip
    lines += [f"#   {key}: {value}" for key, value in asdict(fp).items()]
    text = "\n".join(lines) + "\n" + yaml.safe_dump(settings, sort_keys=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return settings, text
