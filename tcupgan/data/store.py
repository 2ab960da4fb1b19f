"""The cube store: one Zarr v3 group that every tcupgan step reads and writes.

Layout on disk (a directory; any file system that renames directories atomically)::

    project.zarr/                 root group, attrs: format, task, channel_names, class_names
      case-001/                   one group per cube, an OME-Zarr image; attrs: spacing, split, ...
        image                     float32 (C, D, H, W)
        labels/label/0            uint8   (D, H, W)   optional; an OME-Zarr image-label
        labels/prediction/0, labels/corrections/0     label maps added by later steps
        probability, slice_<score>, ...               other arrays added by later steps

Arrays are named by key everywhere (``cube["label"]``); where a key lives on disk is this module's
business (:func:`array_path`), and the OME-Zarr (NGFF 0.5) metadata is written with each array
(:mod:`tcupgan.data.ngff`), so napari and other viewers open ``project.zarr/case-001`` directly.

Why this shape:
  * Depth (D) is the ConvLSTM's time axis and the axis volunteers see as slices, so it is the second axis
    of ``image`` and the first of ``label``; a 2D image is a cube with D = 1.
  * Chunks span all channels, a few slices and an in-plane tile, so reading one slice or one training
    crop touches a handful of small chunks (see :func:`default_chunks`).
  * Every cube and every array added to a cube is written under ``.staging/`` and renamed into place
    only when complete. A crash leaves at most an invisible staging folder, never a half cube, and
    :meth:`CubeStore.names` lists cubes by scanning directories, so opening a store of thousands of
    cubes reads no array data.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from tcupgan.data.ngff import LABEL_ARRAYS, image_metadata, label_metadata, labels_list
from tcupgan.errors import CubeExistsError, CubeNotFoundError, InputError, StoreError

__all__ = ["TASKS", "Cube", "CubeStore", "StoreSpec", "assign_split", "default_chunks"]

FORMAT = "tcupgan-cubestore"
FORMAT_VERSION = 2  # 2: OME-Zarr metadata, label maps under labels/ (`tcupgan migrate` upgrades 1)
TASKS = ("binary", "brats", "multilabel")
SPLITS = ("train", "val", "test")
STAGING = ".staging"
JOURNAL = "journal.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")


def default_chunks(shape: Sequence[int], plane: int = 256, depth: int = 2) -> tuple[int, ...]:
    """Chunk shape for an array whose last three axes are (D, H, W).

    Leading axes (channels, classes) stay whole so that one read returns every modality of a voxel.
    Zarr pays a fixed cost per chunk (~0.3 ms here), so chunks are whole planes up to 256 x 256 and
    two slices deep: a random slice of a 4 x 155 x 240 x 240 BraTS cube is one 1.8 MB chunk, and a
    64^3 training crop 32 chunks (``tools/bench/store_io.py`` measured 1- to 4-slice and 64- to
    256-pixel tilings; this one reads random slices fastest short of one-slice chunks, which halve
    crop speed). Smaller planes get deeper chunks holding as many voxels (a 64 x 64 cube: 32 slices),
    or writing a cube of them would pay the per-chunk cost hundreds of times.
    """
    if len(shape) < 3:  # per-slice vectors and small tables: one chunk
        return tuple(max(1, int(s)) for s in shape)
    *lead, d, h, w = (int(s) for s in shape)
    ch, cw = max(1, min(h, plane)), max(1, min(w, plane))
    deep = max(depth, plane * plane * depth // (ch * cw))
    return (*lead, max(1, min(d, deep)), ch, cw)


def intensity_stats(image: np.ndarray) -> dict[str, list[float]]:
    """Per-channel 1st/99th percentiles, stored with each cube so every step normalises it alike.

    Computed once at write time on every second voxel along each axis (ample for percentiles), so
    training crops and prediction slabs never need a pass over the whole cube.
    """
    sample = image[:, ::2, ::2, ::2].reshape(image.shape[0], -1).astype(np.float32)
    lo, hi = np.percentile(sample, [1, 99], axis=1)
    return {"p1": lo.tolist(), "p99": hi.tolist()}


def compressor() -> BloscCodec:
    """Blosc-zstd with byte shuffle: good ratios on smooth image data at memcpy-like decode speed."""
    return BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")


def assign_split(name: str, fractions: Sequence[float] = (0.7, 0.15, 0.15)) -> str:
    """A stable train/val/test split from the cube name alone.

    Hashing the name (not a random draw) keeps a cube in the same split whatever order or batch it was
    ingested in, so re-ingesting or adding cases never leaks a test cube into training.
    """
    u = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    edges = np.cumsum(fractions) / np.sum(fractions)
    return SPLITS[int(np.searchsorted(edges, u, side="right").clip(0, 2))]


def check_label_values(label: np.ndarray, task: str, n_classes: int, where: str) -> None:
    """Raise :class:`InputError` when ``label`` holds values the store's task does not allow."""
    allowed = {"binary": 1, "brats": 3, "multilabel": (1 << n_classes) - 1}[task]
    top = int(label.max(initial=0))
    if top > allowed:
        bad = np.unique(label[label > allowed])[:5].tolist()
        raise InputError(
            f"{where}: label values {bad} are not valid for task '{task}' (allowed 0..{allowed}); "
            "check the label file or ingest into a store of another task"
        )


