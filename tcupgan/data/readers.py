"""Readers that turn source files into (C, D, H, W) arrays plus the metadata needed to write them back.

Each reader raises :class:`~tcupgan.errors.InputError` naming the file when it cannot be read (missing,
truncated, unknown layout), so ingestion can stop before anything reaches the store.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import tifffile
from PIL import Image

from tcupgan.errors import InputError

__all__ = ["Volume", "read_nifti", "read_stack", "read_image", "natural_key", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_DEPTH_AXES = "ZQITP"  # tifffile's names for a stack axis (Z, pages, images, time, ...)
_CHANNEL_AXES = "CS"


@dataclass
class Volume:
    """Voxels in tcupgan's layout and what it takes to write them back out.

    ``data`` is (C, D, H, W) for images and (D, H, W) for labels; ``meta`` goes into the cube attributes.
    """

    data: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


def natural_key(path: Path) -> list[Any]:
    """Sort ``slice_2.png`` before ``slice_10.png``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def _fail(path: Path, err: Exception) -> InputError:
    return InputError(
        f"cannot read '{path}': {err.__class__.__name__}: {err}. "
        "The file may be truncated or of another format; re-export or re-download it"
    )


def nifti_header(path: Path) -> nib.Nifti1Image:
    """Open a NIfTI file reading only its header (cheap: used to validate a batch before writing)."""
    if not path.is_file():
        raise InputError(f"file '{path}' does not exist")
    try:
        img = nib.load(str(path))
    except Exception as err:  # nibabel raises many types for bad headers
        raise _fail(path, err) from err
    _check_voxel_bytes(path, img)
    return img


def _check_voxel_bytes(path: Path, img: nib.Nifti1Image) -> None:
    """Refuse a header that claims more voxel bytes than the file holds, before anything is allocated (a
    truncated download, or a crafted header claiming gigabytes). A ``.gz`` file's trailer gives its
    uncompressed size (modulo 4 GiB, so only smaller claims are checked there)."""
    header = img.header
    claimed = int(header.get("vox_offset", 0)) + int(np.prod(img.shape)) * header.get_data_dtype().itemsize
    if path.name.lower().endswith(".gz"):
        if claimed >= 2**32 or path.stat().st_size < 18:
            return
        with open(path, "rb") as f:
            f.seek(-4, os.SEEK_END)
            holds = int.from_bytes(f.read(4), "little")
    else:
        holds = path.stat().st_size
    if holds < claimed:
        raise InputError(
            f"'{path}' is truncated or corrupt: its header claims {claimed:,} bytes of voxels "
            f"({'x'.join(map(str, img.shape))} {header.get_data_dtype()}) but the file holds {holds:,}"
        )


def read_nifti(path: Path) -> Volume:
    """Read a 3D NIfTI volume as (D, H, W) = (z, y, x) with its affine, spacing and dtype.

    NIfTI stores arrays as (x, y, z); tcupgan walks z (the acquisition slices) as depth, so the array is
    transposed and the original affine kept for export.
    """
    img = nifti_header(path)
    if len(img.shape) != 3:
        raise InputError(f"'{path}' has shape {img.shape}; expected a 3D volume (x, y, z)")
    try:
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except Exception as err:
        raise _fail(path, err) from err
    return Volume(data=np.ascontiguousarray(data.transpose(2, 1, 0)), meta=nifti_meta(img))


def nifti_meta(img: nib.Nifti1Image) -> dict[str, Any]:
    """A NIfTI image's cube attributes: affine (kept for export), spacing as (z, y, x), unit, dtype."""
    zooms = [round(float(z), 6) for z in img.header.get_zooms()[:3]]  # header holds float32
    return {
        "affine": img.affine.tolist(),
        "spacing": zooms[::-1],
        **nifti_unit(img),
        "source_dtype": str(img.get_data_dtype()),
        "source_format": "nifti",
    }


def nifti_unit(img: nib.Nifti1Image) -> dict[str, str]:
    """``{"spacing_unit": ...}`` from the header's spatial unit, or nothing where it says ``unknown``."""
    unit = img.header.get_xyzt_units()[0]
    return {} if unit in (None, "unknown") else {"spacing_unit": str(unit)}


def _stack_from_array(arr: np.ndarray, axes: str, path: Path) -> np.ndarray:
    """Reorder a tifffile array with axes like 'ZYX', 'ZCYX', 'YXS', 'QYXS' into (C, D, H, W)."""
    axes = axes.upper()
    if "Y" not in axes or "X" not in axes:
        raise InputError(f"'{path}' has axes '{axes}'; expected image planes (Y, X)")
    depth = [i for i, a in enumerate(axes) if a in _DEPTH_AXES]
    chan = [i for i, a in enumerate(axes) if a in _CHANNEL_AXES]
    if len(depth) > 1 or len(chan) > 1 or len(axes) != 2 + len(depth) + len(chan):
        raise InputError(f"'{path}' has axes '{axes}'; tcupgan reads one stack axis and one channel axis")
    order = chan + depth + [axes.index("Y"), axes.index("X")]
    out = arr.transpose(order)
    if not depth:
        out = out[:, None] if chan else out[None]
    if not chan:
        out = out[None]
    return out


def read_stack(path: Path) -> Volume:
    """Read an EM stack: a multi-page TIFF file or a folder of single-slice TIFF/PNG/JPEG files.

    Returns image data as (C, D, H, W) in the file's own dtype; the caller decides on float32 or labels.
    """
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key)
        if not files:
            raise InputError(f"folder '{path}' holds no {'/'.join(IMAGE_SUFFIXES)} slices")
        planes = [read_image(f).data for f in files]
        shapes = {p.shape for p in planes}
        if len(shapes) != 1:
            raise InputError(f"slices in '{path}' differ in shape: {sorted(shapes)}; every slice must match")
        data = np.concatenate(planes, axis=1)
        return Volume(data, {"source_format": "slices", "source_dtype": str(data.dtype)})
    if not path.is_file():
        raise InputError(f"'{path}' does not exist")
    try:
        with tifffile.TiffFile(str(path)) as tif:
            series = tif.series[0]
            data = series.asarray()
            axes = series.axes
    except Exception as err:
        raise _fail(path, err) from err
    data = _stack_from_array(data, axes, path)
    return Volume(data, {"source_format": "tiff", "source_dtype": str(data.dtype)})


def read_image(path: Path) -> Volume:
    """Read a 2D image (PNG/JPEG/TIFF; grey, RGB or multi-band) as (C, 1, H, W).

    An alpha channel carries no signal for segmentation and is dropped.
    """
    if not path.is_file():
        raise InputError(f"'{path}' does not exist")
    if path.suffix.lower() in (".tif", ".tiff"):
        vol = read_stack(path)
        if vol.data.shape[1] != 1:
            raise InputError(f"'{path}' is a stack of {vol.data.shape[1]} planes; use `tcupgan ingest tiff`")
        return vol
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            arr = np.asarray(im)
    except Exception as err:
        raise _fail(path, err) from err
    if mode in ("RGBA", "LA"):
        arr = arr[..., :-1]
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    meta = {"source_format": path.suffix.lower().lstrip("."), "source_dtype": str(arr.dtype)}
    return Volume(arr[:, None], meta)
