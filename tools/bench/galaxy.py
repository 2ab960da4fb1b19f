"""Galaxy spiral arms and bars on synthetic galaxies: held-out Dice, calibration and bar-length error.

Trains ``configs/galaxy_spiral_bar.yaml`` (soft vote-fraction targets, L1) on synthetic galaxies, predicts
the test split and scores against the true structures. Baseline: the simulated volunteers themselves (the
majority of 15 noisy drawings, vote fraction ≥ 0.5) scored the same way — the model learns from those votes,
so matching them is the bar to clear. Also writes an overlay figure of test galaxies.

    python -m tools.bench.galaxy --quick --figure docs/images/galaxy_overlays.png   # ~10 min, 2 CPU cores
    python -m tools.bench.galaxy --tiny                                              # the test suite's
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tcupgan.data import CubeStore, synthesize
from tcupgan.galaxy import measure_galaxy
from tcupgan.inference import predict_store
from tcupgan.metrics.lesion_wise import mask_dice
from tcupgan.training.cli import fit_config
from tcupgan.viz import display_image, outline, save_panels
from tools.bench.common import bench_cli

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "galaxy_spiral_bar.yaml"


def score(maps: np.ndarray, label: np.ndarray, attrs: dict) -> dict:
    """Scores of (2, H, W) fraction maps against one galaxy's true arms and bar."""
    arms, bar = maps >= 0.5
    true_arms, true_bar = (label & 1) > 0, (label & 2) > 0
    length = measure_galaxy(maps[0], maps[1], centre=tuple(attrs["centre_yx"]))["bar_length_px"]
    out = {"arm_dice": mask_dice(arms, true_arms), "barred": bool(true_bar.any()), "bar_found": length > 0}
    if true_bar.any():
        out["bar_dice"] = mask_dice(bar, true_bar)
        if length > 0:
            out["bar_length_error"] = abs(length - attrs["bar_length_px"]) / attrs["bar_length_px"]
    return out


def summarise(rows: list[dict]) -> dict:
    barred = [r for r in rows if r["barred"]]
    found = [r for r in barred if r["bar_found"]]
    return {
        "arm_dice_mean": round(float(np.mean([r["arm_dice"] for r in rows])), 3),
        "bar_dice_mean": round(float(np.mean([r["bar_dice"] for r in barred])), 3) if barred else None,
        "bars_found": f"{len(found)}/{len(barred)}",
        "false_bars": f"{sum(r['bar_found'] for r in rows if not r['barred'])}/{len(rows) - len(barred)}",
        "bar_length_median_rel_error": (
            round(float(np.median([r["bar_length_error"] for r in found])), 3) if found else None
        ),
    }


def figure(store: CubeStore, names: list[str], path: Path) -> None:
    rows = []
    for name in names:
        cube = store[name]
        image = cube.image[:, 0]
        label = cube.label[0]
        votes = cube["vote_fraction"][:, 0]
        prob = cube["probability"][:, 0] / 255
        panels = [(name, display_image(image))]
        for title, arms, bar in (
            ("truth", (label & 1) > 0, (label & 2) > 0),
            ("volunteers >= 0.5", votes[0] >= 0.5, votes[1] >= 0.5),
            ("model >= 0.5", prob[0] >= 0.5, prob[1] >= 0.5),
        ):
            drawn = outline(display_image(image), arms, (1.0, 0.2, 0.2))
            panels.append((f"{title}: arms red, bar green", outline(drawn, bar, (0.2, 1.0, 0.2))))
        panels.append(("model bar fraction", np.repeat(prob[1][..., None], 3, axis=2)))
        rows.append(panels)
    save_panels(rows, path)


