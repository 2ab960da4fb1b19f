"""How well does each selection strategy find the slices the model gets wrong?

    python -m studies.selection.study --out study            # trains the demo model first (~5 minutes)
    python -m studies.selection.study --out study --ckpt runs/demo/.../last.ckpt

Predicts a mix of normal and domain-shifted (``--shift``) fatchecker cubes, then for every slice with
content compares the strategies' rankings with the true per-slice error: the Spearman correlation of
discriminator realness (and novelty, and entropy) with per-slice Dice error, and the share of the total
error that the top 10% / 20% of slices of each ranking hold, against random (mean of 20 seeds). Two totals:
misclassified voxels (``error_share``) and summed per-slice Dice error (``dice_error_share``), each with
the ``oracle``'s share (ranking by the true error: the most any ranking can hold), and how many of each
ranking's top 20% come from the shifted cubes (``shifted_share_top20%``). ``discriminator`` is select's
realness (averaged over five neighbouring slices), the other readings of the verdict are the study's own
scorers (:mod:`studies.selection.scorers`): ``discriminator_alone`` each slice's own realness,
``discriminator_position`` calibrated by depth, ``discriminator_unfamiliar_first`` with the slices whose
novelty lies beyond every training slice's first (``unfamiliar_share`` says how many slices that is,
against the shifted cubes' share).
Writes ``selection_quality.json`` and ``selection_quality.png`` under ``--out``.

    python -m studies.selection.study --out study-ablation --fit-args "--model.dropout 0.1"
    python -m studies.selection.study --out study-rare --ckpt CKPT --normal 10 --shifted 2   # rare shift
    python -m studies.selection.study --out study-pool --unlabelled-share 0.25

``--unlabelled-share`` puts the test cubes' images (no labels) into the training store and trains with
``data.unlabelled_share``: the discriminator then learns to call the generator's masks on them fake, as
it would on a project's pool of cubes awaiting volunteers.

Novelty compares with the labelled training slices of ``--reference`` (default: the study's
``train.zarr``, the 10 fatchecker cubes the demo model trains on, synthesised when missing).
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import spearmanr

from studies.selection.scorers import unfamiliar_slices
from tcupgan.data import CubeStore, synthesize
from tcupgan.data.synth import cube_name, synthetic_shift
from tcupgan.demo import fit_demo_model
from tcupgan.inference import predict_store
from tcupgan.metrics.evaluate import slice_dice
from tcupgan.selection import SelectionRules, select_slices
from tools.bench.common import crop_share

FRACTIONS = (0.1, 0.2)


def slice_errors(store: CubeStore, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Per slice: misclassified voxels, and 1 - Dice of the foreground (0 when both are empty)."""
    pred, label = store[name]["prediction"][...], store[name].label[...]
    wrong = (pred != label).sum(axis=(1, 2)).astype(float)
    return wrong, 1 - slice_dice(pred > 0, label > 0)


def captured(order: list[tuple[str, int]], error: dict[tuple[str, int], float], fraction: float) -> float:
    """Share of the total error held by the first ``fraction`` of a ranking."""
    k = max(1, round(fraction * len(order)))
    return sum(error[key] for key in order[:k]) / max(sum(error.values()), 1e-9)