@dataclass(frozen=True)
class StoreSpec:
    """What a store holds (task, channel and class names): the invariants every cube is checked against.

    A spec exists before its store does, so ingestion can validate a first case and only then create the
    store; a store's own writes go through the same :meth:`validate`.
    """

    task: str
    channel_names: tuple[str, ...]
    class_names: tuple[str, ...]

    def open(self, path: str | os.PathLike) -> CubeStore:
        """Create the store, or open an existing one after checking that it holds this spec."""
        return CubeStore.create(
            path,
            task=self.task,
            channel_names=self.channel_names,
            class_names=self.class_names,
            exist_ok=True,
        )

    def validate(self, name: str, image: np.ndarray, label: np.ndarray | None) -> None:
        """Raise :class:`InputError` naming the cube when it breaks the spec (shape, dtype, NaN, labels)."""
        if not _NAME.match(name):
            raise InputError(f"cube name '{name}' must be letters, digits, '.', '_', '+' or '-'")
        n_channels = len(self.channel_names)
        if image.ndim != 4 or image.shape[0] != n_channels:
            raise InputError(
                f"{name}: image has shape {image.shape}; the store expects (C={n_channels}, D, H, W)"
            )
        if not np.issubdtype(image.dtype, np.number) or np.iscomplexobj(image):
            raise InputError(f"{name}: image dtype {image.dtype} is not a real number type")
        finite = np.isfinite(image)
        if not finite.all():
            where = np.argwhere(~finite)[0].tolist()
            raise InputError(
                f"{name}: image has {int((~finite).sum())} NaN/Inf voxels (first at C,D,H,W={where}); "
                "fix or mask them in the source before ingesting"
            )
        if label is None:
            return
        if label.shape != image.shape[1:]:
            raise InputError(f"{name}: label shape {label.shape} != image shape (D, H, W) {image.shape[1:]}")
        if not np.issubdtype(label.dtype, np.integer):
            raise InputError(f"{name}: label dtype {label.dtype} is not an integer type")
        if label.min(initial=0) < 0:
            raise InputError(f"{name}: label has negative values")
        check_label_values(label, self.task, len(self.class_names), name)


class Cube:
    """A lazy handle on one cube: arrays are read only when sliced.

    ``cube.image[:, 10]`` reads slice 10 of every channel as a NumPy array; ``cube.attrs`` is a plain
    dict of the cube's metadata.
    """

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self._group = zarr.open_group(str(path), mode="r")

    def __repr__(self) -> str:
        return f"Cube({self.name!r}, shape={self.shape}, arrays={self.keys()})"

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._group.attrs)

    @property
    def split(self) -> str:
        return str(self.attrs.get("split", "train"))

    def keys(self) -> list[str]:
        plain = [p.name for p in self.path.iterdir() if p.name != "labels" and (p / "zarr.json").is_file()]
        return sorted(plain + [key for key in LABEL_ARRAYS if key in self])

    def __contains__(self, key: str) -> bool:
        return (_in_flight(self.path.parent, array_path(self.path, key)) / "zarr.json").is_file()

    def __getitem__(self, key: str) -> zarr.Array:
        if key not in self:
            raise CubeNotFoundError(f"cube '{self.name}' has no array '{key}' (it has {self.keys()})")
        return zarr.open_array(str(_in_flight(self.path.parent, array_path(self.path, key))), mode="r")

    @property
    def image(self) -> zarr.Array:
        """float32 (C, D, H, W)."""
        return self["image"]

    @property
    def label(self) -> zarr.Array | None:
        """uint8 (D, H, W), or None for an unlabelled cube."""
        if "label" not in self:
            return None
        return self["label"]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(self.attrs["shape"])  # type: ignore[return-value]

    @property
    def corrected_slices(self) -> list[int]:
        """Slices volunteers corrected (the provenance that ``tcupgan harvest`` keeps on ``corrections``)."""
        if "corrections" not in self:
            return []
        return sorted(int(z) for z in self["corrections"].attrs.get("slices", {}))


