"""How much volunteer effort does machine selection save? A simulation of the human-machine loop
(the effort study, studies/effort/README.md).

Train on unshifted fatchecker cubes; a pool of domain-shifted cubes has no labels. Each round a strategy
(discriminator, entropy, hybrid, random) picks ``budget`` new pool slices with the current model;
simulated volunteers correct them (three per slice, tracing the truth with vertex noise and 10% missed
regions, combined by harvest's own rasterisation and consensus); the base model is fine-tuned on labels
plus every correction so far (same epochs each round; ``--corrections-share`` of the crops from corrected
cubes, as ``data.corrections_share`` in a real retraining); Dice is measured on held-out shifted cubes that
volunteers never see. Reference: the same fine-tune with every pool slice corrected; zero point: the same
fine-tune with nothing corrected (what more training alone gives).

Effort of a strategy = slices corrected until Dice reaches 95% of the reference Dice; effort reduction =
1 - effort / pool slices. Every strategy runs ``--rounds`` rounds (its curve and share of the correction
gain); one still short of the target goes on until it reaches it or has run ``--max-rounds``, so that its
effort is measured rather than assumed to be the whole pool. Prints JSON (each strategy's slices against
random's, seed by seed, in ``vs_random``); writes a learning-curve figure with ``--figure``. Two baselines
read the truth, which no project has: ``oracle`` (the slices the current model gets most wrong) and
``shift_oracle`` (random slices of the shifted cubes): what picking could save at most in this simulation.
``random_cubes`` is the control of ``--sampling cubes``: its draws from a random order of the cubes.
Random's effort on a seed is one draw of its slices; ``--draw-seed`` draws them again on the same base
model, pool and volunteers, and ``--random-draws K`` draws them K times in one run (``random#2`` ...) and
pairs every strategy with their mean, to tell a strategy's lead from the luck of random's one draw.

The defaults are the setting the study measured over five seeds, each choice there because a
simpler one measured noise:

- 12 shifted cubes, 6 in the pool and 6 held out: with 2 + 2, fine-tuning on the whole corrected pool
  could *lower* held-out Dice (the model learnt those two cubes).
- ``--shift 0.5`` and 12 fine-tuning epochs: the full shift is barely learnable at quick-mode size
  (held-out Dice ~0.15 even from true labels), and 3 epochs let corrections show nothing.
- ``--familiar 6`` unshifted cubes in the pool beside the shifted ones: a pool of shifted cubes only is one
  where every slice teaches about as much, so random picks well; a project's unlabelled data is mostly
  like what the model knows, with the new domain inside it (held-out cubes stay shifted).
- ``--average 0.5``: a GAN fine-tune's last-step weights are one draw from an orbit; averaging each
  fine-tune's weights over its last half (``tcupgan.training.averaging.TailAveraging``) cut the spread of
  three repeated fine-tunes from 0.043 to 0.004 Dice with the whole pool corrected and 0.040 to 0.016
  with 16 slices.

A seed of that setting is 22 fine-tunes of 12 epochs (more where a strategy goes on past five rounds),
40-85 s each on 2 CPU cores (the machines we measured on differ twofold): 16-30 minutes. ``--quick``
runs one seed of three rounds with fine-tunes of 6 epochs: 13 minutes for the five default strategies
on the faster machine (the same seed with 12 epochs and four strategies: 23 on the slower one).

    python -m studies.effort.simulate --quick     # seed 0, 3 rounds, 6-epoch fine-tunes
    python -m studies.effort.simulate --quick --epochs 12 --rounds 5 --max-rounds 12 --seeds 0 1 2 3 4
    python -m studies.effort.simulate             # 32 x 128 x 128 cubes, 5 seeds: for a GPU
    python -m studies.effort.simulate --tiny      # the test suite's smoke run
    python -m studies.effort.simulate --merge seed*.json --figure all.png   # seeds run apart, as one
    python -m studies.effort.simulate --quick --epochs 12 --rounds 5 --max-rounds 12 --seeds 0 \\
        --strategies oracle shift_oracle     # the ceilings of selection
    python -m studies.effort.simulate --quick --epochs 12 --rounds 5 --max-rounds 12 --seeds 0 \\
        --strategies random --draw-seed 100  # random's picks drawn again
    python -m studies.effort.simulate --quick --epochs 12 --rounds 5 --max-rounds 12 --seeds 12 \\
        --strategies novelty random --random-draws 2   # against the mean of random's two draws
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from tcupgan.data import CubeStore
from tcupgan.data.synth import synthetic_shift
from tcupgan.demo import build_stores, dice, fit_demo_model
from tcupgan.inference import predict_store
from tcupgan.inference.scorers import SCORERS, SlicePool, SliceScorer, register
from tcupgan.metrics.evaluate import slice_dice
from tcupgan.selection import SAMPLINGS, SelectionRules, sampling_for, select_slices
from tcupgan.zooniverse.harvest import class_values, write_corrections
from tcupgan.zooniverse.testing.volunteers import simulate_consensus
from tools.bench.common import at_least, bench_cli, crop_share, share

STRATEGIES = ("discriminator", *SCORERS)  # the product's scorers, and realness under its older name
DEFAULT_STRATEGIES = ("discriminator", "novelty", "entropy", "hybrid", "random")
TINY_STRATEGIES = ("discriminator", "random")  # --tiny's smoke run, unless --strategies names others
# What no project can run, only a simulation that holds the truth: how much picking could gain at all.
ORACLES = ("oracle", "shift_oracle")
# A control for select's ``cubes`` sampling: its draws gather a round's slices in a few cubes; drawn from a
# random order of the cubes, what that gathering alone is worth, with no signal behind the order.
CONTROLS = ("random_cubes",)
# How pick() takes the baselines' picks whatever --sampling says: shift_oracle as random draws (None).
FIXED_SAMPLING = {"shift_oracle": None, "random_cubes": "cubes", "oracle": "top"}
SETTINGS = (
    "quick", "tiny", "shift", "shifted_cubes", "familiar", "rounds", "budget", "base_epochs", "epochs",
    "seeds", "samples", "corrections_share", "average", "fit_args", "max_rounds", "per_cube",
    "sampling", "draw_seed", "random_draws",
)  # fmt: skip


def correct(work: Path, truth: Path, picks: list[tuple[str, int]], rng: np.random.Generator) -> None:
    """Simulated volunteers correct ``picks``; their consensus goes into the work store's corrections."""
    store, hidden = CubeStore(work, mode="r+"), CubeStore(truth)
    classes = class_values(store)
    by_cube: dict[str, dict[int, dict]] = {}
    for name, z in picks:
        label, votes = simulate_consensus(hidden[name].label[z], classes, store.task, rng)
        by_cube.setdefault(name, {})[z] = {"label": label, "votes": votes, "provenance": {"simulated": True}}
    for name, slices in by_cube.items():
        write_corrections(store, name, slices, sorted(set(classes.values())))


