"""Slice scorers: the per-slice scores predict writes beside each mask and select ranks slices by.

A scorer is one small object: its ``name`` (the ``--strategy`` that ranks by it), the per-slice ``array``
predict writes (``slice_<name>``, None for a scorer that only combines other arrays), how predict computes
it (``block_map`` on each block of windows, or ``cube_values`` once per cube), how select turns the
arrays into a priority (``priority``, higher first) and how select takes that ranking by default
(``sampling``). A new score is one subclass and one :func:`register` call; predict and select find it
in :data:`SCORERS`.

The built-in scores:

* ``realness``: the discriminator's realness of (image, predicted mask), low first, averaged over the
  five neighbouring slices with content (one slice's verdict is noisy; its neighbours show the same
  structures);
* ``entropy``: mean binary predictive entropy (bits), high first;
* ``novelty``: distance of the slice's image from the labelled training slices' as the discriminator's
  first convolution sees it (:mod:`tcupgan.inference.novelty`), high first;
* ``hybrid``: the mean of the novelty and entropy ranks;
* ``random``: a seeded shuffle, the baseline every other score is measured against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import uniform_filter1d

from tcupgan.data.store import CubeStore
from tcupgan.errors import InputError
from tcupgan.inference.novelty import FeatureReference, fit_reference, slice_novelty

__all__ = [
    "SCORERS", "SlicePool", "SliceScorer", "ScoringContext", "get_scorer", "predicted_scorers", "register",
]  # fmt: skip

SAMPLINGS = ("top", "softrank", "cubes")


@dataclass
class ScoringContext:
    """What predict offers a scorer beyond one block: the model, the store, and the novelty reference
    (the labelled training slices, fitted on first use: a rerun with nothing to predict stays cheap)."""

    model: torch.nn.Module
    store: CubeStore
    reference_store: str | Path | None = None
    reference_source: str = ""

    @cached_property
    def reference(self) -> FeatureReference | None:
        if not self.reference_source:
            return None
        return fit_reference(self.model, self.reference_store, source=self.reference_source)


@dataclass
class SlicePool:
    """The slices select may pick: candidate i is slice ``slices[i]`` of cube ``cubes[i]``.

    ``arrays``: per cube, its per-slice arrays from the latest predict run (stale ones left out);
    ``attrs``: their attributes; ``content``: per cube, each slice's share of pixels with content, which
    counts as content from ``min_content``; ``corrected``: per cube, the slices volunteers corrected.
    """

    cubes: np.ndarray
    slices: np.ndarray
    arrays: dict[str, dict[str, np.ndarray]]
    attrs: dict[str, dict[str, dict]]
    content: dict[str, np.ndarray]
    corrected: dict[str, list[int]]
    min_content: float = 0.05

    def __len__(self) -> int:
        return len(self.slices)

    def values(self, array: str) -> np.ndarray:
        """Per candidate, its slice's value in ``array`` (NaN where its cube has none)."""
        return self.per_cube(lambda cube: self.arrays[cube].get(array))

    def per_cube(self, score: Callable[[str], np.ndarray | None]) -> np.ndarray:
        """Per candidate, ``score(cube)[slice]``: for scores that need a whole cube's slices at once."""
        out = np.full(len(self), np.nan)
        for cube in np.unique(self.cubes):
            values = score(str(cube))
            if values is not None:
                rows = np.nonzero(self.cubes == cube)[0]
                out[rows] = np.asarray(values, np.float64)[self.slices[rows]]
        return out


class SliceScorer:
    """One slice score; subclass and :func:`register` it. ``sampling`` None: the scorer draws itself
    (``random``), so select's sampling does not apply."""

    name: str = ""
    array: str | None = None
    sampling: str | None = "top"
    per_block: bool = False
    how_to_get: str = "run `tcupgan predict` (again) on these cubes"

    @property
    def needs(self) -> tuple[str, ...]:
        """The arrays select needs in every cube to rank by this score."""
        return (self.array,) if self.array else ()

    def block_map(self, model, image: torch.Tensor, prob: torch.Tensor) -> torch.Tensor:
        """(D, H, W) per-voxel scores of one block (``per_block`` scorers); predict averages each plane."""
        raise NotImplementedError

    def cube_values(self, ctx: ScoringContext, name: str) -> tuple[np.ndarray, dict] | None:
        """(D,) scores of a whole cube and attributes to record with them, or None to write nothing."""
        return None

    def priority(self, pool: SlicePool, rng: np.random.Generator) -> np.ndarray:
        """Per candidate, how much it is worth a volunteer's time (higher first)."""
        return pool.values(self.array)


