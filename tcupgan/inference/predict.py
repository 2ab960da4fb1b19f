"""Whole-cube prediction into the store, memory bounded by blocks, resumable and idempotent.

A cube is processed in blocks of at most ``BLOCK_VOXELS`` (as many sliding windows as fit, plus a
context margin on every side that is read but not written), so peak memory is bounded whatever the cube
size; a cube that fits is one block, one sliding-window pass. Inside a block MONAI's
``sliding_window_inference`` blends windows with Gaussian weights; across blocks the margins give each
written voxel the same context it would have in one pass (the U-Net "overlap-tile" scheme).

Per cube it writes, each atomically:
  * ``probability`` uint8 (K, D, H, W): sigmoid x 255 (compact: 1/4 of float32, 0.4% resolution);
  * ``prediction`` uint8 (D, H, W): the hard mask by the task's rule (binary threshold, BraTS regions
    → labels 1/2/3, multilabel bit flags);
  * ``slice_<score>`` float32 (D,): one per registered slice scorer (:mod:`tcupgan.inference.scorers`:
    realness, entropy, and novelty where there are labelled training cubes).
The arrays record the checkpoint's fingerprint and the settings, and the cube's ``predicted`` attribute
is set last; a cube already predicted by the same checkpoint with the same settings is skipped, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from skimage.morphology import remove_small_objects
from tqdm.auto import tqdm

from tcupgan.allocator import reuse_freed_memory
from tcupgan.data.locks import store_lock
from tcupgan.data.store import CubeStore
from tcupgan.data.transforms import normalise
from tcupgan.errors import InputError, StoreError
from tcupgan.inference.novelty import reference_cubes, reference_source
from tcupgan.inference.scorers import ScoringContext, predicted_scorers
from tcupgan.models.compiling import CompiledOrEager

__all__ = [
    "PredictReport",
    "checkpoint_fingerprint",
    "hard_labels",
    "load_model",
    "predict_store",
    "predict_files",
    "remove_small_components",
]

log = logging.getLogger(__name__)


@dataclass
class PredictReport:
    predicted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{len(self.predicted)} cube(s) predicted, {len(self.skipped)} already done by this checkpoint"


def checkpoint_fingerprint(path: str | Path) -> str:
    """SHA-256 of the checkpoint file: what 'already predicted by the same checkpoint' means."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto``: the GPU where one is visible (CUDA, then Apple's MPS), else the CPU; anything else as
    named, refused with what to do when it is not here."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device} but no CUDA GPU is visible here; use --device auto or cpu")
    return torch.device(device)


def load_model(ckpt: str | Path, device: str | torch.device = "auto"):
    """Load a TCuP-GAN training checkpoint for inference on ``device`` (``auto``: a GPU where there is
    one); refuses files that are not one."""
    from tcupgan.training.module import TCuPGAN

    device = resolve_device(device)
    path = Path(ckpt)
    if not path.is_file():
        raise InputError(f"checkpoint '{path}' does not exist; train one with `tcupgan fit`")
    try:
        # compile=False: compiling pays over thousands of training steps, not for one predict run
        model = TCuPGAN.load_from_checkpoint(str(path), map_location=device, compile=False)
    except Exception as err:  # torch.load raises many types for files that are not checkpoints
        raise InputError(
            f"'{path}' is not a tcupgan training checkpoint ({err.__class__.__name__}: {err})"
        ) from err
    return model.eval().to(device)


