"""``tcupgan select``: choose the slices volunteers should correct.

A strategy is a registered slice scorer (:mod:`tcupgan.inference.scorers`: realness, entropy, novelty,
hybrid, random, or one of your own). Its priority ranks every candidate slice; the ranking is taken from
the top (``sampling="top"``), drawn with probability 1 / rank (``"softrank"``), or drawn at random within
the cubes it puts first (``"cubes"``); each scorer names its default. The picks then follow four rules
that spread a budget of volunteer effort (:class:`SelectionRules`): slices without content are skipped,
slices volunteers already corrected are never sent again, a cube gives at most ``per_cube`` new slices,
and slices of one cube are at least ``min_gap`` apart from each other and from its corrected slices
(neighbouring slices look alike).

The default, ``novelty`` drawn within its top cubes, needed the fewest corrected slices to reach a
target Dice in the effort simulation (studies/effort/README.md).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tcupgan.data.store import Cube, CubeStore
from tcupgan.data.transforms import content_fraction
from tcupgan.errors import InputError, StoreError
from tcupgan.inference.scorers import SAMPLINGS, SlicePool, SliceScorer, get_scorer, predicted_scorers
from tcupgan.tables import write_csv

__all__ = ["DEFAULT_STRATEGY", "SAMPLINGS", "SelectionRules", "sampling_for", "select_slices",
           "write_selection", "read_selection"]  # fmt: skip

DEFAULT_STRATEGY = "novelty"


@dataclass(frozen=True)
class SelectionRules:
    """How a budget is spread: at most ``per_cube`` new slices a cube (None: no cap), picks of one cube
    ``min_gap`` slices apart, and only slices with at least ``min_content`` of their pixels showing
    something."""

    per_cube: int | None = None
    min_gap: int = 2
    min_content: float = 0.05


def sampling_for(strategy: str, sampling: str | None = None) -> str | None:
    """How select takes ``strategy``'s ranking: ``sampling`` where given, else the scorer's default; None
    for a scorer that draws itself (``random``). One function, so that select and whatever reports its
    picks (the effort study) cannot disagree on the default."""
    if sampling is not None and sampling not in SAMPLINGS:
        raise InputError(f"unknown sampling '{sampling}'; choose one of {SAMPLINGS}")
    scorer = get_scorer(strategy)
    return None if scorer.sampling is None else sampling or scorer.sampling


def select_slices(
    store_path: str | Path,
    budget: int,
    *,
    strategy: str = DEFAULT_STRATEGY,
    sampling: str | None = None,
    rules: SelectionRules = SelectionRules(),
    cubes: Sequence[str] | None = None,
    split: str | None = None,
    seed: int = 0,
) -> list[dict]:
    """Rank the slices of predicted cubes by ``strategy`` and pick ``budget`` of them under ``rules``;
    one dict per selected slice, best first. ``seed`` fixes every draw."""
    if budget < 1:
        raise InputError("--budget must be at least 1")
    scorer, sampling = get_scorer(strategy), sampling_for(strategy, sampling)
    store = CubeStore(store_path)
    pool = gather_pool(store, list(cubes) if cubes else store.names(split=split), scorer, rules.min_content)
    priority = scorer.priority(pool, np.random.default_rng(seed))
    order = draw_order(priority, pool.cubes, sampling, np.random.default_rng(seed))
    return pick(pool, priority, order, budget, rules, scorer.name)


def gather_pool(store: CubeStore, names: list[str], scorer: SliceScorer, min_content: float) -> SlicePool:
    """Every slice of the predicted ``names`` with content that volunteers have not corrected, with the
    scores of each cube's latest predict run."""
    predicted = [n for n in names if "prediction" in store[n]]
    if not predicted:
        raise StoreError(f"no cube of '{store.path}' has been predicted; run `tcupgan predict` first")
    arrays, attrs, content, corrected = {}, {}, {}, {}
    cubes, slices = [], []
    for name in predicted:
        cube = store[name]
        arrays[name], attrs[name] = _latest_scores(cube)
        for array in scorer.needs:
            if array not in arrays[name]:
                raise StoreError(
                    f"cube '{name}' has no {array} from its latest predict run: {scorer.how_to_get}"
                )
        content[name], corrected[name] = content_fraction(cube), cube.corrected_slices
        keep = [z for z in np.nonzero(content[name] >= min_content)[0] if z not in corrected[name]]
        cubes += [name] * len(keep)
        slices += keep
    if not slices:
        raise StoreError(
            f"no slice left to select: every slice has less than {min_content:.0%} content (lower "
            "--min-content) or volunteers already corrected it"
        )
    return SlicePool(
        np.asarray(cubes), np.asarray(slices, int), arrays, attrs, content, corrected, min_content
    )


