"""The medical field's dataset layouts: nnU-Net raw datasets, the Medical Segmentation Decathlon, and plain
NIfTI image/label pairs, in and out of a cube store.

* **nnU-Net v2** (``Dataset001_X/``): ``dataset.json`` with ``channel_names``, ``labels`` (name → value)
  and ``file_ending``; ``imagesTr/<case>_<XXXX><ending>`` one file per channel, ``labelsTr/<case><ending>``,
  optional ``imagesTs/``.
* **Decathlon** (``Task01_BrainTumour/``, also nnU-Net v1): ``dataset.json`` with ``modality``, ``labels``
  (value → name) and a ``training`` list of image/label paths; one 4D NIfTI per case (x, y, z, channel).

nnU-Net's classes are exclusive values 0..K. One class becomes a ``binary`` store; several become a
``multilabel`` store whose bit k-1 is class k (values 1, 2, 4, ...), which :func:`export_nnunet` turns
back into 0..K. Region-based label definitions (a label listing several values) are refused.
"""

from __future__ import annotations

import glob
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from tcupgan.data.export import cube_affine
from tcupgan.data.ingest import IngestReport, ingest_cases, to_label
from tcupgan.data.readers import Volume, nifti_header, nifti_meta
from tcupgan.data.store import CubeStore, StoreSpec
from tcupgan.errors import InputError

__all__ = ["ingest_nnunet", "ingest_nifti", "export_nnunet", "read_nifti_channels"]


def read_nifti_channels(paths: Sequence[Path]) -> Volume:
    """One image from 3D NIfTI files (one channel each) or 4D ones (x, y, z, channel), as (C, D, H, W);
    every file must share the first one's grid (shape and affine)."""
    channels, meta, grid = [], {}, None
    for path in paths:
        img = nifti_header(Path(path))
        if len(img.shape) not in (3, 4):
            raise InputError(
                f"'{path}' has shape {img.shape}; expected 3D (x, y, z) or 4D (x, y, z, channel)"
            )
        if grid is None:
            grid = (img.shape[:3], img.affine)
            meta = nifti_meta(img)
        elif img.shape[:3] != grid[0] or not np.allclose(img.affine, grid[1], atol=1e-3):
            raise InputError(f"'{path}' is not on the grid of '{paths[0]}' (shape or affine differ)")
        data = np.asarray(img.get_fdata(dtype=np.float32))
        data = data[..., None] if data.ndim == 3 else data
        channels.extend(np.ascontiguousarray(data[..., c].transpose(2, 1, 0)) for c in range(data.shape[3]))
    return Volume(np.stack(channels), meta)


def _read_label(path: Path, values: dict[int, int], where: str) -> np.ndarray:
    """An nnU-Net label file → the store's values (``values``: nnU-Net value → stored value)."""
    label = to_label(read_nifti_channels([path]).data, "values", where)
    unknown = sorted(set(np.unique(label).tolist()) - set(values) - {0})
    if unknown:
        raise InputError(f"{where}: label values {unknown} are not in dataset.json's labels")
    out = np.zeros_like(label)
    for value, stored in values.items():
        out[label == value] = stored
    return out


def _classes(labels: dict, where: Path) -> dict[str, int]:
    """dataset.json's ``labels`` (v2 name → value, or Decathlon value → name) as class name → value > 0."""
    try:
        pairs = {str(k): v for k, v in labels.items()}
        if all(re.fullmatch(r"\d+", k) for k in pairs):  # Decathlon: "1": "edema"
            classes = {str(name): int(value) for value, name in pairs.items()}
        else:
            if any(isinstance(v, list) for v in pairs.values()):
                raise InputError(
                    f"{where}: region-based labels (a label of several values) are not supported"
                )
            classes = {name: int(value) for name, value in pairs.items()}
    except (TypeError, ValueError) as err:
        raise InputError(f"{where}: 'labels' must map names to integer values ({err})") from err
    classes = {n: v for n, v in classes.items() if v > 0}
    if not classes or sorted(classes.values()) != list(range(1, len(classes) + 1)):
        raise InputError(f"{where}: labels {sorted(classes.values())} must be 1..K besides background 0")
    return classes


def _spec_and_values(classes: dict[str, int], channels: list[str]) -> tuple[StoreSpec, dict[int, int]]:
    names = [n for n, _ in sorted(classes.items(), key=lambda item: item[1])]
    if len(names) == 1:
        return StoreSpec("binary", tuple(channels), tuple(names)), {1: 1}
    return StoreSpec("multilabel", tuple(channels), tuple(names)), {v: 1 << (v - 1) for v in classes.values()}