PRECISIONS = {"32": torch.float32, "bf16": torch.bfloat16}
BLOCK_VOXELS = 2**22  # a block's read region, at most: 16 MB a channel in float32
CPU_BF16_CALL_VOXELS = 2**19  # window voxels a bf16 generator call on a CPU holds (windows_per_batch)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 where the hardware multiplies bf16 itself, CUDA GPUs that have it (half the memory
    traffic of float32, and the tensor cores' native type) and CPUs with AVX512-BF16 or AMX (predict
    1.3x faster, a few boundary voxels' labels change); float32 elsewhere (other CPUs emulate bf16, which
    is slower); else as named."""
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "32"
        from tcupgan.training.plan import cpu_has_bf16  # the training package loads Lightning

        return "bf16" if device.type == "cpu" and cpu_has_bf16() else "32"
    if precision not in PRECISIONS:
        raise InputError(f"precision must be auto or one of {sorted(PRECISIONS)}, got {precision!r}")
    return precision


def set_precision(model, precision: str):
    """Cast the generator for inference: ``32`` (float32) or ``bf16`` (bfloat16 weights and activations),
    as :func:`resolve_precision` names them.

    bf16 halves the memory traffic of every convolution; on CPUs with AVX512-BF16 or AMX and on recent
    GPUs that makes the generator faster (1.5-2.2x on 2 CPU cores, ``tools/bench/model_speed.py``) for
    labels that differ from float32's on a few boundary voxels (``tools/bench/predict_speed.py`` measures
    how many). The discriminator stays float32: its per-slice scores rank slices, and ties from coarse
    numbers would reorder them. On CPUs without bf16 instructions it is emulated and slower: keep ``32``.
    """
    model.generator.to(PRECISIONS[precision])
    return model


@torch.no_grad()
def windows_per_batch(generator, channels: int, roi: Sequence[int], device: torch.device) -> int:
    """How many sliding windows go through the generator at once.

    On a CUDA GPU: as many as half its free memory holds, from one window's measured peak (more windows
    per call give every kernel of the slice-by-slice walk more work, and its launches less weight), at
    most 64. On a CPU in float32: 4 (up to 1.5x faster than one, at up to twice the memory). On a CPU in
    bf16: as many as ``CPU_BF16_CALL_VOXELS`` hold, 1-4; beyond that a call is slower and holds more
    (one 1024² window a call: 1.2x faster than four, half the memory; studies/cpu-inference).
    """
    dtype = next(generator.parameters()).dtype
    if device.type != "cuda":
        if dtype != torch.bfloat16:
            return 4
        return int(np.clip(CPU_BF16_CALL_VOXELS // math.prod(roi), 1, 4))
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    generator(torch.zeros(1, channels, *roi, device=device, dtype=dtype))
    per_window = max(torch.cuda.max_memory_allocated(device) - before, 1)
    free, _ = torch.cuda.mem_get_info(device)
    return int(np.clip(free // 2 // per_window, 1, 64))


def hard_labels(prob: np.ndarray, task: str, threshold: float = 0.5) -> np.ndarray:
    """(K, ...) probabilities → uint8 labels: binary mask, BraTS labels 1/2/3, or multilabel bit flags.
    A voxel is on above ``threshold``: 0.5 for probabilities in [0, 1], 127 for the stored uint8 ones.

    BraTS regions nest (ET ⊂ TC ⊂ WT): WT without TC is oedema (2), TC without ET necrosis (1), ET is 3.
    """
    on = prob > threshold
    if task == "binary":
        return on[0].astype(np.uint8)
    if task == "brats":
        et, tc, wt = on
        labels = np.where(wt, 2, 0)
        labels = np.where(tc | et, 1, labels)
        return np.where(et, 3, labels).astype(np.uint8)
    return sum(on[k].astype(np.uint8) << k for k in range(len(on))).astype(np.uint8)


def remove_small_components(labels: np.ndarray, min_size: int | Mapping[int, int]) -> np.ndarray:
    """Drop 26-connected components smaller than a minimum size, label value by label value.

    ``min_size`` is one size for every label, or ``{label value: size}`` (e.g. BraTS ``{3: 50, 1: 100,
    2: 200}``), as the original BraTS submission cleaned its masks. Specks the network leaves in background
    count as false-positive lesions in the lesion-wise metrics. Works on the whole (D, H, W) uint8 mask,
    so it costs one mask and its component labels in memory; off (0) by default.
    """
    if isinstance(min_size, Mapping):
        sizes = {int(k): int(v) for k, v in min_size.items()}
    else:
        sizes = {int(v): int(min_size) for v in np.unique(labels)}
    if all(size <= 1 for size in sizes.values()):
        return labels
    out = labels.copy()
    for value, size in sizes.items():
        if value == 0 or size <= 1:
            continue
        mask = labels == value
        kept = remove_small_objects(mask, max_size=size - 1, connectivity=3)
        out[mask & ~kept] = 0
    return out


@dataclass(frozen=True)
class Block:
    """One block of a cube: ``read`` (the core plus its context margin), ``core`` (what it writes, in
    cube coordinates) and ``inner`` (the core inside the read block)."""

    read: tuple[slice, ...]
    core: tuple[slice, ...]
    inner: tuple[slice, ...]


def block_windows(shape: Sequence[int], roi: Sequence[int], max_voxels: int) -> int:
    """Windows across per axis of a block: as many as keep its read region within ``max_voxels`` (at
    least 2). A cube that fits is one block, predicted exactly as one sliding-window pass over it; fewer,
    larger blocks also mean fewer windows, since every block tiles its own margins again."""

    margin = [r // 4 if r < s else 0 for r, s in zip(roi, shape, strict=True)]

    def whole_cube(n: int) -> bool:
        return all(n * r - 2 * m >= s for r, m, s in zip(roi, margin, shape, strict=True))

    def read_voxels(n: int) -> int:
        return math.prod(min(n * r, s) for r, s in zip(roi, shape, strict=True))

    n = 2
    while not whole_cube(n) and read_voxels(n + 1) <= max_voxels:
        n += 1
    return n


def blocks(shape: Sequence[int], roi: Sequence[int], windows: int) -> Iterator[Block]:
    """Blocks of ``windows`` windows across per axis whose margins (a quarter window) give every written
    voxel the context it would have in one pass. A block at the cube's far edge reads back at least one
    window: a narrower one would be zero-padded to the window, and the padding would shift every
    per-slice instance norm of the windows there (on the real EM membranes model, 8% of the labels)."""
    margin = [r // 4 if r < s else 0 for r, s in zip(roi, shape, strict=True)]
    core = [max(1, r * windows - 2 * m) for r, m in zip(roi, margin, strict=True)]
    for start in itertools.product(*(range(0, s, c) for s, c in zip(shape, core, strict=True))):
        hi = [min(s, a + c + m) for a, c, m, s in zip(start, core, margin, shape, strict=True)]
        lo = [max(0, min(a - m, b - r)) for a, m, b, r in zip(start, margin, hi, roi, strict=True)]
        stop = [min(a + c, s) for a, c, s in zip(start, core, shape, strict=True)]
        yield Block(
            tuple(slice(a, b) for a, b in zip(lo, hi, strict=True)),
            tuple(slice(a, b) for a, b in zip(start, stop, strict=True)),
            tuple(slice(a - o, b - o) for a, b, o in zip(start, stop, lo, strict=True)),
        )


def _network(model, tta: bool, compile_graphs: bool):
    """The generator as sliding-window inference calls it: probabilities in float32, whatever the
    generator's dtype (:func:`set_precision`); ``tta`` averages in-plane flips (depth order is the
    ConvLSTM's direction). ``compile_graphs``: ``torch.compile`` it, one graph per window shape; on CUDA
    in ``reduce-overhead`` mode, which replays the whole slice-by-slice walk as one CUDA graph instead of
    launching its thousands of small kernels one by one (eager where compiling fails, with a warning)."""
    dtype = next(model.generator.parameters()).dtype
    generator = model.generator
    if compile_graphs:
        mode = "reduce-overhead" if model.device.type == "cuda" else None
        generator = CompiledOrEager(generator, "compiled predict", mode=mode, dynamic=False)

    def generate(x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(generator(x.to(dtype)).float())

    def network(x: torch.Tensor) -> torch.Tensor:
        if not tta:
            return generate(x)
        flips = ((), (3,), (4,), (3, 4))
        return sum(generate(x.flip(dims)).flip(dims) if dims else generate(x) for dims in flips) / 4

    return network


@torch.no_grad()
def predict_cube(
    ctx: ScoringContext,
    name: str,
    *,
    network: Callable[[torch.Tensor], torch.Tensor],
    roi: Sequence[int],
    settings: Mapping,
    overlap: float = 0.25,
    window_batch: int = 4,
    min_size: int | Mapping[int, int] = 0,
    overwrite: bool = False,
) -> None:
    """Predict one cube block by block with ``network`` (windows → probabilities, :func:`_network`),
    ``window_batch`` windows at a time; write the probabilities, the hard labels and every registered
    scorer's per-slice array, each atomically, then mark the cube done with ``settings``."""
    model, store = ctx.model, ctx.store
    cube = store[name]
    _, d, h, w = cube.shape
    roi = [min(int(r), s) for r, s in zip(roi, (d, h, w), strict=True)]
    meta = {**settings, "roi": roi}
    device = next(model.parameters()).device
    per_block = [s for s in predicted_scorers() if s.per_block]
    sums = {s.array: np.zeros(d) for s in per_block}
    store.update_attrs(name, predicted=None)  # until every array below is written
    shape = (model.hparams.out_channels, d, h, w)
    with (
        store.array_writer(name, "probability", shape, "uint8", attrs=meta, overwrite=overwrite) as prob_out,
        store.array_writer(name, "prediction", (d, h, w), "uint8", attrs=meta, overwrite=overwrite) as labels,
    ):
        for block in blocks((d, h, w), roi, block_windows((d, h, w), roi, BLOCK_VOXELS)):
            image = normalise(cube.image[(slice(None), *block.read)], cube.attrs)
            x = torch.from_numpy(image)[None].to(device)
            prob = sliding_window_inference(x, roi, window_batch, network, overlap=overlap, mode="gaussian")
            core_prob = prob[0].cpu().numpy()[(slice(None), *block.inner)]
            stored = np.round(core_prob * 255).astype(np.uint8)
            prob_out[(slice(None), *block.core)] = stored
            # from the stored probabilities: a voxel at exactly 0.5 (common in bf16) is 128/255 there
            labels[block.core] = hard_labels(stored, store.task, threshold=127)
            for scorer in per_block:
                voxels = scorer.block_map(model, x, prob).float().cpu().numpy()[block.inner]
                sums[scorer.array][block.core[0]] += voxels.sum(axis=(1, 2))
    if min_size:
        cleaned = remove_small_components(store[name]["prediction"][...], min_size)
        store.write_array(name, "prediction", cleaned, attrs=meta, overwrite=True)
    for array, total in sums.items():
        store.write_array(name, array, (total / (h * w)).astype(np.float32), attrs=meta, overwrite=True)
    for scorer in predicted_scorers():
        scored = None if scorer.per_block else scorer.cube_values(ctx, name)
        if scored is not None:
            values, extra = scored
            store.write_array(name, scorer.array, values.astype(np.float32), attrs={**meta, **extra},
                              overwrite=True)  # fmt: skip
    store.update_attrs(name, predicted=dict(settings))