def _latest_scores(cube: Cube) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """A cube's per-slice score arrays (and their attributes) written by the same checkpoint as its
    prediction; those of an earlier run are left out."""
    checkpoint = cube["prediction"].attrs.get("checkpoint")
    arrays, attrs = {}, {}
    for scorer in predicted_scorers():
        if scorer.array in cube and cube[scorer.array].attrs.get("checkpoint") == checkpoint:
            arrays[scorer.array] = cube[scorer.array][...]
            attrs[scorer.array] = dict(cube[scorer.array].attrs)
    return arrays, attrs


def draw_order(priority: np.ndarray, cubes: np.ndarray, sampling: str | None, rng: np.random.Generator):
    """Candidate indices in the order picks are tried: by priority (``top``, or None for a scorer that
    drew its own), drawn with probability 1 / rank (``softrank``; Kirsch et al. 2023, "Stochastic batch
    acquisition": most of a round near the top, the rest spread over the pool), or drawn at random with
    probability 1 / the rank of the slice's cube by its mean priority (``cubes``: a cube's mean is a
    steadier reading of how unfamiliar it is than any one slice's score)."""
    order = np.argsort(-priority, kind="stable")
    if sampling == "softrank":
        return order[_draw_by_inverse_rank(np.arange(1, len(order) + 1), rng)]
    if sampling == "cubes":
        _, cube_of = np.unique(cubes, return_inverse=True)
        means = np.bincount(cube_of, weights=priority) / np.bincount(cube_of)
        cube_rank = 1 + np.argsort(np.argsort(-means, kind="stable"))
        return _draw_by_inverse_rank(cube_rank[cube_of], rng)
    return order


def _draw_by_inverse_rank(rank: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``rank`` as draws without replacement with probability proportional to 1 / rank: the
    Gumbel-top-k trick draws the whole sequence at once, so the rules that follow apply unchanged."""
    key = -np.log(rank) + rng.gumbel(size=len(rank))
    return np.argsort(-key, kind="stable")


def pick(pool: SlicePool, priority: np.ndarray, order: np.ndarray, budget: int, rules: SelectionRules,
         strategy: str) -> list[dict]:  # fmt: skip
    """Walk ``order`` and keep slices until ``budget``, skipping those the per-cube cap or the gap to a
    corrected or picked slice rules out."""
    near = {name: list(slices) for name, slices in pool.corrected.items()}
    picked = dict.fromkeys(pool.arrays, 0)
    chosen: list[dict] = []
    for i in order:
        cube, z = str(pool.cubes[i]), int(pool.slices[i])
        full = rules.per_cube and picked[cube] >= rules.per_cube
        if full or any(abs(z - p) < rules.min_gap for p in near[cube]):
            continue
        picked[cube] += 1
        near[cube].append(z)
        scores = {
            s.name: float(pool.arrays[cube][s.array][z]) if s.array in pool.arrays[cube] else None
            for s in predicted_scorers()
        }
        chosen.append({
            "cube": cube, "slice": z, **scores, "content": float(pool.content[cube][z]),
            "priority": float(priority[i]), "rank": len(chosen) + 1, "strategy": strategy,
        })  # fmt: skip
        if len(chosen) == budget:
            break
    return chosen


def fields() -> tuple[str, ...]:
    """The selection CSV's columns: one per registered score predict writes."""
    scores = (s.name for s in predicted_scorers())
    return ("cube", "slice", *scores, "content", "priority", "rank", "strategy")


def write_selection(rows: list[dict], path: str | Path) -> Path:
    return write_csv(rows, path, fields())


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
