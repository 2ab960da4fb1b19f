"""Slice novelty: how far a slice's image lies from the labelled training slices', as the
discriminator's first layer sees it.

Why not the discriminator's realness: trained to tell true masks from the generator's *on the training
domain*, its verdict on an unfamiliar slice says little (studies/selection/README.md measures it). Why its
first convolution and not its deeper features: every later block normalises each slice's channels (the
default instance norm), which removes exactly the brightness, contrast, blur and noise in which a new
imaging domain differs; pooled statistics of the last block (this score until 2026-12-05) told the
effort benchmark's shifted pool cubes from the familiar ones no better than chance, the first
convolution's tell them apart almost perfectly (studies/effort/README.md). Per slice its responses to
the image are pooled to the mean and standard deviation of each channel over the plane and compared with
the same vectors of the labelled training slices by Mahalanobis distance, the usual out-of-distribution
score over a network's features. Large = unlike anything the model was trained on = worth a volunteer's
time.

Both sides are computed the same way, on whole planes a slab of slices at a time: features of predict's
blocks would differ from whole-plane ones at their borders, and the distance would measure the blocking
instead of the slice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tcupgan.data.store import CubeStore
from tcupgan.data.transforms import content_fraction, normalise

__all__ = [
    "FeatureReference", "fit_reference", "reference_cubes", "reference_source", "slice_novelty",
    "slice_features",
]  # fmt: skip

log = logging.getLogger(__name__)
SLAB_VOXELS = 1 << 22  # per channel: 16 slices of 512 x 512 at a time
# Named in every reference's source (reference_source), which predict records with its scores: a store
# whose novelty was measured on other features (the last block's, until 2026-12-05) is predicted again.
FEATURES = "first-layer"


@dataclass
class FeatureReference:
    """Mean and precision of the training slices' pooled features; ``source`` names them for settings.

    ``limit``: the largest distance of the reference's own slices. A slice beyond it is unlike every
    slice the model learnt from, which on the selection study's cubes singled out the domain-shifted
    slices and almost nothing else (studies/selection/README.md); infinite where unknown.
    """

    mean: np.ndarray
    precision: np.ndarray
    slices: int
    source: str
    limit: float = float("inf")

    def distance(self, pooled: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of (N, F) pooled feature vectors from the training slices."""
        d = pooled - self.mean
        return np.sqrt(np.maximum(np.einsum("nf,fg,ng->n", d, self.precision, d), 0))


@torch.no_grad()
def slice_features(model, store: CubeStore, name: str, slices: np.ndarray | None = None) -> np.ndarray:
    """Pooled first-layer responses (len(slices), 2C) of a cube's slices (default all): whole planes, a
    slab at a time (memory stays a slab; with ``depth_kernel`` 1 each slice is seen alone, so slabs change
    nothing)."""
    cube = store[name]
    depth, height, width = cube.shape[1:]
    slices = np.arange(depth) if slices is None else np.asarray(slices)
    step = max(1, min(16, SLAB_VOXELS // (height * width)))
    disc = model.discriminator
    device = next(disc.parameters()).device
    pooled = np.zeros((len(slices), 0))
    for z0 in range(0, depth, step):
        wanted = np.nonzero((slices >= z0) & (slices < z0 + step))[0]
        if not len(wanted):
            continue
        image = torch.from_numpy(normalise(cube.image[:, z0 : z0 + step], cube.attrs))[None].to(device)
        responses = disc.image_responses(image)[0].float()
        stats = torch.cat([responses.mean(dim=(2, 3)), responses.std(dim=(2, 3))]).T.cpu().numpy()
        if pooled.shape[1] == 0:
            pooled = np.zeros((len(slices), stats.shape[1]))
        pooled[wanted] = stats[slices[wanted] - z0]
    return pooled


def _evenly_spaced(items, most: int):
    """At most ``most`` of ``items``, evenly spaced from the first: a sample that spans them all."""
    return items[:: -(-len(items) // most)] if len(items) else items


def reference_source(where: str | Path, split: str, cubes: int) -> str:
    """How a reference is named in predict's settings: its store, split, cube count and features, so a
    store whose novelty came from another reference, or from other features, is predicted again."""
    return f"{where}:{split}:{cubes} cubes:{FEATURES}"


def reference_cubes(store_path: str | Path, split: str = "train", max_cubes: int = 32) -> list[str]:
    """The labelled ``split`` cubes a reference is fitted on: at most ``max_cubes``, evenly spaced."""
    store = CubeStore(store_path)
    return _evenly_spaced([n for n in store.names(split=split) if store[n].label is not None], max_cubes)


def fit_reference(
    model,
    store_path: str | Path,
    *,
    split: str = "train",
    max_cubes: int = 32,
    max_slices: int = 4096,
    min_content: float = 0.05,
    shrinkage: float = 1e-3,
    source: str | None = None,
) -> FeatureReference | None:
    """The labelled ``split`` cubes' slices with content as the reference: what the model learnt from.

    At most ``max_cubes`` cubes (:func:`reference_cubes`) and ``max_slices`` slices spread over them,
    so a large training set costs no more than that. The covariance is shrunk towards its mean variance
    (``shrinkage``) so it inverts even with fewer slices than features. None without two such slices.
    ``source`` names the reference in predict's settings (default: the store's path, split and cubes).
    """
    store = CubeStore(store_path)
    names = reference_cubes(store_path, split, max_cubes)
    if not names:
        return None
    per_cube = max(1, max_slices // len(names))
    vectors = []
    for name in names:
        keep = _evenly_spaced(np.nonzero(content_fraction(store[name]) >= min_content)[0], per_cube)
        if len(keep):
            vectors.append(slice_features(model, store, name, keep))
    if sum(len(v) for v in vectors) < 2:
        return None
    x = np.concatenate(vectors)
    cov = np.atleast_2d(np.cov(x, rowvar=False))
    cov += np.eye(len(cov)) * shrinkage * max(np.trace(cov) / len(cov), 1e-12)
    log.info("novelty reference: %d %s slices of %d cubes in %s", len(x), split, len(names), store_path)
    source = source or reference_source(Path(store_path).resolve(), split, len(names))
    reference = FeatureReference(x.mean(axis=0), np.linalg.pinv(cov), len(x), source)
    reference.limit = float(reference.distance(x).max())
    return reference


def slice_novelty(model, store: CubeStore, name: str, reference: FeatureReference) -> np.ndarray:
    """(D,) float32 distances of a cube's slices from the reference."""
    return reference.distance(slice_features(model, store, name)).astype(np.float32)