class Realness(SliceScorer):
    name, array, sampling, per_block = "realness", "slice_realness", "softrank", True

    def __init__(self, context: int = 5) -> None:
        if context < 1 or context % 2 == 0:
            raise ValueError(f"context must be an odd number of slices, 1 or more (got {context})")
        self.context = context

    def block_map(self, model, image: torch.Tensor, prob: torch.Tensor) -> torch.Tensor:
        patches = torch.sigmoid(model.discriminator(image, prob))  # (1, 1, dz, ph, pw)
        return F.interpolate(patches, size=image.shape[2:], mode="nearest")[0, 0]

    def priority(self, pool: SlicePool, rng: np.random.Generator) -> np.ndarray:
        def low_in_context(cube: str) -> np.ndarray:
            has_content = pool.content[cube] >= pool.min_content
            return 1 - context_mean(pool.arrays[cube][self.array], has_content, self.context)

        return pool.per_cube(low_in_context)


class Entropy(SliceScorer):
    name, array, sampling, per_block = "entropy", "slice_entropy", "cubes", True

    def block_map(self, model, image: torch.Tensor, prob: torch.Tensor) -> torch.Tensor:
        p = prob[0].clamp(1e-6, 1 - 1e-6)
        return (-(p * torch.log2(p) + (1 - p) * torch.log2(1 - p))).mean(dim=0)


class Novelty(SliceScorer):
    name, array, sampling = "novelty", "slice_novelty", "cubes"
    how_to_get = (
        "predict with labelled train-split cubes in the store, or `tcupgan predict --reference TRAIN_STORE`"
    )

    def cube_values(self, ctx: ScoringContext, name: str) -> tuple[np.ndarray, dict] | None:
        reference = ctx.reference
        if reference is None:
            return None
        # familiar_limit: the largest novelty of the training slices themselves
        return slice_novelty(ctx.model, ctx.store, name, reference), {"familiar_limit": reference.limit}


class Hybrid(SliceScorer):
    name, needs = "hybrid", ("slice_novelty", "slice_entropy")

    def priority(self, pool: SlicePool, rng: np.random.Generator) -> np.ndarray:
        return (ranks(pool.values("slice_novelty")) + ranks(pool.values("slice_entropy"))) / 2


class Random(SliceScorer):
    name, sampling = "random", None

    def priority(self, pool: SlicePool, rng: np.random.Generator) -> np.ndarray:
        return rng.random(len(pool))


SCORERS: dict[str, SliceScorer] = {}
ALIASES = {"discriminator": "realness"}  # the strategy's name before scorers had their own


def register(scorer: SliceScorer) -> SliceScorer:
    """Make ``scorer`` a strategy of select and, where it has an ``array``, an output of predict."""
    if scorer.sampling not in (*SAMPLINGS, None):
        raise ValueError(f"scorer '{scorer.name}': sampling must be one of {SAMPLINGS} or None")
    SCORERS[scorer.name] = scorer
    return scorer


def get_scorer(name: str) -> SliceScorer:
    scorer = SCORERS.get(ALIASES.get(name, name))
    if scorer is None:
        raise InputError(f"unknown strategy '{name}'; choose one of {tuple(SCORERS)}")
    return scorer


def predicted_scorers() -> Iterator[SliceScorer]:
    """The registered scorers predict computes, in registration order."""
    return (s for s in SCORERS.values() if s.array)


def ranks(values: np.ndarray) -> np.ndarray:
    """0 for the smallest value, 1 for the largest, ties broken by position."""
    order = np.argsort(values, kind="stable")
    out = np.empty(len(values))
    out[order] = np.linspace(0, 1, len(values)) if len(values) > 1 else 0
    return out


def context_mean(values: np.ndarray, valid: np.ndarray, size: int) -> np.ndarray:
    """Mean of ``values`` over the ``size`` slices centred on each, counting only ``valid`` ones (a
    background slice's verdict says nothing about its neighbour); the edges repeat the end slice."""
    total = uniform_filter1d(np.where(valid, values, 0).astype(np.float64), size, mode="nearest")
    count = uniform_filter1d(valid.astype(np.float64), size, mode="nearest")
    return np.divide(total, count, out=np.asarray(values, np.float64).copy(), where=count > 1e-9)


for _scorer in (Realness(), Entropy(), Novelty(), Hybrid(), Random()):
    register(_scorer)
