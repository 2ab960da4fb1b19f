"""``tcupgan select``: choose the slices volunteers should correct.

Slices are ranked by how poorly generalised they look — low discriminator realness first
(``discriminator``; averaged over a few neighbouring slices, because one slice's verdict is noisy while
its neighbours show the same structures), distance of a slice's image from the training slices' as the
discriminator's first convolution sees it (``novelty``), high predictive entropy (``entropy``), a seeded
shuffle (``random``, the baseline) or the mean of the novelty and entropy ranks (``hybrid``: uncertain
*and* unfamiliar; docs/selection-study.md compares them on synthetic data), optionally with the slices
whose novelty lies beyond every training slice's first (``unfamiliar_first``) — then taken from the top
of the ranking (or drawn from it with probability 1 / rank, ``sampling="softrank"``, or drawn at random
within the cubes the ranking puts first, ``sampling="cubes"``) greedily under four rules that spread a
budget of volunteer effort: slices without content are skipped, slices volunteers already corrected
(harvested in an earlier round) are never sent again, a cube gives at most ``per_cube`` new slices, and
slices of one cube are at least ``min_gap`` apart from each other and from its corrected slices
(neighbouring slices look alike).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy.ndimage import uniform_filter1d

from tcupgan.data.store import CubeStore
from tcupgan.data.transforms import normalise
from tcupgan.errors import InputError, StoreError
from tcupgan.tables import write_csv

__all__ = [
    "STRATEGIES",
    "CALIBRATIONS",
    "SAMPLINGS",
    "sampling_for",
    "select_slices",
    "write_selection",
    "read_selection",
]

STRATEGIES = ("discriminator", "novelty", "entropy", "random", "hybrid")
CALIBRATIONS = ("none", "position")
SAMPLINGS = ("top", "softrank", "cubes")
# the other strategies take the top; why each default: docs/volunteer-effort.md
DEFAULT_SAMPLING = {"discriminator": "softrank", "novelty": "cubes", "entropy": "cubes"}
FIELDS = (
    "cube", "slice", "realness", "novelty", "unfamiliar", "entropy", "content", "priority", "rank",
    "strategy",
)  # fmt: skip


class _Candidate(NamedTuple):
    """One slice a strategy may pick: its scores as the store holds them."""

    cube: str
    slice: int
    realness: float
    realness_in_context: float  # what the discriminator strategy ranks by
    novelty: float | None  # None: no slice_novelty from this cube's latest predict run
    unfamiliar: bool | None  # novelty beyond every training slice's; None where unknown
    entropy: float
    content: float


def _ranks(values: np.ndarray) -> np.ndarray:
    """0 for the smallest value, 1 for the largest, ties broken by position."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.linspace(0, 1, len(values)) if len(values) > 1 else 0
    return ranks


def content_fraction(store: CubeStore, name: str, level: float = 0.05) -> np.ndarray:
    """Per slice, the share of pixels where some channel is above ``level`` of the cube's 1–99% range.

    Background slices (outside a brain, empty sky) score ~0 and are not worth a volunteer's time.
    """
    cube = store[name]
    image, depth = cube.image, cube.shape[1]
    step = image.chunks[1]  # one chunk-deep slab at a time: each chunk is read once, memory stays a slab
    fractions = []
    for z in range(0, depth, step):
        slab = normalise(image[:, z : z + step], cube.attrs)
        fractions.extend((slab > level).any(axis=0).mean(axis=(1, 2)).tolist())
    return np.asarray(fractions)


def sampling_for(strategy: str, sampling: str | None = None) -> str | None:
    """How a round takes ``strategy``'s ranking: ``sampling`` where given, else the strategy's default
    (``DEFAULT_SAMPLING``, ``"top"`` where it names none); None for ``random``, which has no ranking and
    draws anyway. One function, so that select and whatever reports its picks (the effort benchmark)
    cannot disagree on the default."""
    if sampling is not None and sampling not in SAMPLINGS:
        raise InputError(f"unknown sampling '{sampling}'; choose one of {SAMPLINGS}")
    if strategy == "random":
        return None
    return sampling or DEFAULT_SAMPLING.get(strategy, "top")


