"""Deterministic synthetic scene families with ground truth, for tests, demos and benchmarks.

Each family is a generator ``generate(rng, shift=..., shape=...)`` returning (image, label, attrs[,
arrays]); :func:`synthesize` writes ``n`` of them into a cube store. Cube ``i`` of seed ``s`` depends
only on (s, i), so growing ``n`` adds cubes without changing the existing ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from tcupgan.data.ingest import IngestReport
from tcupgan.data.store import StoreSpec
from tcupgan.data.synth import brats, fatchecker, galaxy, kelp
from tcupgan.errors import InputError

__all__ = ["FAMILIES", "Family", "synthesize", "make_scene", "cube_name", "synthetic_shift"]

#: Split by position so even tiny stores get a validation cube: 6 train, 2 val, 2 test in every ten.
_SPLIT_CYCLE = ("train", "train", "val", "train", "train", "test", "train", "val", "train", "test")


@dataclass(frozen=True)
class Family:
    """A scene family: its generator, the store it fills, its default cube shape (D, H, W) and the
    smallest plane its objects fit in."""

    generate: Callable
    spec: StoreSpec
    default_shape: tuple[int, int, int]
    min_plane: int = 1


FAMILIES: dict[str, Family] = {
    "fatchecker": Family(
        fatchecker.generate,
        StoreSpec("binary", ("em",), ("lipid droplet",)),
        fatchecker.DEFAULT_SHAPE,
        min_plane=32,  # droplets up to 32 px across
    ),
    "brats": Family(
        brats.generate,
        StoreSpec("brats", ("t1c", "t1n", "t2f", "t2w"), ("ET", "TC", "WT")),
        brats.DEFAULT_SHAPE,
    ),
    "galaxy": Family(
        galaxy.generate,
        StoreSpec("multilabel", ("red", "green", "blue"), ("spiral arm", "bar")),
        galaxy.DEFAULT_SHAPE,
    ),
    "kelp": Family(
        kelp.generate, StoreSpec("binary", ("red", "green", "blue", "nir"), ("kelp",)), kelp.DEFAULT_SHAPE
    ),
}


def make_scene(kind: str, seed: int, index: int, *, shift: float = 0.0, shape: Sequence[int] | None = None):
    """Generate one scene: (image (C, D, H, W), label (D, H, W), attrs, extra arrays).

    ``shift``: how far toward the domain-shifted variant, 0 (plain) to 1 (``True``: fully shifted). All
    shifted strengths share one random stream, so a milder shift is the same scene, less changed."""
    _check_shift(shift)
    if kind not in FAMILIES:
        raise InputError(f"unknown synthetic family '{kind}'; choose one of {sorted(FAMILIES)}")
    family = FAMILIES[kind]
    shape = tuple(shape or family.default_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"shape {shape} must be three positive sizes (D H W)")
    if kind in ("galaxy", "kelp") and shape[0] != 1:
        raise InputError(f"'{kind}' scenes are 2D: use a shape with D = 1, e.g. 1 {shape[1]} {shape[2]}")
    if min(shape[1:]) < family.min_plane:
        raise InputError(
            f"'{kind}' scenes need planes of at least {family.min_plane} x {family.min_plane} px, got "
            f"{shape[1]} x {shape[2]}; use e.g. {shape[0]} {family.min_plane} {family.min_plane}"
        )
    rng = np.random.default_rng([seed, index, int(shift > 0)])
    out = family.generate(rng, shift=shift, shape=shape)
    image, label, attrs = out[:3]
    arrays = out[3] if len(out) > 3 else {}
    return image, label, attrs, arrays


def _check_shift(shift: float) -> None:
    if not 0 <= shift <= 1:
        raise InputError(f"shift must be between 0 and 1 (1 = the shifted variant), got {shift}")


def cube_name(kind: str, seed: int, index: int, shift: float = 0.0) -> str:
    """The name :func:`synthesize` gives cube ``index`` of ``seed`` (``-shift``; ``-shift0.5`` half way)."""
    tag = "" if shift == 0 else "-shift" if shift == 1 else f"-shift{shift:g}"
    return f"{kind}{tag}-s{seed}-{index:04d}"


def synthetic_shift(cube) -> float:
    """The domain-shift strength :func:`synthesize` recorded for a cube of a store (0: unshifted)."""
    return float(cube.attrs["synthetic"]["shift"])


def synthesize(
    kind: str,
    out: str | Path,
    *,
    n: int,
    seed: int = 0,
    shift: float = 0.0,
    shape: Sequence[int] | None = None,
    overwrite: bool = False,
) -> IngestReport:
    """Write ``n`` synthetic cubes of one family into the store at ``out`` (created if needed).

    Names are ``<kind>[-shift[<strength>]]-s<seed>-<index>`` (``-shift`` alone for the fully shifted
    variant, ``-shift0.5`` half way), so plain and shifted cubes of several seeds can share one store;
    re-running skips cubes already present.
    """
    if n < 1:
        raise InputError("--n must be at least 1")
    _check_shift(shift)
    family = FAMILIES.get(kind)
    if family is None:
        raise InputError(f"unknown synthetic family '{kind}'; choose one of {sorted(FAMILIES)}")
    store = family.spec.open(out)
    report = IngestReport()
    for i in tqdm(range(n), desc=f"synth {kind}", unit="cube", disable=None):
        name = cube_name(kind, seed, i, shift)
        if name in store and not overwrite:
            report.skipped.append(name)
            continue
        image, label, attrs, arrays = make_scene(kind, seed, i, shift=shift, shape=shape)
        attrs = {
            **attrs,
            "split": _SPLIT_CYCLE[i % 10],
            "synthetic": {"family": kind, "seed": seed, "index": i, "shift": float(shift)},
        }
        store.write_cube(name, image, label, attrs=attrs, arrays=arrays, overwrite=overwrite)
        report.written.append(name)
    return report
