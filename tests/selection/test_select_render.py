import argparse
import csv

import numpy as np
import pytest
from PIL import Image

from tcupgan.cli.main import build_parser, main
from tcupgan.data import CubeStore
from tcupgan.errors import InputError, StoreError
from tcupgan.inference import scorers
from tcupgan.inference.scorers import Realness, SliceScorer, register
from tcupgan.selection import (
    SAMPLINGS,
    SelectionRules,
    read_selection,
    sampling_for,
    select_slices,
    write_selection,
)
from tcupgan.zooniverse import render_subjects
from tcupgan.zooniverse.render import MAX_BYTES, MAX_SIDE, MIN_SIDE


def scored_store(path, realness_by_cube: dict, background: dict | None = None):
    """A store whose cubes have the given slice realness (entropy: the same reversed), as one predict run
    wrote them; ``background``: per cube, slices left empty."""
    store = CubeStore.create(path, task="binary", channel_names=["em"], class_names=["fg"])
    rng = np.random.default_rng(0)
    run = {"checkpoint": "abc"}
    for name, realness in realness_by_cube.items():
        image = rng.random((1, len(realness), 40, 30), dtype=np.float32) + 1
        image[:, (background or {}).get(name, [])] = 0
        store.write_cube(name, image, (image[0] > 1.5).astype(np.uint8))
        store.write_array(name, "prediction", (image[0] > 1.6).astype(np.uint8), attrs=run)
        store.write_array(name, "slice_realness", np.array(realness, np.float32), attrs=run)
        store.write_array(name, "slice_entropy", np.array(realness[::-1], np.float32), attrs=run)
    return path


@pytest.fixture()
def registry(monkeypatch):
    """A registry of the test's own: scorers registered in it are gone after the test."""
    monkeypatch.setattr(scorers, "SCORERS", dict(scorers.SCORERS))
    return scorers.SCORERS


@pytest.fixture(autouse=True)
def verdict_alone(registry):
    """The realness strategy ranks by each slice's own verdict (context 1) unless a test says otherwise:
    the rules are easier to read without the neighbours' mean."""
    register(Realness(context=1))


def pick(path, budget, *, per_cube=None, min_gap=2, strategy="realness", **kwargs):
    rules = SelectionRules(per_cube=per_cube, min_gap=min_gap)
    return select_slices(path, budget, strategy=strategy, rules=rules, **kwargs)


@pytest.fixture()
def scored(tmp_path):
    """Two cubes with known slice scores and entropies, one slice of cube b empty (background: the lowest
    realness, but nothing to draw)."""
    realness = {"a": [0.9, 0.1, 0.15, 0.8, 0.2, 0.7], "b": [0.05, 0.5, 0.3, 0.6, 0.4, 0.9]}
    return scored_store(tmp_path / "s.zarr", realness, background={"b": [0]})


def test_discriminator_picks_lowest_realness_with_gap_cap_and_content(scored):
    rows = pick(scored, 4, per_cube=2, min_gap=2, sampling="top")
    picked = [(r["cube"], r["slice"]) for r in rows]
    # b/0 is empty; a/1 (0.10), a/2 too close (gap 2), a/4 (0.20), then a is capped at 2: b/2, b/4
    assert picked == [("a", 1), ("a", 4), ("b", 2), ("b", 4)]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]


def test_corrected_slices_are_not_sent_again_and_keep_their_neighbours_away(scored):
    store = CubeStore(scored, mode="r+")
    corrections = np.zeros((6, 40, 30), np.uint8)
    store.write_array("a", "corrections", corrections, attrs={"slices": {"1": {"subject": "7"}}})
    picked = [(r["cube"], r["slice"]) for r in pick(scored, 4, per_cube=2, min_gap=2, sampling="top")]
    # a/1 (0.10) was corrected in an earlier round and a/2 (0.15) is its neighbour; then a/4, b/2, b/4 (b is
    # capped); a/5, a/3 are next to a/4 and a/0 next to the corrected a/1: three picks for a budget of four
    assert picked == [("a", 4), ("b", 2), ("b", 4)]
    without = [(r["cube"], r["slice"]) for r in pick(scored, 4, per_cube=2, min_gap=1, sampling="top")]
    assert ("a", 2) in without and ("a", 1) not in without  # gap 1: neighbours allowed, the slice never