def pool_slices(work: Path, pool: list[str]) -> list[tuple[str, int]]:
    """Every pool slice with content (what a strategy can pick from)."""
    rows = select_slices(work, 10**9, strategy="random", rules=SelectionRules(min_gap=1), cubes=pool)
    return [(r["cube"], r["slice"]) for r in rows]


def tune_and_score(work: Path, run: Path, base: str, args: argparse.Namespace, seed: int,
                   heldout: list[str]) -> tuple[float, str]:  # fmt: skip
    """Fine-tune the base model on labels + corrections and predict the held-out cubes: their Dice and
    the fine-tuned checkpoint (which predicts the pool only if another round follows)."""
    quick = args.quick or args.tiny
    extra = ["--data.corrections_share", str(args.corrections_share), *shlex.split(args.fit_args)]
    if args.average:  # appended to the config's callbacks; init args go to the last one appended
        extra += ["--trainer.callbacks+=tcupgan.training.averaging.TailAveraging",
                  f"--trainer.callbacks.tail={args.average}"]  # fmt: skip
    ckpt = fit_demo_model(
        work, run, args.epochs, quick, init_from=base, seed=seed, samples=args.samples, extra=extra
    )
    predict_store(ckpt, work, cubes=heldout, overwrite=True)
    return dice(work, work, heldout), ckpt


