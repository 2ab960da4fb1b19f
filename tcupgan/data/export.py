"""Export: cube arrays back to the formats users open in their own tools (NIfTI, TIFF stacks, PNG).

NIfTI exports undo the ingest transpose ((D, H, W) = (z, y, x) → (x, y, z)) and reuse the source affine,
so a BraTS prediction overlays its source scan in any viewer. Image voxels are cast back to the source
dtype when that is lossless, which makes ingest → export reproduce the source voxels exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import tifffile
from PIL import Image

from tcupgan.data.store import CubeStore
from tcupgan.errors import InputError

__all__ = ["export_cube", "read_cube_array", "cube_affine"]

_FORMATS = {".nii": "nifti", ".nii.gz": "nifti", ".tif": "tiff", ".tiff": "tiff", ".png": "png"}


def _format(path: Path) -> str:
    name = path.name.lower()
    for suffix, fmt in _FORMATS.items():
        if name.endswith(suffix):
            return fmt
    raise InputError(f"cannot tell the format of '{path}'; use .nii.gz, .nii, .tif, .tiff or .png")


def cube_affine(attrs: dict) -> np.ndarray:
    """The cube's voxel-to-world affine in NIfTI (x, y, z) order; from spacing when the source had none."""
    if attrs.get("affine") is not None:
        return np.asarray(attrs["affine"], dtype=float)
    z, y, x = attrs.get("spacing", [1.0, 1.0, 1.0])
    return np.diag([x, y, z, 1.0])


def read_cube_array(store: CubeStore, cube: str, what: str, channel: str | int | None) -> np.ndarray:
    """Read one array of a cube as (C, D, H, W), optionally keeping one channel by name or index."""
    arr = store[cube][what][...]
    if arr.ndim == 3:
        arr = arr[None]
    if channel is None:
        return arr
    names = store.channel_names if what == "image" else [str(i) for i in range(arr.shape[0])]
    if isinstance(channel, str) and not channel.isdigit():
        if channel not in names:
            raise InputError(f"no channel '{channel}' in '{what}' (channels: {names})")
        channel = names.index(channel)
    index = int(channel)
    if not 0 <= index < arr.shape[0]:
        raise InputError(f"channel {index} out of range for '{what}' with {arr.shape[0]} channel(s)")
    return arr[index : index + 1]


def _restore_dtype(data: np.ndarray, dtype_name: str | None) -> np.ndarray:
    """Cast to the source dtype when every value survives the cast exactly, else keep float32."""
    if not dtype_name:
        return data
    dtype = np.dtype(dtype_name)
    if dtype == data.dtype or not np.issubdtype(dtype, np.number):
        return data
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if data.min(initial=0) < info.min or data.max(initial=0) > info.max:
            return data
    cast = data.astype(dtype)
    return cast if np.array_equal(cast.astype(data.dtype), data) else data


def export_cube(
    store_path: str | Path,
    cube: str,
    out: str | Path,
    *,
    what: str = "image",
    channel: str | int | None = None,
) -> Path:
    """Write one array of a cube to ``out`` (format from its suffix); returns the path written.

    Args:
        store_path: the cube store.
        cube: cube name.
        out: ``*.nii.gz``/``*.nii`` (3D, or 4D x, y, z, C), ``*.tif`` (Z[C]YX stack) or ``*.png`` (D = 1).
        what: the array: ``image``, ``label``, ``prediction`` or any array the cube holds.
        channel: keep one channel (name such as ``t1c`` or index).
    """
    store = CubeStore(store_path)
    attrs = store[cube].attrs
    data = read_cube_array(store, cube, what, channel)
    if what == "image":
        data = _restore_dtype(data, attrs.get("source_dtype"))
    out = Path(out)
    fmt = _format(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".partial-{os.getpid()}-{out.name}")  # keeps the suffix for nibabel
    try:
        if fmt == "nifti":
            xyz = data.transpose(3, 2, 1, 0)  # (C, z, y, x) -> (x, y, z, C)
            xyz = xyz[..., 0] if xyz.shape[-1] == 1 else xyz
            nib.save(nib.Nifti1Image(np.ascontiguousarray(xyz), cube_affine(attrs)), str(tmp))
        elif fmt == "tiff":
            stack = data[0] if data.shape[0] == 1 else data.transpose(1, 0, 2, 3)
            axes = "ZYX" if data.shape[0] == 1 else "ZCYX"
            tifffile.imwrite(str(tmp), stack, metadata={"axes": axes})
        else:
            if data.shape[1] != 1:
                raise InputError(f"PNG holds one plane; cube '{cube}' has D={data.shape[1]}: use .tif")
            Image.fromarray(_to_uint8(data[:, 0])).save(tmp, format="PNG")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _to_uint8(planes: np.ndarray) -> np.ndarray:
    """(C, H, W) → (H, W[, 3]) uint8 for PNG: labels kept as values, intensities stretched per channel."""
    if planes.dtype == np.uint8:
        out = planes
    else:
        lo = planes.min(axis=(1, 2), keepdims=True)
        hi = planes.max(axis=(1, 2), keepdims=True)
        out = ((planes - lo) / np.maximum(hi - lo, 1e-12) * 255).round().astype(np.uint8)
    return out[0] if out.shape[0] == 1 else out[:3].transpose(1, 2, 0)