def select_slices(
    store_path: str | Path,
    budget: int,
    *,
    strategy: str = "discriminator",
    per_cube: int | None = None,
    min_gap: int = 2,
    min_content: float = 0.05,
    context: int = 5,
    calibrate: str = "none",
    unfamiliar_first: bool = False,
    sampling: str | None = None,
    cubes: Sequence[str] | None = None,
    split: str | None = None,
    seed: int = 0,
    ranking: Mapping[str, np.ndarray] | None = None,
) -> list[dict]:
    """Rank slices of predicted cubes and pick ``budget`` of them; returns one dict per selected slice.

    ``context``: the discriminator strategy ranks a slice by the mean realness of the ``context`` slices
    centred on it that have content (1: the slice alone). Over three training seeds and two test mixes,
    5 raised the top 20%'s share of the Dice error in four of six runs (by 0.09-0.23 of random's) and
    moved it by at most 0.01 in the others (docs/selection-study.md). The ``realness`` column stays the
    slice's own score.

    ``calibrate="position"``: the discriminator strategy ranks a slice by its realness minus the median
    realness of the slices at the same depth index in the ranked cubes, before the context mean. The
    generator's ConvLSTM walks the cube one way, so its first slices, with no memory yet, get worse masks
    and lower realness in every cube alike; that says where a slice sits, not whether the cube is
    unfamiliar, and uncalibrated the verdict crowds its picks onto cube ends
    (docs/volunteer-effort.md measures both).

    ``unfamiliar_first``: slices whose novelty lies beyond every training slice's (predict records that
    limit with ``slice_novelty``) come before all others, each part in the strategy's order. The verdict
    is learnt on the training domain and says little on a new one; the limit singled out the
    domain-shifted slices of the selection study almost exactly, and with it the verdict's top 20% held
    twice random's share of the Dice error where the shift is rare (docs/selection-study.md).

    ``sampling="softrank"``: instead of taking the ranking from the top, draw the slices without
    replacement with probability proportional to 1 / rank (seeded by ``seed``; Kirsch et al. 2023,
    "Stochastic batch acquisition"). The top of a ranking is made of slices that look alike (neighbours
    share their context mean, one cube's slices share its look) and one noisy verdict decides it; drawing
    keeps most of a round near the top while spreading the rest over the pool as ``random`` does. The
    ``random`` strategy already draws and ignores it.

    ``sampling="cubes"``: rank the *cubes* by their slices' mean priority and draw slices at random, each
    with probability proportional to 1 / its cube's rank. A slice's own score then only counts through its
    cube's mean. In the effort simulation random slices of the shifted cubes saved the most volunteer
    effort, the true worst slices no more than random ones (docs/volunteer-effort.md): what is worth
    correcting is a spread of the unfamiliar cubes, and a cube's mean is a steadier reading of how
    unfamiliar it is than any one slice's score (measured there: novelty and entropy so drawn needed
    half of random's slices, a random order of the cubes two thirds).

    ``None``: softrank for the discriminator, whose top picks needed more volunteer effort than random's
    in the effort simulation and its draws as much (docs/volunteer-effort.md); cubes for novelty and
    entropy, which so drawn needed fewer slices than random's mean of two draws on every seed there (nine
    and ten, three of them fresh for each); top for the other strategies, as they were measured.

    ``ranking``: per cube, a priority per slice (higher first) to rank by instead of a strategy's;
    ``strategy`` then only names it in the rows. A simulation that knows the truth ranks by the true
    error this way (the effort benchmark's ``oracle``) under the same rules as the real strategies.
    """
    if ranking is None and strategy not in STRATEGIES:
        raise InputError(f"unknown strategy '{strategy}'; choose one of {STRATEGIES}")
    if budget < 1:
        raise InputError("--budget must be at least 1")
    if context < 1 or context % 2 == 0:
        raise InputError(f"--context must be an odd number of slices, 1 or more (got {context})")
    if calibrate not in CALIBRATIONS:
        raise InputError(f"unknown calibration '{calibrate}'; choose one of {CALIBRATIONS}")
    sampling = sampling_for(strategy, sampling)
    store = CubeStore(store_path)
    names = list(cubes) if cubes else store.names(split=split)
    predicted = [n for n in names if "slice_scores" in store[n]]
    if not predicted:
        raise StoreError(f"no cube of '{store.path}' has slice scores; run `tcupgan predict` first")
    if calibrate == "position" and len(predicted) < 2:  # alone, its verdict would be subtracted from itself
        raise InputError(
            "--calibrate position compares a slice with the same depth of the other cubes: it needs 2 or "
            "more predicted cubes, got 1; use --calibrate none"
        )
    if ranking is not None and set(predicted) - set(ranking):
        raise InputError(f"ranking has no scores for cubes {sorted(set(predicted) - set(ranking))}")
    realness_of = {name: store[name]["slice_scores"][...] for name in predicted}
    calibrated = _minus_position_median(realness_of) if calibrate == "position" else realness_of
    candidates = []
    near: dict[str, list[int]] = {}  # per cube, slices new picks keep min_gap from: corrected, then picked
    for name in predicted:
        cube = store[name]
        realness = realness_of[name]
        entropy = cube["slice_entropy"][...] if "slice_entropy" in cube else np.zeros_like(realness)
        novelty = _novelty(cube, name, needed=unfamiliar_first or strategy in ("novelty", "hybrid"))
        limit = _familiar_limit(cube, name, needed=unfamiliar_first) if novelty is not None else None
        content = content_fraction(store, name)
        has_content = content >= min_content
        in_context = _context_mean(calibrated[name], has_content, context)
        near[name] = cube.corrected_slices
        corrected = set(near[name])
        for z in np.nonzero(has_content)[0]:
            if z in corrected:
                continue
            candidates.append(
                _Candidate(
                    name,
                    int(z),
                    float(realness[z]),
                    float(in_context[z]),
                    None if novelty is None else float(novelty[z]),
                    None if limit is None else bool(novelty[z] > limit),
                    float(entropy[z]),
                    float(content[z]),
                )
            )
    if not candidates:
        raise StoreError(
            f"no slice left to select: every slice has less than {min_content:.0%} content (lower "
            "--min-content) or volunteers already corrected it"
        )
    in_context, novelty, entropy = (
        np.array([getattr(c, field) for c in candidates])
        for field in ("realness_in_context", "novelty", "entropy")
    )
    if ranking is not None:
        priority = np.array([ranking[c.cube][c.slice] for c in candidates], dtype=float)
    elif strategy == "random":
        priority = np.random.default_rng(seed).random(len(candidates))
    elif strategy == "hybrid":
        priority = (_ranks(novelty) + _ranks(entropy)) / 2
    else:
        priority = {"discriminator": 1 - in_context, "novelty": novelty, "entropy": entropy}[strategy]
    if unfamiliar_first:  # ranks in [0, 1]; + 2 puts every unfamiliar slice ahead of every familiar one
        priority = _ranks(priority) + 2 * np.array([c.unfamiliar for c in candidates])
    order = np.argsort(-priority, kind="stable")
    if sampling == "softrank":
        order = _softrank_draw(order, np.random.default_rng(seed))
    elif sampling == "cubes":
        order = _cube_draw([c.cube for c in candidates], priority, np.random.default_rng(seed))
    chosen: list[dict] = []
    picked = dict.fromkeys(predicted, 0)  # new slices per cube, for per_cube
    for i in order:
        c = candidates[i]
        if (per_cube and picked[c.cube] >= per_cube) or any(abs(c.slice - p) < min_gap for p in near[c.cube]):
            continue
        picked[c.cube] += 1
        near[c.cube].append(c.slice)
        chosen.append(
            {
                "cube": c.cube,
                "slice": c.slice,
                "realness": c.realness,
                "novelty": c.novelty,
                "unfamiliar": c.unfamiliar,
                "entropy": c.entropy,
                "content": c.content,
                "priority": float(priority[i]),
                "rank": len(chosen) + 1,
                "strategy": strategy,
            }
        )
        if len(chosen) == budget:
            break
    return chosen