class CubeStore:
    """The one way tcupgan reads and writes cubes.

    Args:
        path: the store directory (``*.zarr`` by convention).
        mode: ``"r"`` to read, ``"r+"`` to add or change cubes.

    Example:
        >>> store = CubeStore.create("demo.zarr", task="binary", channel_names=["em"],
        ...                          class_names=["lipid droplet"])
        >>> store.write_cube("c0", image, label, attrs={"spacing": [1.0, 1.0, 1.0]})
        >>> store["c0"].image[:, 5]   # one slice, read lazily
    """

    def __init__(self, path: str | os.PathLike, mode: str = "r") -> None:
        self.path = Path(path)
        self.mode = mode
        meta = self.path / "zarr.json"
        if not meta.is_file():
            raise StoreError(
                f"no cube store at '{self.path}'; create one with `tcupgan ingest` or `tcupgan synth`"
            )
        attrs = dict(zarr.open_group(str(self.path), mode="r").attrs)
        if attrs.get("format") != FORMAT:
            raise StoreError(f"'{self.path}' is a Zarr group but not a tcupgan cube store")
        if attrs.get("format_version", 0) > FORMAT_VERSION:
            raise StoreError(
                f"'{self.path}' was written by a newer tcupgan (format {attrs['format_version']}); upgrade"
            )
        if attrs.get("format_version", 0) < FORMAT_VERSION:
            raise StoreError(
                f"'{self.path}' was written by an older tcupgan (format {attrs.get('format_version', 0)}); "
                f"upgrade it in place with `tcupgan migrate {self.path}`"
            )
        self.attrs: dict[str, Any] = attrs

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        *,
        task: str,
        channel_names: Sequence[str],
        class_names: Sequence[str],
        exist_ok: bool = False,
        **extra_attrs: Any,
    ) -> CubeStore:
        """Create an empty store, or open an existing one whose task and channels match."""
        if task not in TASKS:
            raise StoreError(f"unknown task '{task}'; choose one of {TASKS}")
        if task == "multilabel" and len(class_names) > 8:
            raise StoreError("multilabel stores hold at most 8 classes (labels are uint8 bit flags)")
        path = Path(path)
        wanted = {"task": task, "channel_names": list(channel_names), "class_names": list(class_names)}
        if cls.exists(path):
            if not exist_ok:
                raise CubeExistsError(f"store '{path}' already exists; pass --overwrite or another path")
            store = cls(path, mode="r+")
            have = {k: store.attrs.get(k) for k in wanted}
            if have != wanted:
                raise StoreError(
                    f"store '{path}' holds {have}, not {wanted}; ingest into a new store instead"
                )
            return store
        if path.exists() and any(path.iterdir()):
            raise StoreError(f"'{path}' exists and is not an empty directory; choose a new store path")
        root = zarr.open_group(str(path), mode="w")
        _merge_attrs(root, {"format": FORMAT, "format_version": FORMAT_VERSION, **wanted, **extra_attrs})
        return cls(path, mode="r+")

    @staticmethod
    def exists(path: str | os.PathLike) -> bool:
        """Whether a store lives at ``path`` (its root metadata is there)."""
        return (Path(path) / "zarr.json").exists()

    # ------------------------------------------------------------------ reading
    @property
    def task(self) -> str:
        return str(self.attrs["task"])

    @property
    def spec(self) -> StoreSpec:
        return StoreSpec(self.task, tuple(self.channel_names), tuple(self.class_names))

    @property
    def channel_names(self) -> list[str]:
        return list(self.attrs["channel_names"])

    @property
    def class_names(self) -> list[str]:
        return list(self.attrs["class_names"])

    def names(self, split: str | None = None) -> list[str]:
        """Names of the complete cubes, sorted; reads only directory entries (and attrs if ``split``)."""
        names = sorted(
            e.name
            for e in os.scandir(self.path)
            if e.is_dir() and not e.name.startswith(".") and os.path.isfile(os.path.join(e.path, "zarr.json"))
        )
        if split is None:
            return names
        return [n for n in names if self[n].split == split]

    def __len__(self) -> int:
        return len(self.names())

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __contains__(self, name: object) -> bool:
        return bool(
            isinstance(name, str) and _NAME.match(name) and (self.path / name / "zarr.json").is_file()
        )

    def __getitem__(self, name: str) -> Cube:
        if name not in self:
            raise CubeNotFoundError(f"no cube '{name}' in store '{self.path}' (see `tcupgan info`)")
        return Cube(name, self.path / name)

    def __repr__(self) -> str:
        return f"CubeStore('{self.path}', task={self.task!r}, channels={self.channel_names})"

    # ------------------------------------------------------------------ writing
    def _writable(self) -> None:
        if self.mode == "r":
            raise StoreError(f"store '{self.path}' was opened read-only; open it with mode='r+'")

    @contextmanager
    def _staged(self, final: Path, overwrite: bool) -> Iterator[Path]:
        """Yield a staging path; on clean exit rename it to ``final`` (atomic on one file system)."""
        self._writable()
        if final.exists() and not overwrite:
            raise CubeExistsError(f"'{final.relative_to(self.path)}' already exists in '{self.path}'")
        stage = self.path / STAGING / uuid.uuid4().hex
        stage.mkdir(parents=True)
        target = stage / final.name
        try:
            yield target
            if final.exists():
                if not overwrite:
                    raise CubeExistsError(f"'{final.relative_to(self.path)}' appeared while writing")
                # two renames swap old for new; the journal lets readers and recover_staging finish a
                # swap that a crash cut in half (the new copy is complete once the journal exists)
                journal = {"final": str(final.relative_to(self.path)), "new": target.name}
                (stage / JOURNAL).write_text(json.dumps(journal))
                os.rename(final, stage / f"replaced-{final.name}")
            os.rename(target, final)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
            with suppress(OSError):
                (self.path / STAGING).rmdir()  # only when no other writer is using it

    def write_cube(
        self,
        name: str,
        image: np.ndarray,
        label: np.ndarray | None = None,
        *,
        attrs: Mapping[str, Any] | None = None,
        arrays: Mapping[str, np.ndarray] | None = None,
        overwrite: bool = False,
    ) -> Cube:
        """Validate and atomically write one cube.

        Args:
            name: cube name (letters, digits, ``._+-``).
            image: (C, D, H, W), any real dtype; stored as float32.
            label: (D, H, W) integer values allowed by the store's task; stored as uint8.
            attrs: cube metadata (spacing as (z, y, x) in mm, affine, sources, split ...).
            arrays: further arrays to store with the cube (e.g. volunteer vote fractions).
            overwrite: replace an existing cube of that name.
        """
        self.spec.validate(name, image, label)
        attrs = dict(attrs or {})
        attrs.setdefault("split", assign_split(name))
        attrs.setdefault("spacing", [1.0, 1.0, 1.0])
        attrs["shape"] = list(image.shape)
        attrs["labelled"] = label is not None
        attrs["intensity"] = intensity_stats(image)
        attrs["ome"] = image_metadata(name, attrs, self.channel_names)
        arrays = {
            **({"label": label.astype(np.uint8, copy=False)} if label is not None else {}),
            **(arrays or {}),
        }
        with self._staged(self.path / name, overwrite) as target:
            group = zarr.open_group(str(target), mode="w")
            _merge_attrs(group, attrs)
            _put(target, "image", image.astype(np.float32, copy=False))
            for key, value in arrays.items():
                if key in LABEL_ARRAYS:
                    _label_group(target, key, attrs, self.task, self.class_names)
                _put(target, key, value)
            _list_labels(target)
        return self[name]

    @contextmanager
    def array_writer(
        self,
        cube: str,
        key: str,
        shape: Sequence[int],
        dtype: Any,
        *,
        chunks: Sequence[int] | None = None,
        attrs: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> Iterator[zarr.Array]:
        """Stream an array into a cube slab by slab; it becomes visible only when the block exits cleanly.

        Use for arrays too large to hold in memory (predictions of big cubes)::

            with store.array_writer("c0", "prediction", (3, D, H, W), "uint8") as out:
                for z in range(0, D, 8):
                    out[:, z:z + 8] = predict_slab(z)
        """
        if cube not in self:
            raise CubeNotFoundError(f"no cube '{cube}' in store '{self.path}'")
        if key == "image" or not _NAME.match(key):
            raise StoreError(f"cannot write array '{key}' (reserved or invalid name)")
        cube_path = self.path / cube
        if key in LABEL_ARRAYS:
            _label_group(cube_path, key, self[cube].attrs, self.task, self.class_names)
        with self._staged(array_path(cube_path, key), overwrite) as target:
            yield _new_array(target, shape, dtype, chunks, attrs)
        if key in LABEL_ARRAYS:
            _list_labels(cube_path)

    def write_array(self, cube: str, key: str, data: np.ndarray, **kwargs: Any) -> None:
        """Atomically add (or with ``overwrite=True`` replace) one array of a cube."""
        with self.array_writer(cube, key, data.shape, data.dtype, **kwargs) as out:
            out[...] = data

    def update_attrs(self, cube: str, **attrs: Any) -> None:
        """Merge metadata into a cube's attributes (e.g. a new split)."""
        self._writable()
        _merge_attrs(zarr.open_group(str(self[cube].path), mode="r+"), attrs)

    def delete(self, cube: str) -> None:
        """Remove a cube; it disappears from :meth:`names` at once (rename first, then delete)."""
        self._writable()
        path = self[cube].path
        trash = self.path / STAGING / f"deleted-{uuid.uuid4().hex}"
        trash.parent.mkdir(exist_ok=True)
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)
        with suppress(OSError):
            trash.parent.rmdir()

    def clean_staging(self) -> dict[str, list[str]]:
        """Finish or discard what interrupted writers left under ``.staging``: a replacement cut between
        its two renames is completed (``restored``, the new copy was whole), anything else was never
        visible and goes (``removed``). Only call this when no other process is writing to the store."""
        self._writable()
        report: dict[str, list[str]] = {"restored": [], "removed": []}
        stage = self.path / STAGING
        for folder in sorted(stage.iterdir()) if stage.exists() else []:
            final = _pending_final(self.path, folder)
            if final is not None and not final.exists():
                os.rename(folder / json.loads((folder / JOURNAL).read_text())["new"], final)
                report["restored"].append(str(final.relative_to(self.path)))
            else:
                report["removed"].append(folder.name)
            shutil.rmtree(folder, ignore_errors=True)
        with suppress(OSError):
            stage.rmdir()
        return report

    def leftovers(self) -> int:
        """How many interrupted writes wait under ``.staging`` (``tcupgan info`` warns about them)."""
        stage = self.path / STAGING
        return sum(1 for _ in stage.iterdir()) if stage.exists() else 0

    def summary(self) -> list[dict[str, Any]]:
        """One row per cube (name, shape, split, arrays) for ``tcupgan info``; reads attributes only."""
        rows = []
        for name in self.names():
            cube = self[name]
            rows.append({"cube": name, "shape": cube.shape, "split": cube.split, "arrays": cube.keys()})
        return rows