def _dataset_json(root: Path) -> dict:
    path = root / "dataset.json"
    if not path.is_file():
        raise InputError(f"'{root}' has no dataset.json; point `ingest nnunet` at a Dataset or Task folder")
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        raise InputError(f"{path} is not valid JSON ({err})") from err


def nnunet_cases(root: Path, meta: dict) -> tuple[list[str], dict[str, tuple[list[Path], Path | None]]]:
    """Channel names and case → (channel files, label file or None) of an nnU-Net v2 or Decathlon folder;
    a label without an image, or an image missing a channel, is refused."""
    where = root / "dataset.json"
    if "training" in meta:  # Decathlon: one 4D image per case
        channels = [
            str(v)
            for _, v in sorted(meta.get("modality", {"0": "intensity"}).items(), key=lambda i: int(i[0]))
        ]
        cases = {
            cube_id(Path(e["image"])): ([root / e["image"]], root / e["label"]) for e in meta["training"]
        }
        cases |= {cube_id(Path(p)): ([root / p], None) for p in meta.get("test", [])}
        return channels, cases
    if "channel_names" not in meta or "file_ending" not in meta:
        raise InputError(
            f"{where} names no 'channel_names' and 'file_ending' (nnU-Net v2) or 'training' (Decathlon)"
        )
    channels = [str(v) for _, v in sorted(meta["channel_names"].items(), key=lambda i: int(i[0]))]
    ending, cases = meta["file_ending"], {}
    for folder, labelled in (("imagesTr", True), ("imagesTs", False)):
        found: dict[str, dict[int, Path]] = {}
        for path in sorted((root / folder).glob(f"*_[0-9][0-9][0-9][0-9]{ending}")):
            case, channel = path.name[: -len(ending)].rsplit("_", 1)
            found.setdefault(case, {})[int(channel)] = path
        for case, files in found.items():
            if sorted(files) != list(range(len(channels))):
                raise InputError(
                    f"{folder}/{case}: channel files {sorted(files)}, but dataset.json names "
                    f"{len(channels)} channels"
                )
            cases[case] = (
                [files[c] for c in range(len(channels))],
                root / "labelsTr" / f"{case}{ending}" if labelled else None,
            )
    orphans = sorted(
        p.name for p in (root / "labelsTr").glob(f"*{ending}") if p.name[: -len(ending)] not in cases
    )
    if orphans:
        raise InputError(f"labelsTr holds labels without images in imagesTr: {orphans[:5]}")
    return channels, cases


def cube_id(path: Path) -> str:
    return re.sub(r"\.nii(\.gz)?$", "", path.name)


def ingest_nnunet(
    root: str | Path, store_path: str | Path, *, overwrite: bool = False, split_test: bool = True
) -> IngestReport:
    """Ingest an nnU-Net v2 raw dataset or a Decathlon task folder (see the module's docstring): labelled
    cases as they come, ``imagesTs`` cases (no labels) with split ``test`` when ``split_test``."""
    root = Path(root)
    meta = _dataset_json(root)
    channels, cases = nnunet_cases(root, meta)
    if not cases:
        raise InputError(f"'{root}' holds no cases (imagesTr is empty)")
    for files, label in cases.values():
        for path in (*files, *([label] if label else [])):
            if not path.is_file():
                raise InputError(f"'{path}' named by the dataset does not exist")
    spec, values = _spec_and_values(_classes(meta.get("labels", {}), root / "dataset.json"), channels)

    def load(name: str, source: tuple[list[Path], Path | None]) -> tuple[np.ndarray, np.ndarray | None, dict]:
        files, label_path = source
        image = read_nifti_channels(files)
        if image.data.shape[0] != len(channels):
            raise InputError(
                f"case '{name}' has {image.data.shape[0]} channels; dataset.json names {len(channels)}"
            )
        label = _read_label(label_path, values, name) if label_path else None
        if label is not None and label.shape != image.data.shape[1:]:
            raise InputError(
                f"case '{name}': label shape {label.shape} differs from the image's {image.data.shape[1:]}"
            )
        attrs: dict[str, Any] = {**image.meta, "sources": {"image": str(files[0]), "label": str(label_path)}}
        if label_path is None and split_test:
            attrs["split"] = "test"
        return image.data, label, attrs

    return ingest_cases(store_path, spec, sorted(cases.items()), load, overwrite, "ingest nnunet",
                        image_source=lambda source: str(source[0][0]))  # fmt: skip