def distributed_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """This process's rank and the world size, from the arguments or the RANK/WORLD_SIZE or
    SLURM_PROCID/SLURM_NTASKS variables."""
    rank = int(rank if rank is not None else os.environ.get("RANK", os.environ.get("SLURM_PROCID", 0)))
    world_size = int(world_size or os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", 1)))
    if not 0 <= rank < world_size:
        raise InputError(f"rank {rank} is outside world size {world_size}")
    return rank, world_size


def check_model_fits(model, store: CubeStore) -> None:
    """Refuse a checkpoint trained on other channels or another task than the store's."""
    if model.hparams.in_channels != len(store.channel_names):
        raise InputError(
            f"checkpoint expects {model.hparams.in_channels} channel(s), store '{store.path}' has "
            f"{len(store.channel_names)} ({store.channel_names}); predict with a model trained on such data"
        )
    if model.hparams.get("task", store.task) != store.task:
        raise InputError(
            f"the checkpoint's task is '{model.hparams.task}' but store '{store.path}' holds '{store.task}'"
        )


def novelty_source(store_path: str | Path, reference: str | Path | None) -> str:
    """The novelty reference's name for predict's settings: the labelled train-split cubes of
    ``reference`` (default: the predicted store); "" with a warning where there are none."""
    train_cubes = reference_cubes(reference or store_path)
    if not train_cubes:
        log.warning(
            "no labelled train-split cubes in %s: slice_novelty is left out (`tcupgan select --strategy "
            "novelty` needs it); pass --reference TRAIN_STORE", reference or store_path,
        )  # fmt: skip
        return ""
    where = "this store" if reference is None else Path(reference).resolve()
    return reference_source(where, "train", len(train_cubes))


def predict_store(
    ckpt: str | Path,
    store_path: str | Path,
    *,
    cubes: Sequence[str] | None = None,
    split: str | None = None,
    roi: Sequence[int] | None = None,
    overlap: float = 0.25,
    tta: bool = False,
    min_size: int | Mapping[int, int] = 0,
    overwrite: bool = False,
    device: str = "auto",
    precision: str = "auto",
    window_batch: int | None = None,
    compile: bool | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    reference: str | Path | None = None,
) -> PredictReport:
    """Predict every selected cube of a store with a checkpoint; skips cubes this checkpoint already did.

    ``precision``: ``auto`` (bf16 on CUDA GPUs and CPUs that have bf16 arithmetic, else float32), ``32``
    or ``bf16``.
    ``window_batch``: sliding windows per generator call (None: ``windows_per_batch``, from the GPU's free
    memory or the CPU's precision); a speed choice, the numbers are the same.
    ``compile``: run the generator compiled (None: on CUDA GPUs, as CUDA graphs); the first run compiles,
    later runs load the compiled kernels from the cache.
    ``reference``: the store whose labelled train-split cubes define "familiar" for ``slice_novelty``
    (default: this store); without any, novelty is left out with a warning.

    Distributed: started once per process (``torchrun``, ``srun``, one per GPU), each process takes every
    ``world_size``-th cube from ``rank`` (read from the environment when not given), so each cube has
    exactly one writer and no process waits on another.
    """
    rank, world_size = distributed_rank(rank, world_size)
    reuse_freed_memory()
    if window_batch is not None and window_batch < 1:
        raise InputError(f"window_batch must be 1 or more windows per call, got {window_batch}")
    store = CubeStore(store_path, mode="r+")
    names = _selected_cubes(store, cubes, split)
    model = load_model(ckpt, device)
    precision = resolve_precision(precision, model.device)
    set_precision(model, precision)
    check_model_fits(model, store)
    roi = [int(r) for r in roi or model.hparams.val_roi or (16, 128, 128)]
    if isinstance(min_size, Mapping):  # JSON attrs keep string keys: compare like with like
        min_size = {str(k): int(v) for k, v in min_size.items()}
    ctx = ScoringContext(model, store, reference or store_path, novelty_source(store_path, reference))
    settings = {
        "checkpoint": checkpoint_fingerprint(ckpt), "overlap": overlap, "tta": tta, "min_size": min_size,
        "precision": precision, "novelty_reference": ctx.reference_source,
        "scores": [s.name for s in predicted_scorers()],
    }  # fmt: skip
    compile = model.device.type == "cuda" if compile is None else compile
    run = {"roi": roi, "overlap": overlap, "min_size": min_size}
    report = PredictReport()
    for name in tqdm(names[rank::world_size], desc="predict", unit="cube", disable=None):
        with store_lock(store.path, name):  # a second predict of this store waits, then finds it done
            if store[name].attrs.get("predicted") == settings and not overwrite:
                report.skipped.append(name)
                continue
            if ctx.reference_source and ctx.reference is None:
                log.warning(
                    "the train cubes of %s have no slices with content: no novelty", ctx.reference_store
                )
                ctx.reference_source = settings["novelty_reference"] = ""
            if "network" not in run:  # built for the first cube to predict: a rerun with none stays cheap
                run["window_batch"] = window_batch or windows_per_batch(
                    model.generator, model.hparams.in_channels, roi, model.device
                )
                run["network"] = _network(model, tta, compile)
            redo = overwrite or any(key in store[name] for key in ("probability", "prediction"))
            predict_cube(ctx, name, settings=settings, overwrite=redo, **run)
            report.predicted.append(name)
    return report


def _selected_cubes(store: CubeStore, cubes: Sequence[str] | None, split: str | None) -> list[str]:
    """The cubes named, or those of ``split`` (all where None); every name checked before any rank takes
    its share, so every process refuses alike."""
    names = list(cubes) if cubes else store.names(split=split)
    missing = [n for n in names if n not in store]
    if missing:
        raise StoreError(f"no cubes {missing[:5]} in '{store.path}' (see `tcupgan info`)")
    return names


def predict_files(
    ckpt: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    device: str = "auto",
    **options: Any,
) -> list[Path]:
    """A quick run without a store: predict files and write label maps to ``out``.

    Inputs are NIfTI volumes, TIFF stacks, 2D images, or BraTS case folders. They are ingested into a
    temporary store (the same validation as ``tcupgan ingest``), predicted with ``options`` (those of
    :func:`predict_store`), and each prediction is exported as ``<name>_pred.nii.gz`` (NIfTI inputs and
    BraTS cases, source affine), ``.tif`` or ``.png``.
    """
    import tempfile

    from tcupgan.data.export import export_cube

    hp = load_model(ckpt).hparams
    with tempfile.TemporaryDirectory(prefix="tcupgan-predict-") as tmp:
        store_path = Path(tmp) / "inputs.zarr"
        formats = _ingest_inputs(inputs, store_path, hp)
        predict_store(ckpt, store_path, device=device, **options)
        return [
            export_cube(store_path, name, Path(out) / f"{name}_pred{suffix}", what="prediction")
            for name, suffix in formats.items()
        ]


def _ingest_inputs(inputs: Sequence[str | Path], store_path: Path, hp: Mapping) -> dict[str, str]:
    """Each input as a cube of a new store made for the model ``hp`` describes; per cube, the suffix
    its prediction is exported with."""
    from tcupgan.data.ingest import cube_name, ingest_brats
    from tcupgan.data.readers import read_image, read_nifti, read_stack

    formats = {}
    for path in map(Path, inputs):
        if path.is_dir():
            formats |= dict.fromkeys(ingest_brats(path, store_path).written, ".nii.gz")
            continue
        if path.name.lower().endswith((".nii", ".nii.gz")):
            vol, suffix = read_nifti(path), ".nii.gz"
            vol.data = vol.data[None]
        elif path.suffix.lower() in (".tif", ".tiff"):
            vol, suffix = read_stack(path), ".tif"
        else:
            vol, suffix = read_image(path), ".png"
        if vol.data.shape[0] != hp.in_channels:
            raise InputError(
                f"'{path}' has {vol.data.shape[0]} channel(s); the model expects {hp.in_channels}"
            )
        channels = [f"channel{i}" for i in range(hp.in_channels)]
        store = CubeStore.create(
            store_path, task=hp.get("task", "binary"), channel_names=channels,
            class_names=hp.class_names or ["foreground"], exist_ok=True,
        )  # fmt: skip
        name = cube_name(path)
        store.write_cube(name, vol.data, attrs=vol.meta)
        formats[name] = suffix
    return formats