def one_seed(tmp: Path, seed: int, args: argparse.Namespace) -> dict:
    quick = args.quick or args.tiny
    work, truth, pool, heldout = build_stores(
        tmp / "base", quick, seed=seed, shifted=args.shifted_cubes, shift=args.shift, familiar=args.familiar
    )
    base = fit_demo_model(
        work, tmp / "base-run", args.base_epochs, quick, seed=seed, samples=args.samples,
        extra=shlex.split(args.fit_args),
    )  # fmt: skip
    predict_store(base, work, cubes=pool + heldout)
    candidates = pool_slices(work, pool)
    result = {
        "seed": seed,
        "pool_slices": len(candidates),
        "base_dice": dice(work, work, heldout),
        "curves": {},
        "effort": {},
        "shifted_picks": {},  # per strategy and round: picks from shifted cubes (the rest: --familiar ones)
        "picks": {},  # per strategy and round: [cube, slice] of every pick
        "sampling": {},  # per strategy: how its rounds took its ranking (select's sampling_for)
    }
    uncorrected, reference = tmp / "uncorrected.zarr", tmp / "reference.zarr"
    shutil.copytree(work, uncorrected)
    result["uncorrected_dice"] = tune_and_score(uncorrected, tmp / "zero-run", base, args, seed, heldout)[0]
    shutil.copytree(work, reference)
    correct(reference, truth, candidates, np.random.default_rng(seed))
    result["all_corrected_dice"] = tune_and_score(reference, tmp / "ref-run", base, args, seed, heldout)[0]
    target = 0.95 * result["all_corrected_dice"]
    hidden = CubeStore(truth)  # the pool cubes as synthesised, with their recorded shift
    shifted_pool = {name for name in pool if synthetic_shift(hidden[name]) > 0}
    # then the corrections were not needed at all: training longer without them reached the target
    result["uncorrected_reaches_target"] = result["uncorrected_dice"] >= target
    first_draw = seed if args.draw_seed is None else args.draw_seed
    for name, strategy, draws in strategy_runs(args.strategies, args.random_draws, first_draw):
        store = tmp / f"{name.replace('#', '-')}.zarr"
        shutil.copytree(work, store)
        rng = np.random.default_rng(seed)
        corrected, ckpt = 0, base  # the copied store holds the base model's predictions of the pool
        fixed = strategy in FIXED_SAMPLING
        sampling = FIXED_SAMPLING[strategy] if fixed else sampling_for(strategy, args.sampling)
        result["sampling"][name] = sampling
        curve, shifted, picks = [(0, result["uncorrected_dice"])], [], []
        for r in range(args.max_rounds):  # `tcupgan select`'s own rules: never a corrected slice again, gap 2
            if not another_round(curve, target, r, args.rounds):
                break
            if r:  # the pool as the last fine-tune sees it
                predict_store(ckpt, store, cubes=pool, overwrite=True)
            rows = pick(store, hidden, strategy, pool, shifted_pool, args, sampling, draws * 100 + r)
            correct(store, truth, [(x["cube"], x["slice"]) for x in rows], rng)
            corrected += len(rows)
            shifted.append(sum(x["cube"] in shifted_pool for x in rows))
            picks.append([[x["cube"], x["slice"]] for x in rows])
            score, ckpt = tune_and_score(store, tmp / f"{store.stem}-run{r}", base, args, seed, heldout)
            curve.append((corrected, score))
        reached = [n for n, d in curve[1:] if d >= target]
        result["curves"][name] = curve
        result["effort"][name] = reached[0] if reached else None
        result["shifted_picks"][name] = shifted
        result["picks"][name] = picks
    return result


def strategy_runs(
    strategies: Sequence[str], random_draws: int, first_draw: int
) -> Iterator[tuple[str, str, int]]:
    """(name in the results, strategy, draw seed) per run of a seed: ``random`` once per ``random_draws``,
    its k-th draw named ``random#k`` with draw seed + 100 (k - 1), so the second draw of seed s is what
    ``--draw-seed s+100`` alone gives. Round r of a run draws with seed draw seed x 100 + r."""
    for strategy in strategies:
        yield strategy, strategy, first_draw
        if strategy == "random":
            for k in range(2, random_draws + 1):
                yield f"random#{k}", strategy, first_draw + 100 * (k - 1)