def ingest_nifti(
    images: str,
    store_path: str | Path,
    *,
    labels: str | None = None,
    class_names: Sequence[str] = ("foreground",),
    overwrite: bool = False,
    split: str | None = None,
) -> IngestReport:
    """Ingest NIfTI images matching the glob ``images`` (one ``*``, whose match names the cube), with
    labels at ``labels``, the same pattern where ``*`` stands for that name, e.g. ``scans/*_t2.nii.gz``
    and ``masks/*_mask.nii.gz``. One class is a binary store; several, label values 1..K, a multilabel one."""
    if images.count("*") != 1 or (labels is not None and labels.count("*") != 1):
        raise InputError("--images and --labels take a pattern with one '*' standing for the case name")
    head, tail = images.split("*")
    found = sorted(glob.glob(images))
    if not found:
        raise InputError(f"no files match '{images}'")
    cases = {}
    for path in found:
        name = path[len(head) : len(path) - len(tail)]
        label = Path(labels.replace("*", name)) if labels else None
        if label is not None and not label.is_file():
            raise InputError(f"image '{path}' has no label '{label}'")
        cases[re.sub(r"[^A-Za-z0-9._+-]", "_", name)] = ([Path(path)], label)
    classes = {n: v for v, n in enumerate(class_names, start=1)}
    spec, values = _spec_and_values(classes, [])
    first = read_nifti_channels([Path(found[0])]).data.shape[0]
    spec = StoreSpec(
        spec.task,
        ("intensity",) if first == 1 else tuple(f"channel{i}" for i in range(first)),
        spec.class_names,
    )

    def load(name: str, source: tuple[list[Path], Path | None]) -> tuple[np.ndarray, np.ndarray | None, dict]:
        image = read_nifti_channels(source[0])
        label = _read_label(source[1], values, name) if source[1] else None
        attrs = {**image.meta, "sources": {"image": str(source[0][0]), "label": str(source[1])}}
        return image.data, label, attrs | ({"split": split} if split else {})

    return ingest_cases(store_path, spec, sorted(cases.items()), load, overwrite, "ingest nifti",
                        image_source=lambda source: str(source[0][0]))  # fmt: skip


def export_nnunet(store_path: str | Path, out: str | Path, *, name: str = "Dataset500_tcupgan") -> Path:
    """Write a store as an nnU-Net v2 raw dataset ``out/name``: labelled cubes (train and val) to
    ``imagesTr``/``labelsTr``, the others to ``imagesTs``, and ``dataset.json``; for users comparing with
    nnU-Net on the same data. Refuses multilabel cubes whose classes overlap (nnU-Net's are exclusive)."""
    store = CubeStore(store_path)
    if not re.fullmatch(r"Dataset\d{3}_[A-Za-z0-9_-]+", name):
        raise InputError(f"'{name}' is not an nnU-Net dataset name such as Dataset500_myproject")
    root = Path(out) / name
    if root.exists():
        raise InputError(f"'{root}' already exists; choose another --out or --name")
    classes = {"binary": store.class_names[:1], "brats": ["NCR", "ED", "ET"]}.get(
        store.task, store.class_names
    )
    staging = root.with_name(f".partial-{os.getpid()}-{name}")
    labelled = 0
    for cube_name in store.names():
        cube = store[cube_name]
        has_label = cube.label is not None and cube.split != "test"
        folder = staging / ("imagesTr" if has_label else "imagesTs")
        folder.mkdir(parents=True, exist_ok=True)
        affine, image = cube_affine(cube.attrs), cube.image[...]
        for c, channel in enumerate(image):
            _save(channel, affine, folder / f"{cube_name}_{c:04d}.nii.gz")
        if has_label:
            (staging / "labelsTr").mkdir(exist_ok=True)
            _save(
                _exclusive(cube.label[...], store.task, cube_name),
                affine,
                staging / "labelsTr" / f"{cube_name}.nii.gz",
                np.uint8,
            )
            labelled += 1
    meta = {"channel_names": {str(i): n for i, n in enumerate(store.channel_names)},
            "labels": {"background": 0, **{n: i for i, n in enumerate(classes, start=1)}},
            "numTraining": labelled, "file_ending": ".nii.gz"}  # fmt: skip
    (staging / "dataset.json").write_text(json.dumps(meta, indent=2))
    staging.rename(root)
    return root


def _exclusive(label: np.ndarray, task: str, cube: str) -> np.ndarray:
    """The store's label as nnU-Net's exclusive values 0..K."""
    if task in ("binary", "brats"):
        return label
    out = np.zeros_like(label)
    for value in np.unique(label[label > 0]).tolist():
        if value & (value - 1):
            raise InputError(f"cube '{cube}' has voxels of several classes at once; nnU-Net's are exclusive")
        out[label == value] = int(value).bit_length()
    return out


def _save(zyx: np.ndarray, affine: np.ndarray, path: Path, dtype=np.float32) -> None:
    nib.save(nib.Nifti1Image(np.ascontiguousarray(zyx.transpose(2, 1, 0)).astype(dtype), affine), str(path))