def study(store_path: Path, out: Path) -> dict:
    store = CubeStore(store_path)
    wrong, dice_error, realness, novelty, entropy, shifted, unfamiliar = {}, {}, {}, {}, {}, {}, {}
    rankings: dict[str, list[list[tuple[str, int]]]] = {}
    scorers = {  # label: the scorer it ranks by (the discriminator's verdict read four ways)
        "discriminator": "realness", "discriminator_alone": "realness_alone",
        "discriminator_position": "realness_position",
        "discriminator_unfamiliar_first": "realness_unfamiliar_first",
        **{name: name for name in ("novelty", "entropy", "hybrid", "random")},
    }  # fmt: skip
    for label, strategy in scorers.items():
        for seed in range(20) if strategy == "random" else [0]:
            rows = select_slices(  # the rankings themselves, not draws from them
                store_path,
                10**9,
                strategy=strategy,
                sampling="top",
                rules=SelectionRules(min_gap=1),
                seed=seed,
            )
            rankings.setdefault(label, []).append([(r["cube"], r["slice"]) for r in rows])
            for r in rows:
                realness[(r["cube"], r["slice"])] = r["realness"]
                novelty[(r["cube"], r["slice"])] = r["novelty"]
                entropy[(r["cube"], r["slice"])] = r["entropy"]
    unfamiliar = unfamiliar_slices(store)
    for name in store.names():
        w, d = slice_errors(store, name)
        is_shifted = synthetic_shift(store[name]) > 0
        for z in range(len(w)):
            if (name, z) in realness:  # candidates only: slices with content
                wrong[(name, z)], dice_error[(name, z)] = w[z], d[z]
                shifted[(name, z)] = is_shifted
    keys = sorted(wrong)
    errors = [dice_error[k] for k in keys]
    result = {
        "slices": len(keys),
        "cubes": len(store.names()),
        "spearman_realness_vs_dice_error": float(spearmanr([realness[k] for k in keys], errors)[0]),
        "spearman_novelty_vs_dice_error": float(spearmanr([novelty[k] for k in keys], errors)[0]),
        "spearman_entropy_vs_dice_error": float(spearmanr([entropy[k] for k in keys], errors)[0]),
        "unfamiliar_share": float(np.mean([unfamiliar[k] for k in keys])),
        "shifted_share": float(np.mean([shifted[k] for k in keys])),
        "mean_dice_error": {
            "normal": float(np.mean([dice_error[k] for k in keys if not shifted[k]])),
            "shift": float(np.mean([dice_error[k] for k in keys if shifted[k]])),
        },
        "error_share": {},
    }
    result["dice_error_share"] = {}
    for table, error in (("error_share", wrong), ("dice_error_share", dice_error)):
        oracle = sorted(keys, key=lambda k: -error[k])
        result[table]["oracle"] = {f"top{int(f * 100)}%": captured(oracle, error, f) for f in FRACTIONS}
    result["shifted_share_top20%"] = {
        strategy: float(np.mean([np.mean([shifted[k] for k in o[: round(0.2 * len(o))]]) for o in orders]))
        for strategy, orders in rankings.items()
    }
    for strategy, orders in rankings.items():
        for table, error in (("error_share", wrong), ("dice_error_share", dice_error)):
            result[table][strategy] = {
                f"top{int(f * 100)}%": float(np.mean([captured(o, error, f) for o in orders]))
                for f in FRACTIONS
            }
    for f in FRACTIONS:
        key = f"top{int(f * 100)}%"
        for table in ("error_share", "dice_error_share"):
            for strategy in (*(k for k in scorers if k.startswith("discriminator")), "novelty", "hybrid"):
                ratio = result[table][strategy][key] / result[table]["random"][key]
                result[f"{strategy}_vs_random_{table}_{key}"] = ratio
    scores = {"realness": realness, "novelty": novelty}
    _figure(rankings, wrong, scores, dice_error, shifted, out / "selection_quality.png", result)
    return result