def is_random_draw(name: str) -> bool:
    """Whether a result's strategy name is one of random's draws (``strategy_runs``)."""
    return name == "random" or name.startswith("random#")


class Oracle(SliceScorer):
    """The current model's true per-slice Dice error, worst first: what no project can rank by."""

    name = "oracle"

    def __init__(self, store: Path | None = None, hidden: CubeStore | None = None) -> None:
        self.store, self.hidden = store, hidden

    def priority(self, pool: SlicePool, rng: np.random.Generator) -> np.ndarray:
        predicted = CubeStore(self.store)
        return pool.per_cube(
            lambda n: 1 - slice_dice(predicted[n]["prediction"][...] > 0, self.hidden[n].label[...] > 0)
        )


class RandomCubes(SliceScorer):
    """A seeded random order of the cubes, drawn as ``cubes`` sampling draws: what gathering a round's
    slices in a few cubes is worth with no signal behind the order."""

    name, sampling = "random_cubes", "cubes"

    def priority(self, pool: SlicePool, rng: np.random.Generator) -> np.ndarray:
        order = dict(zip(sorted(pool.content), rng.random(len(pool.content)), strict=True))
        return pool.per_cube(lambda n: np.full(len(pool.content[n]), order[n]))


register(RandomCubes())


def pick(store: Path, hidden: CubeStore, strategy: str, pool: list[str], shifted_pool: set[str],
         args: argparse.Namespace, sampling: str | None, seed: int) -> list[dict]:  # fmt: skip
    """A round's picks under `tcupgan select`'s rules. The ``ORACLES`` read the truth: ``oracle`` ranks by
    the current model's true per-slice Dice error (the selection study's oracle, worst first),
    ``shift_oracle`` draws at random from the shifted pool cubes only. What they save against random is
    the most a ranking by error, or a perfect detector of the shift, could save in this simulation."""
    rules = SelectionRules(per_cube=args.per_cube)
    if strategy == "shift_oracle":
        strategy, pool = "random", sorted(shifted_pool)
    if strategy == "oracle":
        register(Oracle(store, hidden))
    return select_slices(store, args.budget, strategy=strategy, sampling=sampling, rules=rules, cubes=pool,
                         seed=seed)  # fmt: skip


def another_round(curve: list[tuple[int, float]], target: float, done: int, rounds: int) -> bool:
    """Whether a strategy with ``done`` rounds and this curve picks again: every strategy runs ``rounds``
    (the curves and gain shares compare like with like), one short of the target goes on (its effort is
    then measured, not taken as the whole pool); ``--max-rounds`` bounds the loop."""
    return done < rounds or not any(dice >= target for _, dice in curve[1:])


def summarise(seeds: list[dict], strategies: Sequence[str], rounds: int | None = None) -> dict:
    """Mean and spread of effort reduction per strategy over the seeds that can measure it.

    A seed whose fine-tune without corrections already reaches 95% of the all-corrected Dice (corrections
    did not help at all) measures nothing and is left out and counted. An unreached target counts as every
    pool slice corrected (reduction 0): an upper bound on effort, so a lower bound on its reduction.
    ``gain_share`` is a complement without the target's cliff (a curve at 94.9% of the reference counts as
    no reduction at all): the share of the whole pool's correction gain (all corrected minus nothing
    corrected) a strategy's rounds hold, averaged over its first ``rounds`` rounds (all where None), the
    ones every strategy ran.
    """
    usable = [res for res in seeds if not res["uncorrected_reaches_target"]]
    out: dict = {"seeds_without_signal": len(seeds) - len(usable)}
    for s in strategies:
        reductions = [1 - slices_needed(res, s) / res["pool_slices"] for res in usable]
        gains = [gain_share(res, s, rounds) for res in usable]
        out[s] = {
            "effort_reduction_mean": float(np.mean(reductions)) if reductions else None,
            "effort_reduction_std": float(np.std(reductions)) if reductions else None,
            "seeds_not_reaching_target": sum(res["effort"][s] is None for res in usable),
            "gain_share_mean": float(np.mean(gains)) if gains else None,
            "gain_share_std": float(np.std(gains)) if gains else None,
        }
    draws = [s for s in strategies if is_random_draw(s)]
    if draws and usable:
        out["random_draws"] = len(draws)
        random_mean = np.mean([out[s]["effort_reduction_mean"] for s in draws])
        for s in strategies:
            out[s]["minus_random"] = out[s]["effort_reduction_mean"] - float(random_mean)
            out[s]["vs_random"] = paired_with_random(usable, s)
    return out


