"""The effort study's simulation (studies/effort/simulate.py): its rules, options and merging, on --tiny
runs and hand-made results."""

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_effort_summary_counts_effort_and_the_share_of_the_correction_gain():
    """Effort = slices until 95% of the all-corrected Dice; a seed whose uncorrected fine-tune already gets
    there is left out; the gain share has no cliff: a curve just under the target still scores."""
    from studies.effort.simulate import summarise

    def seed(uncorrected, curves, effort):
        return {
            "pool_slices": 40,
            "uncorrected_dice": uncorrected,
            "all_corrected_dice": 0.8,
            "uncorrected_reaches_target": uncorrected >= 0.76,
            "curves": curves,
            "effort": effort,
        }

    curves = {"discriminator": [(0, 0.4), (8, 0.75), (16, 0.75)], "random": [(0, 0.4), (8, 0.6), (16, 0.78)]}
    measured = seed(0.4, curves, {"discriminator": None, "random": 16})
    flat = [(0, 0.77), (8, 0.1)]
    silent = seed(0.77, {"discriminator": flat, "random": flat}, {"discriminator": 8, "random": 8})
    out = summarise([measured, silent], ["discriminator", "random"])
    assert out["seeds_without_signal"] == 1
    assert (
        out["discriminator"]["effort_reduction_mean"] == 0
        and out["discriminator"]["seeds_not_reaching_target"] == 1
    )
    assert (
        abs(out["random"]["effort_reduction_mean"] - 0.6) < 1e-9 and out["discriminator"]["minus_random"] < 0
    )
    assert abs(out["discriminator"]["gain_share_mean"] - 0.875) < 1e-9  # (0.35 / 0.4 + 0.35 / 0.4) / 2
    assert abs(out["random"]["gain_share_mean"] - 0.725) < 1e-9  # (0.2 / 0.4 + 0.38 / 0.4) / 2
    # random drawn twice (--random-draws 2): every strategy is paired with the mean of the draws
    twice = seed(0.4, {**curves, "random#2": [(0, 0.4), (8, 0.77)]}, {"discriminator": None, "random": 16,
                                                                     "random#2": 8})  # fmt: skip
    out = summarise([twice], ["discriminator", "random", "random#2"])
    assert out["random_draws"] == 2 and out["discriminator"]["vs_random"]["slices_mean"] == 40 - 12
    assert abs(out["discriminator"]["minus_random"] + 0.7) < 1e-9  # random's reductions 0.6 and 0.8
    assert out["random"]["vs_random"]["slices_mean"] == 4 and out["random#2"]["vs_random"]["more"] == 0
    # rounds past --rounds (a strategy going on to its target) count for effort, not for the gain share
    measured["curves"]["discriminator"].append((24, 0.77))
    measured["effort"]["discriminator"] = 24
    out = summarise([measured], ["discriminator", "random"], rounds=2)
    assert abs(out["discriminator"]["effort_reduction_mean"] - 0.4) < 1e-9
    assert abs(out["discriminator"]["gain_share_mean"] - 0.875) < 1e-9


@pytest.mark.slow
def test_effort_strategy_short_of_the_target_goes_on_until_it_reaches_it():
    """``--max-rounds``: every strategy runs ``--rounds``; after that only one still short of the target
    picks again, and the loop stops at its first round at or above the target."""
    from studies.effort.simulate import another_round, main

    reached_early = [(0, 0.4), (8, 0.9), (16, 0.5)]
    assert another_round(reached_early[:2], 0.8, 1, rounds=2)  # the common rounds run whatever the Dice
    assert not another_round(reached_early, 0.8, 2, rounds=2)
    assert another_round([(0, 0.4), (8, 0.6), (16, 0.7)], 0.8, 2, rounds=2)
    assert not another_round([(0, 0.4), (8, 0.6), (16, 0.7), (24, 0.8)], 0.8, 3, rounds=2)
    assert another_round([(0, 0.9)], 0.8, 0, rounds=1)  # nothing corrected is not a round of picks
    with pytest.raises(SystemExit, match="below --rounds"):  # refused before any training
        main(["--quick", "--rounds", "3", "--max-rounds", "2"])

    result = main(["--tiny", "--max-rounds", "3", "--strategies", "random"])
    res, target = result["seeds"][0], 0.95 * result["seeds"][0]["all_corrected_dice"]
    dice = [d for _, d in res["curves"]["random"][1:]]
    assert result["settings"]["max_rounds"] == 3 and 1 <= len(dice) <= 3
    assert all(d < target for d in dice[:-1]) and (dice[-1] >= target or len(dice) == 3)
    assert len(res["shifted_picks"]["random"]) == len(dice)
    assert (res["effort"]["random"] is None) == (dice[-1] < target)


