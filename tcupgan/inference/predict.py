"""Whole-cube prediction into the store, memory bounded by blocks, resumable and idempotent.

A cube is processed in blocks (a few sliding windows each, plus a context margin on every side that
is read but not written), so peak memory depends on the window size, not the cube size. Inside a block
MONAI's ``sliding_window_inference`` blends windows with Gaussian weights; across blocks the margins
give each written voxel the same context it would have in one pass (the U-Net "overlap-tile" scheme).

Per cube it writes, each atomically:
  * ``probability`` uint8 (K, D, H, W): sigmoid x 255 (compact: 1/4 of float32, 0.4% resolution);
  * ``prediction`` uint8 (D, H, W): the hard mask by the task's rule (binary threshold, BraTS regions
    → labels 1/2/3, multilabel bit flags);
  * ``slice_scores`` float32 (D,): the discriminator's realness of (image, predicted mask) per slice;
  * ``slice_entropy`` float32 (D,): mean binary predictive entropy per slice (bits);
  * ``slice_novelty`` float32 (D,): distance of the slice's image, as the discriminator's first convolution
    sees it, from the labelled training slices' (:mod:`tcupgan.inference.novelty`), when there are
    labelled training cubes.
The arrays record the checkpoint's fingerprint and the settings; a cube already predicted by the same
checkpoint with the same settings is skipped, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from skimage.morphology import remove_small_objects
from tqdm.auto import tqdm

from tcupgan.data.store import CubeStore
from tcupgan.data.transforms import normalise
from tcupgan.errors import InputError, StoreError
from tcupgan.inference.novelty import (
    FeatureReference,
    fit_reference,
    reference_cubes,
    reference_source,
    slice_novelty,
)

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
OUTPUTS = ("probability", "prediction", "slice_scores", "slice_entropy", "slice_novelty")


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


def load_model(ckpt: str | Path, device: str | torch.device = "cpu"):
    """Load a TCuP-GAN training checkpoint for inference; refuses files that are not one."""
    from tcupgan.training.module import TCuPGAN

    path = Path(ckpt)
    if not path.is_file():
        raise InputError(f"checkpoint '{path}' does not exist; train one with `tcupgan fit`")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device} but no CUDA GPU is visible here; use --device cpu")
    try:
        # compile=False: compiling pays over thousands of training steps, not for one predict run
        model = TCuPGAN.load_from_checkpoint(str(path), map_location=device, compile=False)
    except Exception as err:  # torch.load raises many types for files that are not checkpoints
        raise InputError(
            f"'{path}' is not a tcupgan training checkpoint ({err.__class__.__name__}: {err})"
        ) from err
    return model.eval().to(device)


PRECISIONS = {"32": torch.float32, "bf16": torch.bfloat16}
PRECISIONS_BY_DTYPE = {dtype: name for name, dtype in PRECISIONS.items()}


def set_precision(model, precision: str):
    """Cast the generator for inference: ``32`` (float32) or ``bf16`` (bfloat16 weights and activations).

    bf16 halves the memory traffic of every convolution; on CPUs with AVX512-BF16 or AMX and on recent
    GPUs that makes the generator faster (1.7-2.2x on 2 CPU cores, ``tools/bench/model_speed.py``) for
    labels that differ from float32's on a few boundary voxels (``tools/bench/predict_speed.py`` measures
    how many). The discriminator stays float32: its per-slice scores rank slices, and ties from coarse
    numbers would reorder them. On CPUs without bf16 instructions it is emulated and slower: keep ``32``.
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    model.generator.to(PRECISIONS[precision])
    return model