def _draw_by_inverse_rank(rank: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``rank`` as draws without replacement with probability proportional to 1 / rank: the
    Gumbel-top-k trick, log-probability plus Gumbel noise sorted, draws the whole sequence at once, so the
    greedy rules that follow (gap, per-cube cap) apply to it unchanged."""
    key = -np.log(rank) + rng.gumbel(size=len(rank))
    return np.argsort(-key, kind="stable")


def _softrank_draw(order: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``order`` (best first) reordered as draws with probability proportional to 1 / its rank."""
    return order[_draw_by_inverse_rank(np.arange(1, len(order) + 1), rng)]


def _cube_draw(cubes: list[str], priority: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Candidate indices as draws with probability proportional to 1 / the rank of their cube's mean
    priority (rank 1: the highest mean)."""
    _, cube_of = np.unique(np.asarray(cubes), return_inverse=True)
    means = np.bincount(cube_of, weights=priority) / np.bincount(cube_of)
    cube_rank = 1 + np.argsort(np.argsort(-means, kind="stable"))
    return _draw_by_inverse_rank(cube_rank[cube_of], rng)


def _context_mean(values: np.ndarray, valid: np.ndarray, size: int) -> np.ndarray:
    """Mean of ``values`` over the ``size`` slices centred on each, counting only ``valid`` ones (a
    background slice's verdict says nothing about its neighbour); the edges repeat the end slice."""
    total = uniform_filter1d(np.where(valid, values, 0).astype(np.float64), size, mode="nearest")
    count = uniform_filter1d(valid.astype(np.float64), size, mode="nearest")
    return np.divide(total, count, out=np.asarray(values, np.float64).copy(), where=count > 1e-9)


def _minus_position_median(realness: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each cube's realness minus, slice by slice, the median over the cubes of the slice at that depth
    index (cubes shorter than a depth do not count there)."""
    depth = max(len(r) for r in realness.values())
    by_position = np.full((len(realness), depth), np.nan)
    for row, r in zip(by_position, realness.values(), strict=True):
        row[: len(r)] = r
    median = np.nanmedian(by_position, axis=0)
    return {name: r - median[: len(r)] for name, r in realness.items()}


def _novelty(cube, name: str, *, needed: bool) -> np.ndarray | None:
    """A cube's ``slice_novelty``; None (an empty CSV cell) when missing or left by another checkpoint's
    predict run, an error when the strategy needs it."""
    fresh = "slice_novelty" in cube and (
        cube["slice_novelty"].attrs.get("checkpoint") == cube["slice_scores"].attrs.get("checkpoint")
    )
    if fresh:
        return cube["slice_novelty"][...]
    if needed:
        raise StoreError(
            f"cube '{name}' has no slice_novelty from its latest predict run: predict with labelled "
            "train-split cubes in the store, or `tcupgan predict --reference TRAIN_STORE`"
        )
    return None


def _familiar_limit(cube, name: str, *, needed: bool) -> float | None:
    """The largest novelty of the training slices, as predict recorded it with ``slice_novelty``; None
    (an empty ``unfamiliar`` cell) where a predict run before 2026-12-05 left none, an error when needed."""
    limit = cube["slice_novelty"].attrs.get("familiar_limit")
    if limit is None and needed:
        raise StoreError(
            f"cube '{name}' has novelty from a predict run that did not record the training slices' "
            "limit: predict again (`tcupgan predict --overwrite`) to use --unfamiliar-first"
        )
    return None if limit is None else float(limit)


def write_selection(rows: list[dict], path: str | Path) -> Path:
    return write_csv(rows, path, FIELDS)


def read_selection(path: str | Path) -> list[dict]:
    """Read a selection CSV, checking its columns and values (it may have been edited by hand)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"selection '{path}' does not exist; make one with `tcupgan select`")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"cube", "slice"} <= set(rows[0]):
        raise InputError(f"'{path}' is not a selection CSV (needs columns cube, slice)")
    for i, row in enumerate(rows, start=2):
        try:
            row["slice"] = int(row["slice"])
            row["realness"] = float(row.get("realness") or "nan")
        except ValueError as err:
            raise InputError(f"'{path}' line {i}: {err}") from err
    return rows
