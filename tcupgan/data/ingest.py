"""Ingestion: source files → validated cubes in a :class:`~tcupgan.data.store.CubeStore`.

Every entry point works in two passes. The first checks what is cheap to check for the whole batch
(files present, modalities complete, header shapes agree) so that a broken batch is refused before the
store changes. The second reads each case, validates its voxels (NaN/Inf, label values, shape agreement)
and only then writes it atomically. A case already in the store is skipped unless ``overwrite``, so an
interrupted ingest is resumed by running it again.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from tcupgan.data.locks import store_lock
from tcupgan.data.readers import IMAGE_SUFFIXES, Volume, nifti_header, read_image, read_nifti, read_stack
from tcupgan.data.store import CubeStore, StoreSpec
from tcupgan.errors import InputError, MissingModalityError

__all__ = ["IngestReport", "ingest_cases", "ingest_brats", "ingest_tiff", "ingest_images", "BRATS_MODALITIES"]

log = logging.getLogger(__name__)

#: Channel order of every BraTS store: fixed, so a model trained on one store reads another correctly.
BRATS_MODALITIES = ("t1c", "t1n", "t2f", "t2w")
BRATS_REGIONS = ("ET", "TC", "WT")
_LEGACY_NAMES = {"t1ce": "t1c", "t1": "t1n", "flair": "t2f", "t2": "t2w"}
_BRATS_FILE = re.compile(
    r"^(?P<case>.+?)[-_](?P<kind>t1c|t1n|t2f|t2w|t1ce|t1|t2|flair|seg)\.nii(\.gz)?$", re.IGNORECASE
)


@dataclass
class IngestReport:
    """What an ingest did: cubes written and cubes skipped because they were already there."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{len(self.written)} cube(s) written, {len(self.skipped)} already present (skipped)"


def ingest_cases(
    store_path: str | Path,
    spec: StoreSpec,
    cases: Sequence[tuple[str, Any]],
    load: Callable[[str, Any], tuple],
    overwrite: bool,
    desc: str,
    image_source: Callable[[Any], str] | None = None,
) -> IngestReport:
    """Shared second pass: load, validate and write each case that is not already in the store.

    ``load(name, source)`` returns (image, label or None, attrs[, further arrays]). An existing store is
    checked against ``spec`` before anything else; a new one is created only once the first case has
    passed validation, so a failed ingest never leaves an empty store behind. ``image_source(source)``:
    the image file a case's cube records; a cube of that name that came from another file is not "already
    present" but a collision of names, refused before anything is written.
    """
    names = [name for name, _ in cases]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"several sources map to the same cube name: {dupes}; rename the files")
    with store_lock(store_path, "store"):  # a second ingest into this store waits, then skips what is there
        store = spec.open(store_path) if CubeStore.exists(store_path) else None
        if store is not None and image_source is not None and not overwrite:
            _refuse_name_collisions(store, cases, image_source)
        report = IngestReport()
        for name, source in tqdm(cases, desc=desc, unit="cube", disable=None):
            if store is not None and name in store and not overwrite:
                report.skipped.append(name)
                continue
            image, label, attrs, *arrays = load(name, source)
            if store is None:  # validate before the store exists, so a bad first case leaves nothing behind
                spec.validate(name, image, label)
                store = spec.open(store_path)
            store.write_cube(name, image, label, attrs=attrs, arrays=arrays[0] if arrays else None,
                             overwrite=overwrite)  # fmt: skip
            report.written.append(name)
        return report


def _refuse_name_collisions(
    store: CubeStore, cases: Sequence[tuple[str, Any]], image_source: Callable
) -> None:
    """One line naming the first case whose cube name the store already holds for a file of another
    name (by name, not path: a rerun from another folder is the same source)."""
    for name, source in cases:
        if name in store:
            held = store[name].attrs.get("sources", {}).get("image")
            new = image_source(source)
            if held is not None and Path(held).name != Path(new).name:
                raise InputError(
                    f"'{new}' would be cube '{name}', which already holds '{held}': rename the file or "
                    "give the cubes names (--names); nothing was written"
                )