def test_effort_pool_can_mix_familiar_cubes_with_the_shifted_ones(tmp_path):
    """``--familiar``: unlabelled unshifted cubes join the pool (new cubes, not the labelled ones); held-out
    cubes stay shifted and labelled; every pool cube's truth stays hidden in the truth store."""
    import numpy as np

    from tcupgan.data import CubeStore
    from tcupgan.demo import build_stores

    work, truth, pool, heldout = build_stores(tmp_path, True, seed=3, shifted=4, shift=0.5, familiar=2)
    familiar = [n for n in pool if "shift" not in n]
    assert len(familiar) == 2 and len(pool) == 4 and len(heldout) == 2
    assert all("shift0.5" in n for n in heldout) and not set(pool) & set(heldout)
    store, hidden = CubeStore(work), CubeStore(truth)
    assert all(store[n].label is None and hidden[n].label is not None for n in pool)
    assert all(store[n].label is not None for n in heldout)
    labelled = [n for n in store.names() if n not in pool + heldout]
    images = {n: store[n].image[...] for n in familiar + labelled}
    assert all(not np.array_equal(images[f], images[n]) for f in familiar for n in labelled)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("option", "message"),
    [("--average=1.5", "share, 0-1"), ("--corrections-share=1", "below 1"),
     ("--shifted-cubes=1", "at least 2"), ("--familiar=-1", "0 or more"), ("--epochs=0", "1 or more"),
     ("--max-rounds=0", "1 or more"), ("--per-cube=0", "1 or more")],
)  # fmt: skip
def test_effort_refuses_bad_settings_before_any_training(option, message, capsys):
    from studies.effort import simulate as volunteer_effort

    with pytest.raises(SystemExit):
        volunteer_effort.main(["--tiny", option])
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_effort_fine_tunes_can_average_their_weights_and_rounds_can_cap_picks_per_cube(monkeypatch):
    """``--average``: every fine-tune gets the TailAveraging callback (a wrong class path or init-arg
    syntax would stop the fit) and the setting is recorded with the results. ``--per-cube``,
    ``--sampling`` and ``--draw-seed`` (the seed of round r's draws: draw seed x 100 + r)
    reach every round's selection (select's own tests check what they do), and each pick is recorded.
    ``--random-draws 2`` draws random again, with draw seed + 100, as ``random#2``."""
    from studies.effort import simulate as volunteer_effort

    caps = []

    def select_and_note_the_cap(*args, **kwargs):
        caps.append((kwargs["rules"].per_cube, kwargs.get("sampling"), kwargs.get("seed")))
        return select_slices(*args, **kwargs)

    select_slices = volunteer_effort.select_slices
    monkeypatch.setattr(volunteer_effort, "select_slices", select_and_note_the_cap)
    options = ["--average", "0.5", "--per-cube", "1", "--sampling", "softrank", "--draw-seed", "7",
               "--random-draws", "2"]  # fmt: skip
    result = volunteer_effort.main(["--tiny", *options])
    settings = result["settings"]
    assert settings["average"] == 0.5 and settings["per_cube"] == 1
    assert settings["sampling"] == "softrank" and settings["draw_seed"] == 7 and settings["random_draws"] == 2
    res = result["seeds"][0]
    assert 0 <= res["all_corrected_dice"] <= 1
    # the pool listing, then one round of each --tiny strategy; random has no ranking to draw from
    assert caps == [(None, None, None), (1, "softrank", 700), (1, None, 700), (1, None, 10700)]
    assert res["sampling"] == {"discriminator": "softrank", "random": None, "random#2": None}
    assert res["picks"]["random#2"] != res["picks"]["random"] and "random#2" in result["summary"]
    for strategy, rounds in res["picks"].items():  # --tiny: one round of two picks from the pool
        assert [len(r) for r in rounds] == [2] and res["shifted_picks"][strategy] == [2]


@pytest.mark.slow
def test_effort_oracles_rank_by_the_true_error_and_draw_from_the_shifted_cubes(monkeypatch):
    """The benchmark-only baselines: ``oracle`` ranks the pool by the current model's true per-slice Dice
    error (checked against the truth store) and takes its top; ``shift_oracle`` draws from the shifted
    pool cubes only, which in a pool of shifted cubes alone (``--tiny``) is random's own draw; the
    ``random_cubes`` control gives every slice of a cube one value, a different one per cube (an order of
    the cubes), for the ``cubes`` draw."""
    from studies.effort import simulate as volunteer_effort
    from tcupgan.data import CubeStore
    from tcupgan.metrics.evaluate import slice_dice
    from tcupgan.selection import SelectionRules

    select_slices, checked = volunteer_effort.select_slices, []
    every = SelectionRules(min_gap=1)

    def select_and_check(store, budget, **kwargs):
        rows = select_slices(store, budget, **kwargs)
        pool = select_slices(store, 10**9, strategy="random", rules=every, cubes=kwargs["cubes"])
        if kwargs["strategy"] == "oracle":
            predicted = CubeStore(store)
            hidden = CubeStore(Path(store).parent / "base" / "truth.zarr")
            errors = {
                n: 1 - slice_dice(predicted[n]["prediction"][...] > 0, hidden[n].label[...] > 0)
                for n in kwargs["cubes"]
            }
            assert rows[0]["priority"] == pytest.approx(max(errors[r["cube"]][r["slice"]] for r in pool))
            checked.append("oracle")
        if kwargs["strategy"] == "random_cubes":
            assert kwargs["sampling"] == "cubes"
            ranked = select_slices(store, 10**9, strategy="random_cubes", sampling="top", rules=every,
                                   cubes=kwargs["cubes"], seed=kwargs["seed"])  # fmt: skip
            by_cube: dict[str, set] = {}
            for r in ranked:
                by_cube.setdefault(r["cube"], set()).add(r["priority"])
            assert all(len(v) == 1 for v in by_cube.values()) and len({*map(min, by_cube.values())}) > 1
            checked.append("random_cubes")
        return rows

    monkeypatch.setattr(volunteer_effort, "select_slices", select_and_check)
    strategies = ["oracle", "shift_oracle", "random_cubes", "random"]
    result = volunteer_effort.main(["--tiny", "--strategies", *strategies])
    res = result["seeds"][0]
    assert checked == ["oracle", "random_cubes"]
    assert res["sampling"] == {"oracle": "top", "shift_oracle": None, "random_cubes": "cubes", "random": None}
    assert res["picks"]["shift_oracle"] == res["picks"]["random"] and len(res["picks"]["oracle"][0]) == 2
    assert {"oracle", "shift_oracle", "random"} <= result["summary"].keys()