def _figure(rankings, wrong, scores, dice_error, shifted, path: Path, result: dict) -> None:
    fig, axes = plt.subplots(1, 4, figsize=(21, 4.2))
    left, right = axes[:2], axes[2:]
    steps = np.linspace(0.01, 1, 100)
    measures = ((wrong, "misclassified voxels"), (dice_error, "summed Dice error"))
    for ax, (error, what) in zip(left, measures, strict=True):
        for strategy, orders in rankings.items():
            curve = [np.mean([captured(o, error, s) for o in orders]) for s in steps]
            ax.plot(steps * 100, np.array(curve) * 100, label=strategy)
        for f in FRACTIONS:
            ax.axvline(f * 100, color="grey", lw=0.6, ls=":")
        ax.set(xlabel="% of slices sent to volunteers", ylabel=f"% of the {what} in them",
               title=f"{what[0].upper()}{what[1:]} captured by each ranking")  # fmt: skip
    left[0].legend(fontsize=7)
    keys = sorted(wrong)
    colour = ["tab:red" if shifted[k] else "tab:blue" for k in keys]
    labels = {"realness": "discriminator realness", "novelty": "novelty (its first layer on the image)"}
    for ax, (name, score) in zip(right, scores.items(), strict=True):
        ax.scatter([score[k] for k in keys], [dice_error[k] for k in keys], s=6, c=colour, alpha=0.6)
        rho = result[f"spearman_{name}_vs_dice_error"]
        ax.set(xlabel=f"{labels[name]} of (slice, prediction)", ylabel="per-slice Dice error",
               title=f"{name.capitalize()} vs error (Spearman {rho:.2f}; red = shifted)")  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_unlabelled(source: Path, train: Path) -> None:
    """``source``'s cubes, images only, as unlabelled train cubes of ``train`` (those there already kept)."""
    src, dst = CubeStore(source), CubeStore(train, mode="r+")
    for name in sorted(set(src.names()) - set(dst.names())):
        dst.write_cube(name, src[name].image[...], None, attrs={**src[name].attrs, "split": "train"})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, help="folder for stores, the run and the results")
    parser.add_argument("--ckpt", help="a trained checkpoint (default: train the demo model first)")
    parser.add_argument("--reference", help="store of the labelled training cubes (default: OUT/train.zarr)")
    parser.add_argument("--epochs", type=int, default=18, help="epochs when training (18)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (0)")
    parser.add_argument("--fit-args", default="", help='further fit arguments, e.g. "--model.lr_d 3e-3"')
    parser.add_argument("--normal", type=int, help="normal test cubes (6; quick 2)")
    parser.add_argument("--shifted", type=int, help="domain-shifted test cubes (6; quick 2)")
    parser.add_argument(
        "--unlabelled-share", type=crop_share, default=0.0,
        help="train with the test cubes as unlabelled train cubes, this share of the crops (0: not)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="tiny cubes and 1 epoch (smoke run)")
    args = parser.parse_args()
    counts = {"normal": args.normal, "shifted": args.shifted}
    for kind, n in counts.items():
        counts[kind] = (2 if args.quick else 6) if n is None else n
        if counts[kind] < 1:
            parser.error(f"--{kind} must be at least 1 (the study compares normal with shifted cubes)")
    if args.unlabelled_share and args.ckpt:
        parser.error("--unlabelled-share trains the model: leave out --ckpt")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mixed = out / "mixed.zarr"
    expected = {cube_name("fatchecker", 2, i) for i in range(counts["normal"])}
    expected |= {cube_name("fatchecker", 3, i, shift=1.0) for i in range(counts["shifted"])}
    if mixed.exists() and not set(CubeStore(mixed).names()) <= expected:  # a rerun may only add cubes
        parser.error(f"{mixed} holds cubes of a study with other counts: choose a new --out")
    shape = (16, 64, 64) if args.quick else None
    ckpt = args.ckpt
    train = out / "train.zarr"
    if args.reference is None or ckpt is None:  # the demo model's training cubes; skips what exists
        synthesize("fatchecker", train, n=4 if args.quick else 10, seed=0, shape=shape)
    synthesize("fatchecker", mixed, n=counts["normal"], seed=2, shape=shape)
    synthesize("fatchecker", mixed, n=counts["shifted"], seed=3, shift=True, shape=shape)
    extra = shlex.split(args.fit_args)
    if args.unlabelled_share:
        add_unlabelled(mixed, train)
        extra += ["--data.unlabelled_share", str(args.unlabelled_share)]
    if ckpt is None:
        ckpt = fit_demo_model(
            train, out / "run", 1 if args.quick else args.epochs, args.quick, seed=args.seed, extra=extra
        )  # fmt: skip
    predict_store(ckpt, mixed, reference=args.reference or train)
    result = study(mixed, out)
    result["checkpoint"] = str(ckpt)
    (out / "selection_quality.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
