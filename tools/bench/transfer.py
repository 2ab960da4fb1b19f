"""Transfer learning: kelp tiles from scratch vs fine-tuned from a Fat Checker (liver EM) model.

Pretrains on synthetic ``fatchecker`` cubes (3D, 1 channel), then trains on synthetic ``kelp`` tiles (2D,
4 bands) with a share of the labelled tiles (label fractions), from scratch and starting from the EM
model (``init_from``: the stem adapted to 4 bands, the head kept), with the same budget (epochs x crops)
and several seeds. Scores: Dice on the kelp test split. Baseline: training from scratch.

    python -m tools.bench.transfer --quick --figure docs/images/transfer.png   # ~15 min on 2 CPU cores
    python -m tools.bench.transfer --tiny                                       # the test suite's
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
from tcupgan.demo import dice
from tcupgan.inference import predict_store
from tcupgan.training.cli import fit_config
from tools.bench.common import bench_cli

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SETTINGS = [
    "fractions",
    "seeds",
    "epochs",
    "pretrain_epochs",
    "samples",
    "tiles",
    "em_cubes",
    "size",
    "widths",
    "finetune_args",
]


def _fit(config: str, store: Path, run: Path, args: argparse.Namespace, crop: list[int], seed: int,
         epochs: int, extra: Sequence[str] = ()) -> str:  # fmt: skip
    return fit_config(
        CONFIGS / config, store, run, epochs=epochs, seed=seed, samples=args.samples, validate_every=epochs,
        extra=["--model.widths", str(args.widths), "--model.disc_width", "8", "--model.disc_layers", "3",
               "--model.val_roi", str(crop), "--data.crop_size", str(crop), "--data.batch_size", "4",
               "--data.max_val_cubes", "4", *extra],
    )  # fmt: skip


def run(args: argparse.Namespace) -> dict:
    if args.tiny:
        args.fractions, args.seeds, args.epochs, args.pretrain_epochs = [0.25, 1.0], [0], 1, 1
        args.samples, args.tiles, args.size, args.widths = 8, 12, 32, [4, 8, 16]
    logging.getLogger("lightning").setLevel(logging.WARNING)
    start = time.perf_counter()
    size = args.size
    curves: dict[str, dict[str, list[float]]] = {"scratch": {}, "fine-tuned": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize("fatchecker", tmp / "em.zarr", n=args.em_cubes, shape=(16, size, size))
        source = _fit("fatchecker.yaml", tmp / "em.zarr", tmp / "em", args, [8, size, size], 0,
                      args.pretrain_epochs, ["--model.depth_kernel", "1"])  # fmt: skip
        pretrain_seconds = time.perf_counter() - start
        synthesize("kelp", tmp / "kelp.zarr", n=args.tiles, shape=(1, size, size))
        store = CubeStore(tmp / "kelp.zarr")
        train, test = len(store.names(split="train")), store.names(split="test")
        for fraction in args.fractions:
            for seed in args.seeds:
                tuned = ["--model.init_from", source, *args.finetune_args.split()]
                for arm, extra in (("scratch", []), ("fine-tuned", tuned)):
                    run_dir = tmp / f"{arm}-{fraction}-{seed}"
                    extra = ["--data.label_fraction", str(fraction), *extra]
                    ckpt = _fit("floating_forests.yaml", tmp / "kelp.zarr", run_dir, args, [1, size, size],
                                seed, args.epochs, extra)  # fmt: skip
                    predict_store(ckpt, tmp / "kelp.zarr", cubes=test, overwrite=True)
                    score = dice(tmp / "kelp.zarr", tmp / "kelp.zarr", test)
                    curves[arm].setdefault(str(fraction), []).append(round(score, 4))
    summary = {
        str(f): {
            arm: {"mean": round(float(np.mean(c[str(f)])), 3), "sd": round(float(np.std(c[str(f)])), 3)}
            for arm, c in curves.items()
        }
        for f in args.fractions
    }
    for row in summary.values():
        row["gain"] = round(row["fine-tuned"]["mean"] - row["scratch"]["mean"], 3)
    if args.figure:
        figure(curves, args.fractions, train, Path(args.figure))
    return {
        "baseline": "the same kelp training from scratch (same epochs, crops, seeds and labelled tiles)",
        "settings": {k: getattr(args, k) for k in SETTINGS},
        "train_tiles": train,
        "test_tiles": len(test),
        "summary": summary,
        "dice": curves,
        "pretrain_seconds": round(pretrain_seconds, 1),
        "seconds": round(time.perf_counter() - start, 1),
    }


def figure(curves: dict, fractions: Sequence[float], train: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for arm, colour in (("scratch", "tab:grey"), ("fine-tuned", "tab:blue")):
        values = [curves[arm][str(f)] for f in fractions]
        mean = np.array([np.mean(v) for v in values])
        ax.plot(fractions, mean, "o-", color=colour, label=arm)
        low, high = [min(v) for v in values], [max(v) for v in values]
        ax.fill_between(fractions, low, high, color=colour, alpha=0.2)
    ax.set_xscale("log")
    ax.set_xticks(list(fractions), [f"{f:.0%}\n({max(1, round(f * train))})" for f in fractions])
    ax.set_xlabel("share of labelled kelp tiles (tiles)")
    ax.set_ylabel("test Dice")
    ax.set_title("Kelp from scratch vs fine-tuned from liver EM (band: seed range)", fontsize=9)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="the CPU size (the defaults)")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.1, 0.25, 0.5, 1.0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--tiles", type=int, default=60, help="synthetic kelp tiles (60%% train)")
    p.add_argument("--em-cubes", type=int, default=10, help="synthetic EM cubes to pretrain on")
    p.add_argument("--size", type=int, default=64, help="tile and crop size in pixels (64)")
    p.add_argument("--epochs", type=int, default=12, help="kelp epochs per run (12)")
    p.add_argument("--pretrain-epochs", type=int, default=8, help="EM pretraining epochs (8)")
    p.add_argument("--samples", type=int, default=64, help="crops per epoch (64)")
    p.add_argument("--widths", type=int, nargs="+", default=[8, 16, 32, 64], help="generator widths")
    p.add_argument("--figure", help="PNG: Dice vs label fraction, scratch and fine-tuned")
    p.add_argument(
        "--finetune-args", default="", help="more `fit` options for the fine-tuned arm, e.g. "
        "'--model.reset_discriminator true --model.freeze encoder'",
    )  # fmt: skip


FIGURE = "images/transfer.png"  # under docs/


def section(s: dict) -> list[str]:
    """This benchmark's section of docs/benchmarks.md."""
    settings = s["settings"]
    lines = [
        "## Transfer learning",
        "",
        f"`python -m tools.bench.transfer`: kelp tiles (synthetic, 4 bands, {settings['size']} px; "
        f"{s['train_tiles']} train, {s['test_tiles']} test) trained from scratch and fine-tuned from a "
        f"model pretrained on synthetic liver EM ({settings['em_cubes']} cubes, "
        f"{settings['pretrain_epochs']} epochs), same budget ({settings['epochs']} epochs x "
        f"{settings['samples']} crops), seeds {settings['seeds']}. Test Dice, mean ± sd over seeds:",
        "",
        "| labelled tiles | scratch | fine-tuned | gain |",
        "| --- | --- | --- | --- |",
    ]
    for fraction, row in s["summary"].items():
        tiles = max(1, round(float(fraction) * s["train_tiles"]))
        lines.append(
            f"| {float(fraction):.0%} ({tiles}) | {row['scratch']['mean']:.3f} ± {row['scratch']['sd']:.3f} "
            f"| {row['fine-tuned']['mean']:.3f} ± {row['fine-tuned']['sd']:.3f} | **{row['gain']:+.3f}** |"
        )
    same_material = (
        "These two synthetic families share neither images nor structures. Transfer between projects "
        "imaging the same material, measured on the real ssTEM stack: "
        "[studies/transfer](../studies/transfer/README.md)."
    )
    return [*lines, "", same_material, "", f"![Dice against label fraction]({FIGURE})"]


def main(argv: Sequence[str] | None = None) -> dict:
    return bench_cli(__doc__, argv, run, add_arguments)


if __name__ == "__main__":
    main()