def test_cli_offers_exactly_the_samplings_select_knows():
    """The CLI spells the choices out (importing select there would pull in MONAI on every command): the
    lists must not drift apart."""
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    options = {a.dest: a for a in commands.choices["select"]._actions}
    assert tuple(options["sampling"].choices) == SAMPLINGS


def test_softrank_draws_slices_with_probability_one_over_rank(tmp_path):
    """One cube of 40 slices, realness rising with depth: slice z is the discriminator's rank z + 1. A
    softrank draw is seeded, is not the top of the ranking, and picks rank r first with probability
    (1 / r) / H(40): rank 1 about 23% of the time, ranks 1-5 53%, the bottom 20 ranks 16%."""
    path = scored_store(tmp_path / "r.zarr", {"a": np.linspace(0.1, 0.9, 40).tolist()})
    top = [r["slice"] for r in pick(path, 8, min_gap=1, sampling="top")]
    assert top == list(range(8))
    draw = pick(path, 8, min_gap=1, sampling="softrank", seed=1)
    assert draw == pick(path, 8, min_gap=1, sampling="softrank", seed=1)
    assert [r["slice"] for r in draw] != top
    assert draw[0]["priority"] == pytest.approx(1 - draw[0]["realness"])  # the strategy's score, as before

    def first_pick(seed: int) -> int:
        return pick(path, 1, min_gap=1, sampling="softrank", seed=seed)[0]["slice"]

    firsts = np.array([first_pick(seed) for seed in range(400)])
    harmonic = (1 / np.arange(1, 41)).sum()
    for ranks, expected in ((1, 1 / harmonic), (5, (1 / np.arange(1, 6)).sum() / harmonic)):
        share = (firsts < ranks).mean()  # binomial sd over 400 draws: at most 0.025
        assert abs(share - expected) < 0.075, (ranks, share, expected)
    assert abs((firsts >= 20).mean() - (1 / np.arange(21, 41)).sum() / harmonic) < 0.06
    with pytest.raises(InputError, match="sampling"):
        pick(path, 1, sampling="gumbel")


def test_cubes_sampling_draws_slices_at_random_within_cubes_by_one_over_the_cubes_rank(tmp_path):
    """Three cubes of 10 slices whose mean realness is 0.2 < 0.5 < 0.8: the first pick falls in a cube with
    probability 1 / its rank over 1 + 1/2 + 1/3 (a 55%, b 27%, c 18%), and within a cube on any slice
    alike, not on the slice its own verdict ranks first."""
    spread = np.linspace(-0.1, 0.1, 10)
    realness = {name: (mean + spread).tolist() for name, mean in (("a", 0.2), ("b", 0.5), ("c", 0.8))}
    path = scored_store(tmp_path / "c.zarr", realness)
    draw = pick(path, 6, min_gap=1, sampling="cubes", seed=3)
    assert draw == pick(path, 6, min_gap=1, sampling="cubes", seed=3)
    firsts = [pick(path, 1, min_gap=1, sampling="cubes", seed=s)[0] for s in range(300)]
    for cube, expected in (("a", 6 / 11), ("b", 3 / 11), ("c", 2 / 11)):
        share = np.mean([r["cube"] == cube for r in firsts])  # binomial sd over 300 draws: at most 0.029
        assert abs(share - expected) < 0.09, (cube, share, expected)
    in_a = [r["slice"] for r in firsts if r["cube"] == "a"]
    assert len(set(in_a)) == 10 and np.mean(np.array(in_a) == 0) < 0.3  # slice 0: a's lowest realness
    top = pick(path, 1, min_gap=1, sampling="top")[0]
    assert (top["cube"], top["slice"]) == ("a", 0)


