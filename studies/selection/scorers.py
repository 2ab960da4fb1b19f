"""The selection study's readings of the discriminator's verdict that did not become select's: each a
slice scorer registered for the study only (the product's realness ranks by the verdict averaged over
five neighbouring slices, drawn by softrank)."""

from __future__ import annotations

import numpy as np

from tcupgan.data.store import CubeStore
from tcupgan.inference.scorers import Realness, SlicePool, context_mean, ranks, register


class VerdictAlone(Realness):
    """Each slice's own realness, no neighbours."""

    name = "realness_alone"

    def __init__(self) -> None:
        super().__init__(context=1)


class PositionCalibrated(Realness):
    """Realness minus the median realness of the slices at the same depth index in the ranked cubes,
    before the context mean: the one-way ConvLSTM's first slices, with no memory yet, look worse in every
    cube alike, which says where a slice sits, not whether its cube is unfamiliar."""

    name = "realness_position"

    def priority(self, pool: SlicePool, rng: np.random.Generator) -> np.ndarray:
        realness = {cube: arrays[self.array] for cube, arrays in pool.arrays.items()}
        depth = max(len(r) for r in realness.values())
        by_position = np.full((len(realness), depth), np.nan)
        for row, values in zip(by_position, realness.values(), strict=True):
            row[: len(values)] = values
        median = np.nanmedian(by_position, axis=0)

        def calibrated(cube: str) -> np.ndarray:
            values = realness[cube] - median[: len(realness[cube])]
            return 1 - context_mean(values, pool.content[cube] >= pool.min_content, self.context)

        return pool.per_cube(calibrated)


class UnfamiliarFirst(Realness):
    """Slices whose novelty lies beyond every training slice's (the limit predict records with
    ``slice_novelty``) before all others, each part in the verdict's order."""

    name, needs = "realness_unfamiliar_first", ("slice_realness", "slice_novelty")

    def priority(self, pool: SlicePool, rng: np.random.Generator) -> np.ndarray:
        return ranks(super().priority(pool, rng)) + 2 * unfamiliar(pool)


def unfamiliar_slices(store: CubeStore) -> dict[tuple[str, int], bool]:
    """Per (cube, slice) of the predicted cubes, whether its novelty exceeds the training slices' largest."""
    out = {}
    for name in store.names():
        novelty = store[name]["slice_novelty"]
        for z, value in enumerate(novelty[...]):
            out[(name, z)] = bool(value > novelty.attrs["familiar_limit"])
    return out


def unfamiliar(pool: SlicePool) -> np.ndarray:
    """Per candidate, whether its novelty exceeds the training slices' largest."""
    limit = pool.per_cube(
        lambda cube: np.full(len(pool.content[cube]), pool.attrs[cube]["slice_novelty"]["familiar_limit"])
    )
    return pool.values("slice_novelty") > limit


for _scorer in (VerdictAlone(), PositionCalibrated(), UnfamiliarFirst()):
    register(_scorer)