def run(args: argparse.Namespace) -> dict:
    if args.tiny:
        args.n, args.epochs, args.samples, args.widths, args.size = 10, 1, 8, [4, 8, 16], 64
    logging.getLogger("lightning").setLevel(logging.WARNING)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(args.workdir or scratch)
        shape = (1, args.size, args.size)
        synthesize("galaxy", tmp / "g.zarr", n=args.n, seed=args.seed, shape=shape)
        ckpt = fit_config(
            CONFIG, tmp / "g.zarr", tmp / "run", epochs=args.epochs, seed=args.seed, samples=args.samples,
            validate_every=args.epochs,
            extra=["--model.widths", str(args.widths), "--model.val_roi", str(list(shape)),
                   "--data.crop_size", str(list(shape)), "--data.max_val_cubes", "8",
                   *(["--model.seg_loss", args.seg_loss] if args.seg_loss else [])],
        )  # fmt: skip
        train_seconds = time.perf_counter() - start
        predict_store(ckpt, tmp / "g.zarr", split="test")
        store = CubeStore(tmp / "g.zarr")
        test = store.names(split="test")
        model_rows, volunteer_rows, calibration = [], [], []
        for name in test:
            cube = store[name]
            label, attrs, votes = cube.label[0], cube.attrs, cube["vote_fraction"][:, 0]
            prob = cube["probability"][:, 0] / 255
            model_rows.append(score(prob, label, attrs))
            volunteer_rows.append(score(votes, label, attrs))
            calibration.append(float(np.abs(prob - votes).mean()))
        if args.figure:
            barred = [n for n, r in zip(test, model_rows, strict=True) if r["barred"]]
            plain = [n for n in test if n not in barred]
            figure(store, (barred[:3] + plain[:1])[:4], Path(args.figure))
    return {
        "baseline": "the simulated volunteers' majority (vote fraction >= 0.5), scored the same way",
        "settings": {
            k: getattr(args, k) for k in ("n", "epochs", "samples", "widths", "size", "seed", "seg_loss")
        },
        "test_galaxies": len(test),
        "model": summarise(model_rows),
        "volunteers": summarise(volunteer_rows),
        "mean_abs_error_vs_vote_fraction": round(float(np.mean(calibration)), 4),
        "train_seconds": round(train_seconds, 1),
        "seconds": round(time.perf_counter() - start, 1),
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="the CPU size (the defaults)")
    p.add_argument("--n", type=int, default=150, help="synthetic galaxies: 60%% train, 20%% val, 20%% test")
    p.add_argument("--size", type=int, default=128, help="image size in pixels (128)")
    p.add_argument("--epochs", type=int, default=32, help="training epochs (32)")
    p.add_argument("--samples", type=int, default=256, help="training images per epoch (256)")
    p.add_argument("--widths", type=int, nargs="+", default=[8, 16, 32, 64], help="generator widths")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seg-loss", default=None, help="override the config's seg_loss (l1, bce, dicece ...)")
    p.add_argument("--figure", help="PNG of test galaxies: truth, volunteers, model")
    p.add_argument("--workdir", help="keep the store, run and predictions here (default: a temporary folder)")


FIGURE = "images/galaxy_overlays.png"  # under docs/


def section(s: dict) -> list[str]:
    """This benchmark's section of docs/benchmarks.md."""
    m, v, settings = s["model"], s["volunteers"], s["settings"]
    rows = [
        ("spiral-arm Dice", m["arm_dice_mean"], v["arm_dice_mean"]),
        ("bar Dice (barred galaxies)", m["bar_dice_mean"], v["bar_dice_mean"]),
        ("bars found / false bars", f"{m['bars_found']} / {m['false_bars']}",
         f"{v['bars_found']} / {v['false_bars']}"),
        ("bar length, median relative error", m["bar_length_median_rel_error"],
         v["bar_length_median_rel_error"]),
    ]  # fmt: skip
    return [
        "## Galaxy spiral arms and bars",
        "",
        f"`python -m tools.bench.galaxy`: trained on vote fractions of {settings['n']} synthetic galaxies "
        f"({settings['size']} px, {settings['epochs']} epochs x {settings['samples']} images), scored on "
        f"{s['test_galaxies']} test galaxies against the true structures. Baseline: the simulated "
        "volunteers' own majority (vote fraction ≥ 0.5), which the model learns from.",
        "",
        "| | model | volunteers' majority |",
        "| --- | --- | --- |",
        *(f"| {what} | {model} | {volunteers} |" for what, model, volunteers in rows),
        "",
        "Mean absolute difference between the model's fractions and the volunteers' vote fractions: "
        f"{s['mean_abs_error_vs_vote_fraction']}.",
        "",
        f"![test galaxies: truth, volunteers, model]({FIGURE})",
    ]


def main(argv: Sequence[str] | None = None) -> dict:
    return bench_cli(__doc__, argv, run, add_arguments)


if __name__ == "__main__":
    main()