def test_each_strategy_draws_by_default_as_it_was_measured_best(scored):
    """The default measured best per strategy: the verdict's top picks cost volunteers more effort than
    random's in the effort simulation, its softrank draws less; novelty and entropy drawn within their top
    cubes needed about half of random's slices; hybrid was measured from the top."""
    top = pick(scored, 4, min_gap=1, sampling="top")
    for seed in (0, 1):
        default = pick(scored, 4, min_gap=1, seed=seed)
        assert default == pick(scored, 4, min_gap=1, seed=seed, sampling="softrank") != top
    entropy = pick(scored, 4, strategy="entropy", min_gap=1, seed=1)
    cubes = pick(scored, 4, strategy="entropy", min_gap=1, seed=1, sampling="cubes")
    assert entropy == cubes != pick(scored, 4, strategy="entropy", min_gap=1, sampling="top")
    defaults = [
        sampling_for(s) for s in ("realness", "discriminator", "novelty", "entropy", "hybrid", "random")
    ]
    assert defaults == ["softrank", "softrank", "cubes", "cubes", "top", None]
    assert sampling_for("entropy", "softrank") == "softrank" and sampling_for("random", "top") is None
    with pytest.raises(InputError, match="sampling"):
        sampling_for("random", "gumbel")  # a typo is refused whatever the strategy


def test_realness_context_averages_the_verdict_over_neighbouring_slices_with_content(scored):
    """Context 3: a/2 (own realness 0.15) ranks first, as the mean of a/1-a/3 (0.35) is the lowest, not a/1
    (0.10, mean 0.38); b/1's mean leaves out the background slice b/0, (0.5 + 0.3) / 2 = 0.4."""
    register(Realness(context=3))
    rows = pick(scored, 20, min_gap=1, sampling="top")
    assert (rows[0]["cube"], rows[0]["slice"], rows[0]["realness"]) == ("a", 2, pytest.approx(0.15))
    assert rows[0]["priority"] == pytest.approx(1 - 0.35)
    b1 = next(r for r in rows if (r["cube"], r["slice"]) == ("b", 1))
    assert b1["priority"] == pytest.approx(1 - 0.4) and b1["realness"] == pytest.approx(0.5)
    register(Realness(context=1))
    alone = pick(scored, 1, min_gap=1, sampling="top")
    assert alone[0]["slice"] == 1  # the slice alone: a/1
    for bad in (0, 4):
        with pytest.raises(ValueError, match="odd"):
            Realness(context=bad)


def test_strategies_and_determinism(scored):
    entropy = pick(scored, 2, strategy="entropy", min_gap=1, sampling="top")
    assert [(r["cube"], r["slice"]) for r in entropy] == [("a", 5), ("a", 2)]  # highest entropies, b/0 empty
    first = pick(scored, 5, strategy="random", seed=3, min_gap=1)
    assert first == pick(scored, 5, strategy="random", seed=3, min_gap=1)
    assert first != pick(scored, 5, strategy="random", seed=4, min_gap=1)
    with pytest.raises(InputError, match="strategy"):
        pick(scored, 3, strategy="best")


def test_novelty_picks_the_farthest_slices_and_needs_a_fresh_novelty_array(scored):
    store = CubeStore(scored, mode="r+")
    with pytest.raises(StoreError, match="--reference"):
        select_slices(scored, 2)  # novelty, the default
    for name, novelty in (("a", [1, 9, 2, 3, 8, 1]), ("b", [99, 4, 7, 1, 1, 1])):
        store.write_array(name, "slice_novelty", np.array(novelty, np.float32), attrs={"checkpoint": "abc"})
    rows = pick(scored, 3, strategy="novelty", min_gap=2, sampling="top")
    assert [(r["cube"], r["slice"]) for r in rows] == [("a", 1), ("a", 4), ("b", 2)]  # b/0 is empty
    assert [r["novelty"] for r in rows] == [9, 8, 7]
    # hybrid: mean of the novelty and entropy ranks. b/2 and a/2 are high in both (novelty 7 and 2, entropy
    # 0.6 and 0.8) and come before a/4, second by novelty but second-lowest by entropy
    hybrid = pick(scored, 3, strategy="hybrid", min_gap=1)
    assert [(r["cube"], r["slice"]) for r in hybrid] == [("b", 2), ("a", 2), ("a", 1)]
    # a later predict by another checkpoint (without a reference) leaves the old novelty behind: refused
    for array in ("prediction", "slice_realness", "slice_entropy"):
        store.write_array("b", array, store["b"][array][...], attrs={"checkpoint": "c2"}, overwrite=True)
    for strategy in ("novelty", "hybrid"):
        with pytest.raises(StoreError, match="'b' has no slice_novelty"):
            pick(scored, 3, strategy=strategy)
    assert len(pick(scored, 3)) == 3  # the other strategies do not need it
    assert {r["novelty"] for r in pick(scored, 12, min_gap=1) if r["cube"] == "b"} == {None}


