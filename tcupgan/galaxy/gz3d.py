"""Galaxy Zoo 3D FITS files → galaxy cubes with per-pixel vote fractions (needs astropy).

A GZ3D file holds one galaxy: HDU 0 the image volunteers drew on (H x W x 3 RGB), HDU 3 and HDU 4 per-pixel
counts of volunteers whose spiral-arm / bar polygon contains the pixel, and a metadata table (HDU 5) with
the number of classifications. Counts / classifications are the vote fractions the galaxy model trains on
(``vote_fraction``, 2 x 1 x H x W); the label is their majority (fraction ≥ 0.5) so Dice can be computed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from tcupgan.data.ingest import IngestReport, cube_name, ingest_cases
from tcupgan.data.store import StoreSpec
from tcupgan.errors import InputError, require_extra

__all__ = ["read_gz3d", "ingest_gz3d", "GZ3D_SPEC", "GZ3D_PIXEL_SCALE"]

GZ3D_SPEC = StoreSpec("multilabel", ("red", "green", "blue"), ("spiral arm", "bar"))
GZ3D_PIXEL_SCALE = 0.099  # arcsec per pixel of the MaNGA cutouts volunteers drew on
_SPIRAL_HDU, _BAR_HDU, _META_HDU = 3, 4, 5
_CLASSIFICATIONS = "GZ_TOTAL_CLASSIFICATIONS"


def _astropy_fits():
    return require_extra("astropy.io.fits", "fits", "reading FITS files")


def read_gz3d(path: str | os.PathLike, volunteers: int | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """One GZ3D file → image (3, 1, H, W) float32, vote fractions (2, 1, H, W) float32, attrs.

    ``volunteers``: classifications per galaxy when the file's metadata lacks them (GZ3D: about 15).
    """
    fits = _astropy_fits()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"'{path}' does not exist")
    try:
        with fits.open(path) as hdus:
            if len(hdus) <= _BAR_HDU:
                raise InputError(
                    f"'{path}' has {len(hdus)} HDUs; a Galaxy Zoo 3D file has the image in HDU 0 and the "
                    "spiral and bar vote counts in HDUs 3 and 4"
                )
            image = np.asarray(hdus[0].data, np.float32)
            maps = [np.asarray(hdus[i].data, np.float32) for i in (_SPIRAL_HDU, _BAR_HDU)]
            meta = hdus[_META_HDU].data if len(hdus) > _META_HDU else None
            names = [] if meta is None or meta.dtype.names is None else meta.dtype.names
            total = int(meta[_CLASSIFICATIONS][0]) if _CLASSIFICATIONS in names else volunteers
    except InputError:
        raise
    except Exception as err:  # astropy raises many types for truncated or foreign files
        raise InputError(f"cannot read '{path}' as FITS ({err.__class__.__name__}: {err})") from err
    if image.ndim == 3 and image.shape[-1] in (3, 4):  # H x W x RGB(A), as GZ3D stores it
        image = image[..., :3].transpose(2, 0, 1)
    if image.ndim != 3 or image.shape[0] != 3:
        raise InputError(f"'{path}': HDU 0 has shape {image.shape}; expected an H x W x 3 RGB image")
    if any(m.shape != image.shape[1:] for m in maps):
        shapes = [m.shape for m in maps]
        raise InputError(f"'{path}': vote maps {shapes} do not match the image {image.shape[1:]}")
    counts = np.stack(maps)
    if not np.isfinite(counts).all() or counts.min() < 0:
        raise InputError(f"'{path}': vote counts must be finite and non-negative")
    if not total:
        raise InputError(
            f"'{path}' does not say how many volunteers classified it ({_CLASSIFICATIONS}); "
            "give --volunteers N (Galaxy Zoo 3D: about 15)"
        )
    if counts.max() > total:
        raise InputError(f"'{path}': {counts.max():.0f} votes on a pixel but only {total} classifications")
    attrs = {"classifications": total, "source_format": "fits"}
    return image[:, None], (counts / total)[:, None], attrs


def ingest_gz3d(
    files: Iterable[str | os.PathLike],
    store_path: str | os.PathLike,
    *,
    volunteers: int | None = None,
    overwrite: bool = False,
    split: str | None = None,
) -> IngestReport:
    """Ingest GZ3D FITS files into a galaxy store (classes: spiral arm, bar) with their vote fractions."""
    paths = [Path(p) for p in files]
    if not paths:
        raise InputError("no FITS files given")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"these files do not exist: {missing[:5]}")
    _astropy_fits()  # fail before anything is read when astropy is absent

    def load(name: str, path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any], dict[str, np.ndarray]]:
        image, votes, attrs = read_gz3d(path, volunteers)
        label = (votes[0] >= 0.5).astype(np.uint8) | ((votes[1] >= 0.5).astype(np.uint8) << 1)
        spacing = [1.0, GZ3D_PIXEL_SCALE, GZ3D_PIXEL_SCALE]
        attrs = {**attrs, "sources": {"image": str(path)}, "spacing": spacing}
        if split:
            attrs["split"] = split
        return image, label, attrs, {"vote_fraction": votes.astype(np.float32)}

    cases = [(cube_name(Path(p.name.removesuffix(".gz").removesuffix(".fits"))), p) for p in paths]
    return ingest_cases(store_path, GZ3D_SPEC, cases, load, overwrite, "ingest gz3d")