# ---------------------------------------------------------------------------------------------- BraTS
def find_brats_cases(src: Path) -> dict[str, dict[str, Path]]:
    """Map case name → {modality or 'seg': file} for a folder of case folders (or a single case folder).

    Accepts the 2023 names (``t1c, t1n, t2f, t2w``) and the older ones (``t1ce, t1, flair, t2``).
    """
    src = Path(src)
    if not src.is_dir():
        raise InputError(f"'{src}' is not a folder; point `ingest brats` at the folder of case folders")
    files = [p for p in src.rglob("*.nii*") if p.is_file()]
    cases: dict[str, dict[str, Path]] = {}
    for path in sorted(files):
        m = _BRATS_FILE.match(path.name)
        if not m:
            continue
        kind = m["kind"].lower()
        kind = _LEGACY_NAMES.get(kind, kind)
        entry = cases.setdefault(m["case"], {})
        if kind in entry:
            raise InputError(f"case '{m['case']}' has two '{kind}' files: {entry[kind]} and {path}")
        entry[kind] = path
    if not cases:
        raise InputError(
            f"no BraTS files under '{src}'; expected <case>/<case>-t1c.nii.gz, -t1n, -t2f, -t2w (and -seg)"
        )
    return cases


def _check_brats_case(case: str, files: dict[str, Path], allow_missing: bool) -> None:
    """First pass for one case: modalities complete, every header the same 3D shape and affine."""
    missing = [m for m in BRATS_MODALITIES if m not in files]
    if missing and (not allow_missing or len(missing) == len(BRATS_MODALITIES)):
        raise MissingModalityError(
            f"case '{case}' lacks modalities {missing} (found {sorted(files)}); "
            "add the files or pass --allow-missing to fill them with zeros"
        )
    ref = None
    for kind, path in files.items():
        img = nifti_header(path)
        if ref is None:
            ref = (kind, img.shape, img.affine)
        elif img.shape != ref[1]:
            raise InputError(f"case '{case}': {kind} has shape {img.shape} but {ref[0]} has {ref[1]}")
        elif not np.allclose(img.affine, ref[2], atol=1e-3):
            raise InputError(f"case '{case}': {kind} and {ref[0]} have different affines (not co-registered)")


#: BraTS label conventions → (values they use, map to the 2023 values: 1 NCR, 2 ED, 3 ET).
BRATS_CONVENTIONS = {
    "2023": ({0, 1, 2, 3}, {}),
    "2017": ({0, 1, 2, 4}, {4: 3}),  # 2017-2022: 1 NCR/NET, 2 ED, 4 ET
    "2015": ({0, 1, 2, 3, 4}, {3: 1, 4: 3}),  # 2012-2016: 1 necrosis, 2 ED, 3 non-enhancing, 4 ET
}


def brats_label(seg: np.ndarray, case: str, convention: str = "auto") -> np.ndarray:
    """Check a BraTS segmentation against its label convention and map it to the 2023 values.

    ``auto`` reads 2023 labels as they are and 2017-2022 labels (4 for enhancing tumour, no 3) as 2017;
    a segmentation using both 3 and 4 is BraTS 2012-2016's and needs ``convention="2015"`` said aloud,
    since its 3 (non-enhancing tumour, merged into the tumour core's 1) means something else.
    """
    if not np.allclose(seg, np.round(seg)):
        raise InputError(f"case '{case}': segmentation has non-integer values")
    seg = np.round(seg).astype(np.int16)
    values = set(np.unique(seg).tolist())
    if convention == "auto":
        convention = "2017" if 4 in values and 3 not in values else "2023"
        if convention == "2017":
            log.warning("case '%s': label 4 read as BraTS 2017-2022 enhancing tumour, stored as 3", case)
        if {3, 4} <= values:
            raise InputError(
                f"case '{case}': segmentation uses both 3 and 4, as BraTS 2012-2016 did (3 non-enhancing "
                "tumour); ingest it with --labels 2015"
            )
    if convention not in BRATS_CONVENTIONS:
        raise InputError(f"unknown BraTS label convention {convention!r}; use 2015, 2017 or 2023")
    allowed, mapping = BRATS_CONVENTIONS[convention]
    if not values <= allowed:
        raise InputError(
            f"case '{case}': segmentation values {sorted(values - allowed)} are not BraTS {convention} "
            f"labels ({sorted(allowed)}); check --labels"
        )
    out = seg.copy()
    for old, new in mapping.items():
        out[seg == old] = new
    return out.astype(np.uint8)