def test_a_scorer_of_ones_own_ranks_under_the_same_rules(scored):
    """A ranking that knows the truth (a simulation's oracle) is a registered scorer like any other: the
    gap, the cap and the content rule still apply to it."""
    ranking = {"a": np.array([0, 5, 4, 0, 3, 0.0]), "b": np.array([9, 0, 0, 2, 0, 1.0])}

    class Given(SliceScorer):
        name = "oracle"

        def priority(self, pool, rng):
            return pool.per_cube(ranking.get)

    register(Given())
    rows = pick(scored, 4, strategy="oracle", per_cube=2, min_gap=2)
    # b/0 (9) has no content; a/1 (5), a/2 too close, a/4 (3), b/3 (2), b/5 (1)
    assert [(r["cube"], r["slice"]) for r in rows] == [("a", 1), ("a", 4), ("b", 3), ("b", 5)]
    assert [r["priority"] for r in rows] == [5, 3, 2, 1] and {r["strategy"] for r in rows} == {"oracle"}


def test_render_frames_respect_zooniverse_limits_and_ids_are_stable(scored, tmp_path):
    selection = write_selection(pick(scored, 3), tmp_path / "sel.csv")
    manifest = render_subjects(scored, selection, tmp_path / "subjects")
    with open(manifest) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    assert {"#tcupgan_id", "#cube", "#slice", "#store", "#checkpoint", "#score"} <= set(rows[0])
    for row in rows:
        for frame in (row["frame_0"], row["frame_1"]):
            path = tmp_path / "subjects" / frame
            assert path.stat().st_size < MAX_BYTES
            with Image.open(path) as im:
                assert max(im.size) == MIN_SIDE  # 40 x 30 slices, enlarged for volunteers
        assert row["#checkpoint"] == "abc"
    again = render_subjects(scored, selection, tmp_path / "subjects2")
    with open(again) as f:
        assert [r["#tcupgan_id"] for r in csv.DictReader(f)] == [r["#tcupgan_id"] for r in rows]


def test_large_slice_is_shrunk_below_limits(tmp_path):
    store = CubeStore.create(tmp_path / "big.zarr", task="binary", channel_names=["em"], class_names=["fg"])
    noise = np.random.default_rng(0).random((1, 1, 2000, 1800), dtype=np.float32)  # incompressible
    store.write_cube("big", noise)
    store.write_array("big", "prediction", (noise[0] > 0.5).astype(np.uint8))
    write_selection([{"cube": "big", "slice": 0, "realness": 0.1}], tmp_path / "sel.csv")
    render_subjects(tmp_path / "big.zarr", tmp_path / "sel.csv", tmp_path / "out")
    for path in (tmp_path / "out").glob("*_*.*"):
        assert path.stat().st_size < MAX_BYTES
        with Image.open(path) as im:
            assert max(im.size) <= MAX_SIDE


def test_bad_selection_and_missing_predictions(scored, tmp_path):
    (tmp_path / "bad.csv").write_text("cube,slice\na,notanumber\n")
    with pytest.raises(InputError, match="line 2"):
        read_selection(tmp_path / "bad.csv")
    write_selection([{"cube": "a", "slice": 99}], tmp_path / "far.csv")
    with pytest.raises(InputError, match="outside cube"):
        render_subjects(scored, tmp_path / "far.csv", tmp_path / "o")
    empty = CubeStore.create(tmp_path / "e.zarr", task="binary", channel_names=["em"], class_names=["fg"])
    empty.write_cube("x", np.ones((1, 2, 8, 8), np.float32))
    with pytest.raises(StoreError, match="tcupgan predict"):
        select_slices(tmp_path / "e.zarr", 2)


def test_cli_select_and_render(scored, tmp_path, capsys):
    command = ["select", "--store", str(scored), "--budget", "3", "--strategy", "discriminator"]
    assert main([*command, "--out", str(tmp_path / "sel.csv")]) == 0
    assert (
        main(
            [
                "render",
                "--store",
                str(scored),
                "--selection",
                str(tmp_path / "sel.csv"),
                "--out",
                str(tmp_path / "subj"),
            ]
        )
        == 0
    )
    assert "manifest.csv" in capsys.readouterr().out