def slices_needed(res: dict, strategy: str) -> int:
    """A seed's effort for ``strategy``; an unreached target counts as every pool slice corrected."""
    return res["effort"][strategy] or res["pool_slices"]


def paired_with_random(seeds: list[dict], strategy: str) -> dict:
    """Slices ``strategy`` needed minus random's, seed by seed (``slices_needed``; random's: the mean of its
    draws on the seed, ``--random-draws``, as one draw's luck spans tens of slices).

    Both ran on the same base model, pool and held-out cubes in a seed, so the paired difference takes
    out what the seeds share; the seed-to-seed spread of effort (tens of slices) is wider than the gaps
    between strategies, and a difference of means alone cannot say whether a lead is one seed's luck.
    Reported as seeds with fewer / as many / more slices, with the mean and spread of the difference."""
    diffs = [
        slices_needed(res, strategy)
        - float(np.mean([slices_needed(res, s) for s in res["effort"] if is_random_draw(s)]))
        for res in seeds
    ]
    return {
        "fewer": sum(d < 0 for d in diffs),
        "equal": sum(d == 0 for d in diffs),
        "more": sum(d > 0 for d in diffs),
        "slices_mean": float(np.mean(diffs)),
        "slices_std": float(np.std(diffs)),
    }


def merge(paths: Sequence[str]) -> dict:
    """One result from runs of the same setting done apart (other seeds, or other strategies on the same
    seeds: separate jobs, machines or days), summarised again. A seed run twice must have started from
    the same base model (the runs are seeded, so its base, nothing-corrected and all-corrected Dice repeat
    to the last digit) and measured each strategy once. Runs whose settings differ beyond their seeds, or
    that leave a strategy unmeasured on a seed, are refused: their efforts would not be comparable."""
    runs = []
    for path in paths:
        try:
            runs.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise SystemExit(f"--merge: cannot read {path} as this benchmark's JSON: {exc}") from exc
        if (
            not isinstance(runs[-1], dict)
            or not {"settings", "summary", "seeds", "seconds"} <= runs[-1].keys()
        ):
            raise SystemExit(f"--merge: {path} is not an output of this benchmark (settings, summary, seeds)")
    settings = [{k: v for k, v in r["settings"].items() if k != "seeds"} for r in runs]
    for path, other in zip(paths[1:], settings[1:], strict=True):
        if other != settings[0]:
            first = settings[0]  # a setting only one of them records differs too
            differ = sorted(other.keys() ^ first.keys() | {k for k in other.keys() & first.keys()
                                                           if other[k] != first[k]})  # fmt: skip
            raise SystemExit(f"--merge: {path} differs from {paths[0]} in {', '.join(differ)}")
    seeds: dict[int, dict] = {}
    for path, run in zip(paths, runs, strict=True):
        for res in run["seeds"]:
            _add_seed(seeds, res, path)
    strategies = list(dict.fromkeys(s for res in seeds.values() for s in res["effort"]))
    missing = [(n, s) for n, res in seeds.items() for s in strategies if s not in res["effort"]]
    if missing:
        raise SystemExit(f"--merge: (seed, strategy) not measured: {missing}; merge fewer seeds or run them")
    return {
        "baseline": runs[0]["baseline"],
        "settings": {**runs[0]["settings"], "seeds": list(seeds)},
        "summary": summarise(list(seeds.values()), strategies, runs[0]["settings"]["rounds"]),
        "seeds": list(seeds.values()),
        "seconds": round(sum(r["seconds"] for r in runs), 1),
        "merged": [str(p) for p in paths],
    }


PER_STRATEGY = ("curves", "effort", "shifted_picks", "picks", "sampling")  # a seed's results by strategy