@pytest.mark.slow
def test_effort_merge_pairs_seeds_run_apart_and_refuses_runs_it_cannot_compare(tmp_path, capsys):
    """``--merge``: seeds run as separate jobs become one summary with each strategy's slices against
    random's seed by seed, and a strategy run later on a seed joins it; runs of another setting, a
    strategy measured twice on a seed, a seed from another base model or a broken file are refused."""
    from studies.effort.simulate import main

    def run(seed, disc, rand, **settings):
        res = {
            "seed": seed, "pool_slices": 40, "base_dice": 0.3, "uncorrected_dice": 0.4,
            "all_corrected_dice": 0.8, "uncorrected_reaches_target": False,
            "effort": {"discriminator": disc, "random": rand},
            "curves": {"discriminator": [(0, 0.4), (8, 0.7)], "random": [(0, 0.4), (8, 0.6)]},
        }  # fmt: skip
        return {
            "baseline": "random",
            "settings": {"rounds": 1, "sampling": None, "seeds": [seed], **settings},
            "summary": {"seeds_without_signal": 0, "discriminator": {}, "random": {}},
            "seeds": [res],
            "seconds": 10.0,
        }

    paths = []
    for seed, disc, rand in [(9, 8, 16), (10, 16, 16), (11, None, 24), (12, 8, 24), (13, 16, 8), (14, 8, 8)]:
        paths.append(tmp_path / f"seed{seed}.json")
        paths[-1].write_text(json.dumps(run(seed, disc, rand)))
    figure = tmp_path / "merged.png"
    merged = main(["--merge", *map(str, paths), "--figure", str(figure)])
    assert merged["settings"]["seeds"] == [9, 10, 11, 12, 13, 14] and merged["seconds"] == 60
    paired = merged["summary"]["discriminator"]["vs_random"]  # 11: the pool (40) against 24
    assert (paired["fewer"], paired["equal"], paired["more"]) == (2, 2, 2)
    assert paired["slices_mean"] == (-8 + 0 + 16 - 16 + 8 + 0) / 6
    assert merged["summary"]["random"]["vs_random"]["equal"] == 6
    assert figure.stat().st_size > 10_000  # six seeds: two rows of panels

    # another strategy run later on the same seed joins it; the pairing with random then covers it too
    entropy = run(9, 8, 16)
    entropy["seeds"][0]["effort"] = {"entropy": 24}
    entropy["seeds"][0]["curves"] = {"entropy": [(0, 0.4), (8, 0.5)]}
    later = tmp_path / "entropy9.json"
    later.write_text(json.dumps(entropy))
    joined = main(["--merge", str(paths[0]), str(later)])
    assert joined["seeds"][0]["effort"] == {"discriminator": 8, "random": 16, "entropy": 24}
    assert joined["summary"]["entropy"]["vs_random"]["more"] == 1
    with pytest.raises(SystemExit, match="not measured"):  # seed 10 has no entropy
        main(["--merge", str(paths[0]), str(paths[1]), str(later)])

    other = tmp_path / "other.json"
    other.write_text(json.dumps(run(15, 8, 8, sampling="top")))
    drawn = tmp_path / "drawn.json"  # a setting older runs did not record differs, even as None
    drawn.write_text(json.dumps(run(15, 8, 8, draw_seed=None)))
    rebased = run(9, 8, 16)
    rebased["seeds"][0]["base_dice"] = 0.5
    moved = tmp_path / "rebased.json"
    moved.write_text(json.dumps(rebased))
    broken = tmp_path / "broken.json"
    broken.write_text('{"settings": ')
    refused = [(other, "differs from"), (drawn, "in draw_seed$"), (paths[0], "discriminator, random twice"),
               (moved, "another base model"), (broken, "cannot read")]  # fmt: skip
    for extra, message in refused:
        with pytest.raises(SystemExit, match=message):
            main(["--merge", *map(str, paths), str(extra)])