def ingest_brats(
    src: str | Path,
    store_path: str | Path,
    *,
    allow_missing: bool = False,
    overwrite: bool = False,
    split: str | None = None,
    labels: str = "auto",
) -> IngestReport:
    """Ingest BraTS case folders into a store of task ``brats`` with channels t1c, t1n, t2f, t2w;
    segmentations in the ``labels`` convention (``auto``, ``2015``, ``2017``, ``2023``; see
    :func:`brats_label`) are stored in 2023's."""
    if labels != "auto" and labels not in BRATS_CONVENTIONS:
        raise InputError(f"unknown BraTS label convention {labels!r}; use auto, 2015, 2017 or 2023")
    cases = find_brats_cases(Path(src))
    for case, files in cases.items():
        _check_brats_case(case, files, allow_missing)
    spec = StoreSpec("brats", BRATS_MODALITIES, BRATS_REGIONS)

    def load(case: str, files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
        volumes = {m: read_nifti(p) for m, p in files.items() if m != "seg"}
        first = next(iter(volumes.values()))
        zeros = np.zeros_like(first.data)
        image = np.stack([volumes[m].data if m in volumes else zeros for m in BRATS_MODALITIES])
        label = brats_label(read_nifti(files["seg"]).data, case, labels) if "seg" in files else None
        attrs = {
            **first.meta,
            "sources": {k: str(p) for k, p in files.items()},
            "missing_channels": [m for m in BRATS_MODALITIES if m not in volumes],
        }
        if split:
            attrs["split"] = split
        return image, label, attrs

    return ingest_cases(store_path, spec, sorted(cases.items()), load, overwrite, "ingest brats")


# ---------------------------------------------------------------------------------------- label rules
def to_label(data: np.ndarray, mode: str, where: str) -> np.ndarray:
    """Turn a label stack into uint8 class values.

    ``binary``: anything non-zero is foreground (masks saved as 0/255, or instance ids, become 0/1).
    ``values``: keep the integer values as they are (BraTS labels, multilabel bit flags).
    """
    if data.shape[0] != 1:
        raise InputError(f"{where}: label has {data.shape[0]} channels; labels must be single-channel")
    data = data[0]
    if not np.issubdtype(data.dtype, np.integer) and not np.array_equal(data, np.round(data)):
        raise InputError(f"{where}: label has non-integer values; labels must be class ids or 0/1 masks")
    if mode == "binary":
        return (data != 0).astype(np.uint8)
    if mode != "values":
        raise InputError(f"label mode '{mode}' is not 'binary' or 'values'")
    if data.min() < 0 or data.max() > 255:
        raise InputError(f"{where}: label values span {data.min()}..{data.max()}; must fit 0..255")
    return data.astype(np.uint8)


def _pair(images: Sequence[Path], labels: Sequence[Path] | None) -> list[tuple[Path, Path | None]]:
    if labels is not None and len(labels) != len(images):
        raise InputError(f"{len(images)} image(s) but {len(labels)} label(s); give one label per image")
    return list(zip(images, labels or [None] * len(images), strict=True))


def cube_name(path: Path) -> str:
    """A valid cube name from a file name: suffixes dropped, other characters replaced by '_'."""
    name = path.name
    for suffix in (*IMAGE_SUFFIXES, ".nii.gz", ".nii", ".ome"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name)


def _ingest_pairs(
    pairs: list[tuple[Path, Path | None]],
    store_path: str | Path,
    spec: StoreSpec,
    read: Callable[[Path], Volume],
    *,
    label_mode: str,
    spacing: Sequence[float],
    names: Sequence[str] | None,
    overwrite: bool,
    split: str | None,
    desc: str,
    label_for: Callable[[Path, Volume], np.ndarray] | None = None,
    label_source: str | None = None,
    unit: str | None = None,
) -> IngestReport:
    """Ingest (image, label file) pairs; ``label_for(image path, image)`` makes labels another way (boxes
    from ``label_source``)."""
    for image, label in pairs:  # first pass: every file exists
        for path in (image, label):
            if path is not None and not path.exists():
                raise InputError(f"'{path}' does not exist")
    names = list(names) if names else [cube_name(img) for img, _ in pairs]
    if len(names) != len(pairs):
        raise InputError(f"{len(names)} name(s) for {len(pairs)} image(s)")

    def load(
        name: str, pair: tuple[Path, Path | None]
    ) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
        image_vol = read(pair[0])
        label = to_label(read(pair[1]).data, label_mode, name) if pair[1] is not None else None
        if label_for is not None:
            label = label_for(pair[0], image_vol)
        source = label_source or (str(pair[1]) if pair[1] else None)
        attrs = {
            **image_vol.meta,
            "spacing": [float(s) for s in spacing],
            **({"spacing_unit": unit} if unit else {}),
            "sources": {"image": str(pair[0]), **({"label": source} if source else {})},
        }
        if split:
            attrs["split"] = split
        return image_vol.data, label, attrs

    cases = list(zip(names, pairs, strict=True))
    return ingest_cases(
        store_path, spec, cases, load, overwrite, desc, image_source=lambda pair: str(pair[0])
    )


def _spec_for(
    first: Volume,
    task: str,
    channel_names: Sequence[str] | None,
    class_names: Sequence[str] | None,
    store_path: str | Path,
) -> StoreSpec:
    """Name what the user did not: channels from the first image (grey, RGB or numbered bands), classes
    from the store being extended (so adding cubes needs no repetition), else "foreground"."""
    n_ch = first.data.shape[0]
    if channel_names is None:
        channel_names = {1: ["intensity"], 3: ["red", "green", "blue"]}.get(
            n_ch, [f"band{i}" for i in range(n_ch)]
        )
    if class_names is None:
        class_names = CubeStore(store_path).class_names if CubeStore.exists(store_path) else ["foreground"]
    return StoreSpec(task, tuple(channel_names), tuple(class_names))


def ingest_tiff(
    images: Iterable[str | Path],
    store_path: str | Path,
    *,
    labels: Iterable[str | Path] | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    names: Sequence[str] | None = None,
    task: str = "binary",
    label_mode: str = "binary",
    channel_names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    overwrite: bool = False,
    split: str | None = None,
    unit: str | None = None,
) -> IngestReport:
    """Ingest EM stacks (multi-page TIFF files or folders of slice images) with optional label stacks.

    ``spacing`` is (z, y, x) in ``unit`` (``nm``, ``um`` or ``mm``; recorded for viewers), e.g. 50, 5, 5
    nm for serial-section EM.
    ``class_names`` default to those of the store being extended, else "foreground".
    """
    pairs = _pair([Path(p) for p in images], [Path(p) for p in labels] if labels is not None else None)
    if not pairs:
        raise InputError("no image stacks given")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise InputError(f"spacing {list(spacing)} must be three positive numbers (z y x)")
    if unit not in (None, "nm", "um", "mm"):
        raise InputError(f"unit {unit!r} must be nm, um or mm")
    spec = _spec_for(read_stack(pairs[0][0]), task, channel_names, class_names, store_path)
    return _ingest_pairs(
        pairs,
        store_path,
        spec,
        read_stack,
        label_mode=label_mode,
        spacing=spacing,
        names=names,
        overwrite=overwrite,
        split=split,
        desc="ingest tiff",
        unit=unit,
    )


def read_boxes(path: str | Path) -> dict[str, list[tuple[int, int, int, int]]]:
    """A box-label CSV (columns image, x_min, x_max, y_min, y_max; pixels, inclusive) → boxes per image
    name (file name without suffix). Weak labels such as Floating Forests' kelp boxes."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"box file '{path}' does not exist")
    columns = ("image", "x_min", "x_max", "y_min", "y_max")
    boxes: dict[str, list[tuple[int, int, int, int]]] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not set(columns) <= set(reader.fieldnames):
            raise InputError(f"'{path}' needs the columns {', '.join(columns)}; it has {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            try:
                x0, x1, y0, y1 = (int(float(row[c])) for c in columns[1:])
            except (TypeError, ValueError) as err:
                raise InputError(f"'{path}' line {line}: box coordinates must be numbers ({row})") from err
            if x1 < x0 or y1 < y0 or min(x0, y0) < 0:
                raise InputError(f"'{path}' line {line}: need 0 <= x_min <= x_max and 0 <= y_min <= y_max")
            boxes.setdefault(Path(row["image"]).stem, []).append((x0, x1, y0, y1))
    return boxes


def boxes_to_mask(
    shape: tuple[int, int], boxes: Sequence[tuple[int, int, int, int]], where: str
) -> np.ndarray:
    """Filled boxes (x_min, x_max, y_min, y_max, inclusive) as a (1, H, W) uint8 mask."""
    mask = np.zeros((1, *shape), np.uint8)
    for x0, x1, y0, y1 in boxes:
        if x0 >= shape[1] or y0 >= shape[0]:
            raise InputError(
                f"{where}: box x {x0}-{x1}, y {y0}-{y1} lies outside the {shape[1]}x{shape[0]} image"
            )
        mask[0, y0 : y1 + 1, x0 : x1 + 1] = 1
    return mask


def ingest_images(
    images: Iterable[str | Path],
    store_path: str | Path,
    *,
    masks: Iterable[str | Path] | None = None,
    boxes: str | Path | None = None,
    names: Sequence[str] | None = None,
    task: str = "binary",
    label_mode: str = "binary",
    channel_names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    pixel_scale: float = 1.0,
    overwrite: bool = False,
    split: str | None = None,
) -> IngestReport:
    """Ingest 2D images (galaxy cutouts, satellite tiles) as cubes with D = 1, with optional masks or
    ``boxes``: a CSV of boxes per image (:func:`read_boxes`), filled into masks; images without a box
    get an empty mask, since the CSV lists every object its labeller found. ``class_names`` default to
    those of the store being extended, else "foreground"."""
    given = [Path(p) for p in images]
    paths = [q for p in given for q in (sorted(p.iterdir()) if p.is_dir() else [p])]
    paths = [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES or not p.exists()]
    if masks is not None and boxes is not None:
        raise InputError("give masks or boxes, not both")
    pairs = _pair(paths, [Path(p) for p in masks] if masks is not None else None)
    if not pairs:
        where = ", ".join(map(str, given)) or "the arguments"
        raise InputError(f"no PNG, JPEG or TIFF images in {where}; give image files or folders of them")
    label_for = None
    if boxes is not None:
        table = read_boxes(boxes)
        unknown = sorted(set(table) - {p.stem for p, _ in pairs})
        if unknown:
            raise InputError(f"'{boxes}' has boxes for images not given: {unknown[:5]}")

        def label_for(path: Path, image: Volume) -> np.ndarray:
            return boxes_to_mask(image.data.shape[2:], table.get(path.stem, []), str(path))

    spec = _spec_for(read_image(pairs[0][0]), task, channel_names, class_names, store_path)
    return _ingest_pairs(
        pairs,
        store_path,
        spec,
        read_image,
        label_for=label_for,
        label_source=str(boxes) if boxes is not None else None,
        label_mode=label_mode,
        spacing=(1.0, pixel_scale, pixel_scale),
        names=names,
        overwrite=overwrite,
        split=split,
        desc="ingest images",
    )