def hard_labels(prob: np.ndarray, task: str, threshold: float = 0.5) -> np.ndarray:
    """(K, ...) probabilities → uint8 labels: binary mask, BraTS labels 1/2/3, or multilabel bit flags.

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


def _starts(size: int, core: int) -> list[int]:
    return list(range(0, size, core))


def _binary_entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


@torch.no_grad()
def predict_cube(
    model,
    store: CubeStore,
    name: str,
    *,
    roi: Sequence[int],
    overlap: float = 0.25,
    tta: bool = False,
    block_windows: int = 2,
    min_size: int | Mapping[int, int] = 0,
    fingerprint: str = "",
    overwrite: bool = False,
    reference: FeatureReference | None = None,
) -> None:
    """Predict one cube block by block and write the output arrays atomically.

    The generator runs in whatever dtype its weights have (see :func:`set_precision`); probabilities,
    the discriminator's scores and everything written are computed in float32.
    """
    cube = store[name]
    attrs = cube.attrs
    _, d, h, w = cube.shape
    roi = [min(int(r), s) for r, s in zip(roi, (d, h, w), strict=True)]
    margin = [r // 4 if r < s else 0 for r, s in zip(roi, (d, h, w), strict=True)]
    core = [max(1, r * block_windows - 2 * m) for r, m in zip(roi, margin, strict=True)]
    k = model.hparams.out_channels
    device = next(model.parameters()).device
    score_sum, score_n = np.zeros(d), np.zeros(d)
    entropy_sum = np.zeros(d)
    dtype = next(model.generator.parameters()).dtype
    meta = {
        "checkpoint": fingerprint, "roi": roi, "overlap": overlap, "tta": tta, "min_size": min_size,
        "precision": PRECISIONS_BY_DTYPE[dtype], "novelty_reference": reference.source if reference else "",
    }  # fmt: skip

    def generate(x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(model.generator(x.to(dtype)).float())

    def network(x: torch.Tensor) -> torch.Tensor:
        prob = generate(x)
        if tta:  # in-plane flips only: depth order is the ConvLSTM's direction
            for dims in ((3,), (4,), (3, 4)):
                prob = prob + generate(x.flip(dims)).flip(dims)
            prob = prob / 4
        return prob

    with (
        store.array_writer(
            name, "probability", (k, d, h, w), "uint8", attrs=meta, overwrite=overwrite
        ) as prob_out,
        store.array_writer(
            name, "prediction", (d, h, w), "uint8", attrs=meta, overwrite=overwrite
        ) as label_out,
    ):
        for z0, y0, x0 in itertools.product(*(_starts(s, c) for s, c in zip((d, h, w), core, strict=True))):
            lo = [max(0, a - m) for a, m in zip((z0, y0, x0), margin, strict=True)]
            hi = [min(s, a + c + m) for a, c, m, s in zip((z0, y0, x0), core, margin, (d, h, w), strict=True)]
            block = normalise(cube.image[:, lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]], attrs)
            x = torch.from_numpy(block)[None].to(device)
            prob = sliding_window_inference(x, roi, 4, network, overlap=overlap, mode="gaussian")
            patches = torch.sigmoid(model.discriminator(x, prob))  # (1, 1, dz, ph, pw)
            realness = F.interpolate(patches, size=x.shape[2:], mode="nearest")[0, 0].cpu().numpy()
            prob = prob[0].cpu().numpy()
            inner = tuple(
                slice(a - lo_, min(a + c, s) - lo_)
                for a, lo_, c, s in zip((z0, y0, x0), lo, core, (d, h, w), strict=True)
            )
            zc = slice(z0, min(z0 + core[0], d))
            out = tuple(
                slice(a, min(a + c, s)) for a, c, s in zip((z0, y0, x0), core, (d, h, w), strict=True)
            )
            core_prob = prob[(slice(None), *inner)]
            prob_out[(slice(None), *out)] = np.round(core_prob * 255).astype(np.uint8)
            label_out[out] = hard_labels(core_prob, store.task)
            entropy_sum[zc] += _binary_entropy(core_prob).mean(axis=0).sum(axis=(1, 2))
            score_sum[zc] += realness[inner].sum(axis=(1, 2))
            score_n[zc] += (out[1].stop - out[1].start) * (out[2].stop - out[2].start)
    if min_size:
        cleaned = remove_small_components(store[name]["prediction"][...], min_size)
        store.write_array(name, "prediction", cleaned, attrs=meta, overwrite=True)
    store.write_array(
        name, "slice_scores", (score_sum / score_n).astype(np.float32), attrs=meta, overwrite=True
    )
    if reference is not None:
        novelty = slice_novelty(model, store, name, reference)
        limit = {"familiar_limit": reference.limit}  # what select --unfamiliar-first compares with
        store.write_array(name, "slice_novelty", novelty, attrs={**meta, **limit}, overwrite=True)
    store.write_array(  # written last: its attributes mark the cube as done
        name, "slice_entropy", (entropy_sum / (h * w)).astype(np.float32), attrs=meta, overwrite=True
    )


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
    device: str = "cpu",
    precision: str = "32",
    rank: int | None = None,
    world_size: int | None = None,
    reference: str | Path | None = None,
) -> PredictReport:
    """Predict every selected cube of a store with a checkpoint; skips cubes this checkpoint already did.

    ``reference``: the store whose labelled train-split cubes define "familiar" for ``slice_novelty``
    (default: this store); without any, novelty is left out with a warning.

    Distributed: started once per process (``torchrun``, ``srun``, one per GPU), each process takes every
    ``world_size``-th cube from ``rank`` (read from the RANK/WORLD_SIZE or SLURM_PROCID/SLURM_NTASKS
    variables when not given), so each cube has exactly one writer and no process waits on another.
    """
    rank = int(rank if rank is not None else os.environ.get("RANK", os.environ.get("SLURM_PROCID", 0)))
    world_size = int(world_size or os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", 1)))
    if not 0 <= rank < world_size:
        raise InputError(f"rank {rank} is outside world size {world_size}")
    store = CubeStore(store_path, mode="r+")
    names = list(cubes) if cubes else store.names(split=split)
    missing = [n for n in names if n not in store]  # checked before the split, so every rank agrees
    if missing:
        raise StoreError(f"no cubes {missing[:5]} in '{store.path}' (see `tcupgan info`)")
    names = names[rank::world_size]
    model = set_precision(load_model(ckpt, device), precision)
    if model.hparams.in_channels != len(store.channel_names):
        raise InputError(
            f"checkpoint expects {model.hparams.in_channels} channel(s), store '{store.path}' has "
            f"{len(store.channel_names)} ({store.channel_names}); predict with a model trained on such data"
        )
    if model.hparams.get("task", store.task) != store.task:
        raise InputError(
            f"the checkpoint's task is '{model.hparams.task}' but store '{store.path}' holds '{store.task}'"
        )
    roi = roi or model.hparams.val_roi or (16, 128, 128)
    fingerprint = checkpoint_fingerprint(ckpt)
    roi = [int(r) for r in roi]
    if isinstance(min_size, Mapping):  # JSON attrs keep string keys: compare like with like
        min_size = {str(k): int(v) for k, v in min_size.items()}
    # the reference is named here (its store and cube count) but fitted, a discriminator pass over up to
    # 32 train cubes, only once a cube needs predicting: a rerun that has nothing to do stays cheap
    reference_path = reference or store_path
    train_cubes = reference_cubes(reference_path)
    where = "this store" if reference is None else Path(reference).resolve()
    source = reference_source(where, "train", len(train_cubes)) if train_cubes else ""
    if not source:
        log.warning(
            "no labelled train-split cubes in %s: slice_novelty is left out (`tcupgan select --strategy "
            "novelty` needs it); pass --reference TRAIN_STORE", reference_path,
        )  # fmt: skip
    settings = {
        "checkpoint": fingerprint, "overlap": overlap, "tta": tta, "min_size": min_size,
        "precision": precision, "novelty_reference": source,
    }  # fmt: skip
    novelty_reference = None
    report = PredictReport()
    for name in tqdm(names, desc="predict", unit="cube", disable=None):
        cube = store[name]
        done = (
            "slice_entropy" in cube and {k: cube["slice_entropy"].attrs.get(k) for k in settings} == settings
        )
        if done and not overwrite:
            report.skipped.append(name)
            continue
        if settings["novelty_reference"] and novelty_reference is None:
            novelty_reference = fit_reference(model, reference_path, source=source)
            if novelty_reference is None:
                log.warning("the train cubes of %s have no slices with content: no novelty", reference_path)
                settings["novelty_reference"] = ""
        redo = overwrite or any(key in cube for key in OUTPUTS)  # outputs of another checkpoint or a crash
        predict_cube(
            model, store, name, roi=roi, overlap=overlap, tta=tta, min_size=min_size, fingerprint=fingerprint,
            overwrite=redo, reference=novelty_reference,
        )  # fmt: skip
        report.predicted.append(name)
    return report


def predict_files(
    ckpt: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    roi: Sequence[int] | None = None,
    overlap: float = 0.25,
    tta: bool = False,
    min_size: int | Mapping[int, int] = 0,
    device: str = "cpu",
    precision: str = "32",
) -> list[Path]:
    """A quick run without a store: predict files and write label maps to ``out``.

    Inputs are NIfTI volumes, TIFF stacks, 2D images, or BraTS case folders. They are ingested into a
    temporary store (the same validation as ``tcupgan ingest``), predicted, and each prediction is exported
    as ``<name>_pred.nii.gz`` (NIfTI inputs and BraTS cases, source affine), ``.tif`` or ``.png``.
    """
    import tempfile

    from tcupgan.data.export import export_cube
    from tcupgan.data.ingest import cube_name, ingest_brats
    from tcupgan.data.readers import read_image, read_nifti, read_stack

    hp = load_model(ckpt).hparams
    out = Path(out)
    written = []
    with tempfile.TemporaryDirectory(prefix="tcupgan-predict-") as tmp:
        store_path = Path(tmp) / "inputs.zarr"
        formats = {}
        for path in map(Path, inputs):
            if path.is_dir():
                for case in ingest_brats(path, store_path).written:
                    formats[case] = ".nii.gz"
                continue
            name = cube_name(path)
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
            store.write_cube(name, vol.data, attrs=vol.meta)
            formats[name] = suffix
        predict_store(
            ckpt, store_path, roi=roi, overlap=overlap, tta=tta, min_size=min_size, device=device,
            precision=precision,
        )  # fmt: skip
        for name, suffix in formats.items():
            written.append(export_cube(store_path, name, out / f"{name}_pred{suffix}", what="prediction"))
    return written