def _add_seed(seeds: dict[int, dict], res: dict, path: str) -> None:
    """``res`` into ``seeds``: a new seed as it is, a seed seen before gains its strategies."""
    known = seeds.get(res["seed"])
    if known is None:
        seeds[res["seed"]] = {k: dict(v) if k in PER_STRATEGY else v for k, v in res.items()}
        return
    shared = ("pool_slices", "base_dice", "uncorrected_dice", "all_corrected_dice")
    if any(known[k] != res[k] for k in shared):
        raise SystemExit(f"--merge: seed {res['seed']} in {path} started from another base model ({shared})")
    twice = sorted(set(known["effort"]) & set(res["effort"]))
    if twice:
        raise SystemExit(f"--merge: seed {res['seed']} measures {', '.join(twice)} twice")
    for key in PER_STRATEGY:
        known.setdefault(key, {}).update(res.get(key, {}))


def gain_share(res: dict, strategy: str, rounds: int | None = None) -> float:
    """Mean over a strategy's first ``rounds`` rounds of (Dice - nothing corrected) / (all corrected -
    nothing corrected)."""
    gain = res["all_corrected_dice"] - res["uncorrected_dice"]
    curve = res["curves"][strategy][1:][:rounds]
    return float(np.mean([(d - res["uncorrected_dice"]) / gain for _, d in curve]))