def _pending_final(root: Path, folder: Path) -> Path | None:
    """The path a staging folder's journal says it was swapping into place, if it has a journal."""
    journal = folder / JOURNAL
    if not journal.is_file():
        return None
    return root / json.loads(journal.read_text())["final"]


def _in_flight(root: Path, path: Path) -> Path:
    """``path`` (in the store at ``root``), or while a replacement of it is between its two renames, the
    new copy waiting in ``.staging``, so a reader never finds the array missing."""
    if path.exists() or not (root / STAGING).is_dir():
        return path
    for folder in sorted((root / STAGING).iterdir()):
        if _pending_final(root, folder) == path:
            return folder / json.loads((folder / JOURNAL).read_text())["new"]
    return path


def array_path(cube_path: Path, key: str) -> Path:
    """Where array ``key`` of the cube at ``cube_path`` lives: label maps as NGFF image-labels."""
    return cube_path / "labels" / key / "0" if key in LABEL_ARRAYS else cube_path / key


def _label_group(
    cube_path: Path, key: str, attrs: Mapping[str, Any], task: str, classes: Sequence[str]
) -> None:
    """The NGFF groups a label map lives in (``labels`` and ``labels/<key>``), with their metadata; written
    before the array, which is what makes the map visible."""
    zarr.open_group(str(cube_path / "labels"), mode="a")
    group = zarr.open_group(str(cube_path / "labels" / key), mode="a")
    group.attrs["ome"] = _jsonable(label_metadata(key, dict(attrs), task, classes))


def _list_labels(cube_path: Path) -> None:
    """Record in ``labels`` which label maps the cube holds (NGFF's list for viewers)."""
    present = [key for key in LABEL_ARRAYS if (array_path(cube_path, key) / "zarr.json").is_file()]
    if present:
        zarr.open_group(str(cube_path / "labels"), mode="a").attrs["ome"] = labels_list(present)


def migrate_store(path: str | os.PathLike) -> dict[str, int]:
    """Upgrade a store of an older format in place (``tcupgan migrate``); a current store is left as it
    is. Format 1 → 2: each label map moves by one rename to its NGFF place and the OME-Zarr metadata is
    written. The store's version changes last, so an interrupted run leaves a store that only
    ``migrate`` opens, and running it again finishes the job."""
    path = Path(path)
    if not CubeStore.exists(path):
        raise StoreError(f"no cube store at '{path}'")
    root = zarr.open_group(str(path), mode="r+")
    attrs = dict(root.attrs)
    if attrs.get("format") != FORMAT:
        raise StoreError(f"'{path}' is a Zarr group but not a tcupgan cube store")
    report = {"cubes": 0, "label_maps_moved": 0}
    if attrs.get("format_version", 0) >= FORMAT_VERSION:
        return report
    task, classes, channels = attrs["task"], attrs["class_names"], attrs["channel_names"]
    for cube in sorted(p for p in path.iterdir() if _NAME.match(p.name) and (p / "zarr.json").is_file()):
        group = zarr.open_group(str(cube), mode="r+")
        cube_attrs = dict(group.attrs)
        for key in LABEL_ARRAYS:
            if (cube / key / "zarr.json").is_file():
                _label_group(cube, key, cube_attrs, task, classes)
                os.rename(cube / key, array_path(cube, key))
                report["label_maps_moved"] += 1
        group.attrs["ome"] = _jsonable(image_metadata(cube.name, cube_attrs, channels))
        _list_labels(cube)
        report["cubes"] += 1
    root.attrs["format_version"] = FORMAT_VERSION
    return report


def _new_array(
    path: Path,
    shape: Sequence[int],
    dtype: Any,
    chunks: Sequence[int] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> zarr.Array:
    """An empty array in the store's chunking and compression, its attributes in its first metadata write."""
    return zarr.create_array(
        store=str(path), shape=tuple(shape), dtype=dtype, chunks=tuple(chunks or default_chunks(shape)),
        compressors=compressor(), fill_value=0, attributes=_jsonable(dict(attrs or {})),
    )  # fmt: skip


def _put(cube_path: Path, key: str, data: np.ndarray) -> None:
    _new_array(array_path(cube_path, key), data.shape, data.dtype)[...] = data


def _merge_attrs(node: zarr.Array | zarr.Group, attrs: Mapping[str, Any]) -> None:
    """Merge ``attrs`` into a node's attributes with one metadata write (``node.attrs.update`` rewrites
    the metadata file once per key: 49 writes, 50 ms, for each predicted cube)."""
    node.update_attributes(_jsonable(dict(attrs)))


def _jsonable(value: Any) -> Any:
    """Turn NumPy scalars/arrays and paths in metadata into plain JSON types."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value