def figure(seeds: list[dict], path: Path) -> None:
    """One panel per seed: seeds differ in Dice level more than strategies differ, so a mean hides both."""
    import matplotlib.pyplot as plt

    cols = min(len(seeds), 5)  # rows of five: a merged run of a dozen seeds stays readable
    rows = -(-len(seeds) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols + 1, 4.2 * rows), sharey=True, squeeze=False)
    for ax in axes.flat[len(seeds) :]:
        ax.axis("off")
    for ax, res in zip(axes.flat, seeds, strict=False):
        for i, (strategy, curve) in enumerate(res["curves"].items()):
            x, y = np.array(curve, float).T
            ax.plot(x, y, marker="o", color=f"C{i}", label=strategy)
        ref = res["all_corrected_dice"]
        ax.axhline(ref, color="k", ls="--", lw=1, label=f"all {res['pool_slices']} pool slices corrected")
        ax.axhline(0.95 * ref, color="grey", ls=":", lw=1, label="95% of that (the effort target)")
        signal = "" if not res["uncorrected_reaches_target"] else " (no signal: 0 corrections reach it)"
        ax.set(xlabel="pool slices corrected by volunteers", title=f"seed {res['seed']}{signal}")
    for ax in axes[:, 0]:
        ax.set_ylabel("Dice on held-out shifted cubes")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Volunteer effort: Dice vs slices corrected")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> dict:
    if args.merge:
        result = merge(args.merge)
        if args.figure:
            figure(result["seeds"], Path(args.figure))
        return result
    if args.tiny:
        args.rounds, args.budget, args.base_epochs, args.epochs, args.seeds, args.samples = 1, 2, 1, 1, [0], 8
        args.shifted_cubes, args.familiar = 4, 0
    args.strategies = args.strategies or list(TINY_STRATEGIES if args.tiny else DEFAULT_STRATEGIES)
    args.rounds = args.rounds or (3 if args.quick else 5)
    args.epochs = args.epochs or (6 if args.quick else 12)
    args.seeds = args.seeds or ([0] if args.quick else [0, 1, 2, 3, 4])
    args.max_rounds = args.max_rounds or (args.rounds if args.quick or args.tiny else max(args.rounds, 12))
    if args.max_rounds < args.rounds:  # refused here, not after the base model has trained
        raise SystemExit(
            f"--max-rounds {args.max_rounds} is below --rounds {args.rounds}: it can only add rounds"
        )
    logging.getLogger("lightning").setLevel(logging.WARNING)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        seeds = [one_seed(Path(tmp) / f"seed{s}", s, args) for s in args.seeds]
    result = {
        "baseline": "random selection, and all pool slices corrected (the Dice target is 95% of it)",
        "settings": {k: getattr(args, k) for k in SETTINGS},
        "summary": summarise(seeds, list(seeds[0]["effort"]), args.rounds),
        "seeds": seeds,
        "seconds": round(time.perf_counter() - start, 1),
    }
    if args.figure:
        figure(seeds, Path(args.figure))
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--quick", action="store_true", help="tiny cubes (16 x 64 x 64), under 15 minutes on 2 cores"
    )
    p.add_argument(
        "--shifted-cubes", type=at_least(2, "needs at least 2: one pool and one held-out cube"), default=12,
        help="shifted cubes, half pool and half held out (12)",
    )  # fmt: skip
    p.add_argument(
        "--familiar", type=at_least(0), default=6,
        help="unshifted cubes in the pool beside the shifted ones (6): a pool a strategy must sort",
    )  # fmt: skip
    p.add_argument(
        "--shift", type=share, default=0.5,
        help="strength of the pool's domain shift, 0-1 (0.5; 1: as `tcupgan synth --shift`)",
    )  # fmt: skip
    p.add_argument("--rounds", type=at_least(1), help="selection rounds (5; quick 3)")
    p.add_argument(
        "--max-rounds", type=at_least(1),
        help="rounds a strategy still short of the target may go on to (12; quick: --rounds, no more)",
    )  # fmt: skip
    p.add_argument("--budget", type=at_least(1), default=8, help="slices corrected per round (8)")
    p.add_argument(
        "--per-cube", type=at_least(1), help="at most this many new slices of one cube per round (no cap)"
    )
    p.add_argument(
        "--sampling", choices=SAMPLINGS,
        help="rounds take the top of each ranking, draw by softrank, or draw within the top-ranked cubes "
        "(select's --sampling; default: softrank for the discriminator, cubes for novelty and entropy, "
        "top for the others)",
    )  # fmt: skip
    p.add_argument(
        "--draw-seed", type=int,
        help="seed of the rounds' random draws (default: each seed itself); base model, pool and volunteers "
        "stay the seed's: rerun random with others to see how much of its effort is one draw's luck",
    )  # fmt: skip
    p.add_argument(
        "--random-draws", type=at_least(1), default=1,
        help="draw random's slices this many times on each seed (random, random#2, ...; draw seed + 100 "
        "each); every strategy's 'vs random' is then against the mean of the draws (1)",
    )  # fmt: skip
    p.add_argument("--base-epochs", type=at_least(1), default=8, help="epochs of the base model (8)")
    p.add_argument("--epochs", type=at_least(1), help="fine-tuning epochs per round (12; quick 6)")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (0 1 2 3 4; quick 0)")
    p.add_argument(
        "--samples", type=at_least(1), default=32, help="training crops per epoch in quick mode (32)"
    )
    p.add_argument(
        "--corrections-share", type=crop_share, default=0.5,
        help="share of fine-tuning crops from corrected cubes (0.5; 0 = drawn like any cube, as before)",
    )  # fmt: skip
    p.add_argument(
        "--average", type=share, default=0.5,
        help="average each fine-tune's weights over this last share of its epochs (0.5: the second half; "
        "0: off), so one fine-tune per round is less of a lottery",
    )  # fmt: skip
    p.add_argument(
        "--strategies", nargs="+", choices=STRATEGIES + ORACLES + CONTROLS,
        help=f"strategies to compare ({' '.join(DEFAULT_STRATEGIES)}; tiny: {' '.join(TINY_STRATEGIES)}); "
        "oracle and shift_oracle read the truth: what picking could gain at most; random_cubes: slices "
        "drawn as --sampling cubes draws them from a random order of the cubes",
    )  # fmt: skip
    p.add_argument("--fit-args", default="", help='further fit arguments for every fit (ablations), e.g. '
                   '"--model.seg_loss dicefocal"')  # fmt: skip
    p.add_argument("--figure", help="PNG of the learning curves")
    p.add_argument(
        "--merge", nargs="+", metavar="JSON",
        help="no run: combine earlier outputs of this benchmark in one setting (other seeds, or other "
        "strategies on the same seeds) into one summary, and --figure of all their seeds",
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> dict:
    return bench_cli(__doc__, argv, run, add_arguments)


if __name__ == "__main__":
    main()
