"""The ``tcupgan`` command: parse arguments, call one library function, report.

Expected failures (:class:`~tcupgan.errors.TcupganError`) print one line saying what to do and exit 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from tcupgan import __version__
from tcupgan.cli.common import add_command, add_ingest_options, add_store_argument, formatter
from tcupgan.cli.galaxy import add_galaxy_commands
from tcupgan.cli.layouts import add_layout_commands
from tcupgan.cli.volunteers import add_volunteer_commands
from tcupgan.errors import ConfigError, TcupganError

log = logging.getLogger("tcupgan")

_EPILOG = """examples:
  tcupgan synth fatchecker --store demo.zarr --n 10 --seed 0
  tcupgan info demo.zarr
  tcupgan ingest brats data/BraTS2023 --store brats.zarr
  tcupgan export demo.zarr fatchecker-s0-0000 --to cube.nii.gz --what label
  tcupgan fit --config configs/demo.yaml
"""


# ------------------------------------------------------------------------------------------ commands
def cmd_info(args: argparse.Namespace) -> None:
    from tcupgan.data import CubeStore

    store = CubeStore(args.store)
    print(f"{store.path}: task={store.task} channels={store.channel_names} classes={store.class_names}")
    rows = store.summary()
    for row in rows:
        shape = "x".join(str(s) for s in row["shape"])
        print(f"  {row['cube']:<32} {shape:<18} {row['split']:<6} {', '.join(row['arrays'])}")
    counts = {s: sum(r["split"] == s for r in rows) for s in ("train", "val", "test")}
    print(f"{len(rows)} cube(s): " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    if store.leftovers():
        print(f"warning: {store.leftovers()} interrupted write(s) in {store.path / '.staging'}; when no "
              f"other tcupgan process is writing, finish them with `tcupgan clean {store.path}`")  # fmt: skip


def cmd_clean(args: argparse.Namespace) -> None:
    from tcupgan.data import CubeStore

    report = CubeStore(args.store, mode="r+").clean_staging()
    for path in report["restored"]:
        print(f"restored {path} (its replacement had been cut between two renames)")
    restored, removed = len(report["restored"]), len(report["removed"])
    print(f"{args.store}: {restored} restored, {removed} unfinished write(s) removed")


def cmd_synth(args: argparse.Namespace) -> None:
    from tcupgan.data import synthesize

    report = synthesize(
        args.family,
        args.store,
        n=args.n,
        seed=args.seed,
        shift=args.shift,
        shape=args.shape,
        overwrite=args.overwrite,
    )
    print(f"{args.store}: {report}")


def cmd_ingest_brats(args: argparse.Namespace) -> None:
    from tcupgan.data import ingest_brats

    report = ingest_brats(
        args.src,
        args.store,
        allow_missing=args.allow_missing,
        overwrite=args.overwrite,
        split=args.split,
        labels=args.labels,
    )
    print(f"{args.store}: {report}")


def cmd_ingest_tiff(args: argparse.Namespace) -> None:
    from tcupgan.data import ingest_tiff

    report = ingest_tiff(
        args.images, args.store, labels=args.labels, spacing=args.spacing, names=args.names,
        label_mode=args.label_mode, overwrite=args.overwrite, split=args.split,
        class_names=args.class_names, unit=args.unit,
    )  # fmt: skip
    print(f"{args.store}: {report}")


def cmd_ingest_images(args: argparse.Namespace) -> None:
    from tcupgan.data import ingest_images

    report = ingest_images(
        args.images, args.store, masks=args.masks, boxes=args.boxes, names=args.names,
        label_mode=args.label_mode, pixel_scale=args.pixel_scale, overwrite=args.overwrite, split=args.split,
        class_names=args.class_names,
    )  # fmt: skip
    print(f"{args.store}: {report}")


def cmd_plan(args: argparse.Namespace) -> None:
    from tcupgan.training.plan import write_plan

    _, text = write_plan(args.store, args.out)
    print(text, end="")
    print(f"wrote {args.out}; train with `tcupgan fit --plan {args.out}` (add --config for your own choices)")


def cmd_export(args: argparse.Namespace) -> None:
    from tcupgan.data import export_cube

    path = export_cube(args.store, args.cube, args.to, what=args.what, channel=args.channel)
    print(f"wrote {path}")


def cmd_predict(args: argparse.Namespace) -> None:
    from tcupgan.inference.predict import predict_files, predict_store

    options = {
        "roi": args.roi, "overlap": args.overlap, "tta": args.tta, "min_size": args.min_size,
        "precision": args.precision, "window_batch": args.window_batch, "compile": args.compile,
    }  # fmt: skip
    if args.input:
        if not args.out:
            raise ConfigError("--input needs --out, the folder for the predicted label maps")
        for path in predict_files(args.ckpt, args.input, args.out, device=args.device, **options):
            print(f"wrote {path}")
        return
    if not args.store:
        raise ConfigError("give --store STORE, or --input FILES --out DIR for a quick run without a store")
    report = predict_store(
        args.ckpt, args.store, cubes=args.cubes, split=args.split, overwrite=args.overwrite,
        device=args.device, reference=args.reference, **options,
    )  # fmt: skip
    print(f"{args.store}: {report}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from tcupgan.metrics.evaluate import evaluate_store

    summary = evaluate_store(
        args.store, args.out, cubes=args.cubes, split=args.split, metrics=args.metrics.split(","),
        challenge=args.challenge,
    )  # fmt: skip
    print(f"{'region':<16} {'metric':<14} {'n':>4} {'mean':>9} {'median':>9} {'std':>9}")
    for row in summary:
        stats = " ".join(f"{row[k]:>9.4g}" for k in ("mean", "median", "std"))
        print(f"{row['region']:<16} {row['metric']:<14} {row['n']:>4} {stats}")
    print(f"wrote {args.out}: per_cube.csv, summary.csv, dice_distribution.png, worst_slices.png")


def cmd_show(args: argparse.Namespace) -> None:
    from tcupgan.data import CubeStore
    from tcupgan.viz import show_cube

    print(f"wrote {show_cube(CubeStore(args.store), args.cube, args.out, args.slices)}")


def cmd_demo(args: argparse.Namespace) -> None:
    from tcupgan.demo import run_demo

    report = run_demo(args.out, quick=args.quick, fail_rate=args.fail_rate)
    before, after, audit = report["dice_before"], report["dice_after"], report["set_audit"]
    print(
        f"\nDice on held-out shifted cubes: {before['heldout']:.3f} -> {after['heldout']:.3f} "
        "after one volunteer round "
        f"({report['slices_sent']} slices sent, {report['classifications']} volunteer classifications)"
    )
    print(
        f"upload: {audit['subjects_in_set']} subjects in the set, {audit['duplicates']} duplicates, "
        f"{audit['images_missing']} missing images, {len(report['upload']['runs'])} run(s)"
    )
    print("figures: " + ", ".join(report["figures"]))
    print(f"report: {args.out}/report.json")


def finetune_arguments(argv: Sequence[str]) -> list[str]:
    """``tcupgan finetune`` options → ``tcupgan fit`` (LightningCLI) arguments; the rest pass through."""
    parser = argparse.ArgumentParser(
        prog="tcupgan finetune",
        description="Start training a new project from a trained checkpoint (transfer learning). Matching "
        "layers are loaded, the input stem adapted to new channels, the rest listed fresh in the log. Every "
        "other option is `tcupgan fit`'s (--config, --trainer.*, --model.*, --data.*).",
        epilog="example:\n  tcupgan finetune --from fatchecker.ckpt --config configs/floating_forests.yaml "
        "--freeze encoder --label-fraction 0.1",
        formatter_class=formatter,
    )
    parser.add_argument("--from", dest="source", required=True, help="checkpoint or TCuPGenerator state dict")
    parser.add_argument("--freeze", choices=["none", "encoder", "all-but-head"], default="none")
    parser.add_argument(
        "--label-fraction", type=float, default=1.0, help="train on this share of cubes (1.0)"
    )
    parser.add_argument("--discriminator", choices=["reuse", "reset"], default="reuse")
    parser.add_argument("--pretrained-lr-scale", type=float, default=1.0, help="LR factor for loaded layers")
    known, rest = parser.parse_known_args(list(argv))
    return [
        "--model.init_from", known.source, "--model.freeze", known.freeze,
        "--model.reset_discriminator", str(known.discriminator == "reset").lower(),
        "--model.pretrained_lr_scale", str(known.pretrained_lr_scale),
        "--data.label_fraction", str(known.label_fraction), *rest,
    ]  # fmt: skip


def cmd_bench(argv: Sequence[str]) -> None:
    """``tcupgan bench NAME ARGS`` runs ``python -m tools.bench.NAME ARGS`` (``all`` runs the suite): the
    benchmarks live in the source checkout's ``tools/``, next to the package, not in the installed
    package."""
    import importlib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    helpers = ("common", "original_layout")  # shared code and a baseline network, not benchmarks
    names = sorted(p.stem for p in (root / "tools" / "bench").glob("[a-z]*.py") if p.stem not in helpers)
    if not names:
        raise ConfigError("the benchmarks live in tools/bench/ of a source checkout of tcupgan; clone it")
    if not argv or argv[0] in ("-h", "--help"):
        print(
            "usage: tcupgan bench {all," + ",".join(names) + "} [ARGS]\n\n"
            "Run a benchmark (JSON on stdout); `all --quick` runs the suite and renders docs/benchmarks.md.\n"
            "Each takes --help, and --tiny for a smoke run.\n\nexample:\n  tcupgan bench predict_speed"
        )
        return
    name = argv[0]
    if name not in (*names, "all"):
        raise ConfigError(f"no benchmark '{name}'; choose one of: all, {', '.join(names)}")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module = importlib.import_module("tools.bench.__main__" if name == "all" else f"tools.bench.{name}")
    module.main(list(argv) if name == "all" else list(argv[1:]))


def with_plan(argv: Sequence[str]) -> list[str]:
    """``--plan PLAN.yaml`` becomes the first ``--config``: LightningCLI lets later configs and options
    override earlier ones, so the plan fills only what the user's own config and options leave unset."""
    argv = list(argv)
    if "--plan" not in argv:
        return argv
    i = argv.index("--plan")
    if i + 1 >= len(argv) or not Path(argv[i + 1]).is_file():
        raise ConfigError(
            "--plan needs a plan file: make one with `tcupgan plan --store STORE --out plan.yaml`"
        )
    plan = argv[i + 1]
    return ["--config", plan, *argv[:i], *argv[i + 2 :]]


def cmd_fit(argv: Sequence[str]) -> None:
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from tcupgan.training.cli import run_fit

    try:
        run_fit(with_plan(argv))
    except MisconfigurationException as err:  # Lightning's own words, plus what to do about a GPU
        hint = ""
        if any(word in str(err).lower() for word in ("gpu", "cuda", "mps", "device")):
            hint = (
                "; no usable GPU here: use --trainer.accelerator auto (CPU when there is none) or check "
                "`nvidia-smi` and that PyTorch is a CUDA build"
            )
        raise ConfigError(f"{err}{hint}") from err


# ------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tcupgan",
        description="TCuP-GAN segmentation of image cubes with a Zooniverse volunteer loop.",
        epilog=_EPILOG,
        formatter_class=formatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--verbose", action="store_true", help="show the libraries' INFO lines and warnings")
    parser.add_argument("--version", action="version", version=f"tcupgan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    _add_store_commands(sub)
    isub = _add_ingest_commands(sub)
    _add_training_commands(sub)
    _add_predict_commands(sub)
    add_galaxy_commands(sub)
    add_layout_commands(sub, isub)
    add_volunteer_commands(sub)
    p = add_command(
        sub,
        "demo",
        "Run the whole loop on synthetic data: train, predict, select, upload, harvest, retrain.",
        "tcupgan demo --out demo-run --quick",
        cmd_demo,
    )
    p.add_argument("--out", default="demo-run", help="a new folder for everything the demo makes (demo-run)")
    p.add_argument("--quick", action="store_true", help="tiny cubes and few epochs (about a minute)")
    p.add_argument("--fail-rate", type=float, default=0.2, help="faults injected into the sandbox (0.2)")
    sub.add_parser(
        "bench", help="Run a benchmark (all, predict_speed, transfer, galaxy ...; --help).", add_help=False
    )
    return parser


def _add_store_commands(sub) -> None:
    """info, clean, synth, export, show: make and look at stores."""
    p = add_command(
        sub,
        "info",
        "List the cubes of a store with shapes, splits and arrays.",
        "tcupgan info demo.zarr",
        cmd_info,
    )
    add_store_argument(p)
    p = add_command(
        sub, "clean", "Finish or remove writes a crash interrupted (when no other tcupgan writes the store).",
        "tcupgan clean demo.zarr", cmd_clean,
    )  # fmt: skip
    add_store_argument(p)

    p = add_command(
        sub, "synth", "Write deterministic synthetic cubes with ground truth into a store.",
        "tcupgan synth fatchecker --store demo.zarr --n 10 --seed 0", cmd_synth,
    )  # fmt: skip
    p.add_argument("family", choices=["fatchecker", "brats", "galaxy", "kelp"], help="scene family")
    p.add_argument("--store", "--out", required=True, help="store to create or extend")
    p.add_argument("--n", type=int, default=10, help="number of cubes (default 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same cubes (default 0)")
    p.add_argument(
        "--shift", type=float, nargs="?", const=1.0, default=0.0, metavar="STRENGTH",
        help="domain-shifted variant (contrast, blur, noise, sizes); a STRENGTH below 1 (e.g. 0.5) "
        "shifts part of the way",
    )  # fmt: skip
    p.add_argument("--shape", type=int, nargs=3, metavar=("D", "H", "W"), help="cube size (family default)")
    p.add_argument("--overwrite", action="store_true", help="replace cubes that already exist")

    p = add_command(
        sub, "export", "Write a cube's image, label or prediction to NIfTI, TIFF or PNG.",
        "tcupgan export brats.zarr BraTS-GLI-00001-000 --to seg.nii.gz --what label", cmd_export,
    )  # fmt: skip
    add_store_argument(p, cube=True)
    p.add_argument("--to", required=True, help="output file: .nii.gz, .nii, .tif or .png")
    p.add_argument("--what", default="image", help="array to export: image, label, prediction, ...")
    p.add_argument("--channel", help="export one channel (name such as t1c, or index)")

    p = add_command(
        sub, "show", "Save a PNG of a few slices of a cube with its label outlined.",
        "tcupgan show demo.zarr fatchecker-s0-0000 --out cube.png --slices 8 16", cmd_show,
    )  # fmt: skip
    add_store_argument(p, cube=True)
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument(
        "--slices", type=int, nargs="+", help="slice indices (default: quarter, middle, three quarters)"
    )


def _add_ingest_commands(sub):
    """ingest brats, tiff, images; returns ingest's own subcommands for more sources."""
    ingest = sub.add_parser(
        "ingest", help="Ingest BraTS, nnU-Net and NIfTI volumes, TIFF stacks or 2D images into a store."
    )
    isub = ingest.add_subparsers(dest="source", metavar="SOURCE", required=True)
    p = add_command(
        isub, "brats", "Ingest BraTS case folders (<case>/<case>-t1c.nii.gz, -t1n, -t2f, -t2w, -seg).",
        "tcupgan ingest brats data/BraTS2023-GLI --store brats.zarr", cmd_ingest_brats,
    )  # fmt: skip
    p.add_argument("src", help="folder of case folders (or one case folder)")
    p.add_argument("--allow-missing", action="store_true", help="fill missing modalities with zeros")
    p.add_argument(
        "--labels", choices=["auto", "2015", "2017", "2023"], default="auto",
        help="label convention of the segmentations: 2023 (1 NCR, 2 ED, 3 ET), 2017 (2017-2022: 4 ET), 2015 "
        "(2012-2016: 3 non-enhancing, merged into 1, and 4 ET); auto tells 2023 from 2017",
    )  # fmt: skip
    add_ingest_options(p)
    p = add_command(
        isub, "tiff", "Ingest EM stacks: multi-page TIFF files or folders of slice images, with labels.",
        "tcupgan ingest tiff cell1.tif --labels cell1_lipid.tif --spacing 50 5 5 --store em.zarr",
        cmd_ingest_tiff,
    )  # fmt: skip
    p.add_argument("images", nargs="+", help="TIFF stacks or folders of slices")
    p.add_argument("--labels", nargs="+", help="label stacks, one per image, same order")
    p.add_argument(
        "--spacing", type=float, nargs=3, default=(1.0, 1.0, 1.0), metavar=("Z", "Y", "X"),
        help="voxel size (z y x), e.g. 50 5 5 nm for serial-section EM",
    )  # fmt: skip
    p.add_argument("--unit", choices=["nm", "um", "mm"], help="unit of --spacing, recorded for viewers")
    add_ingest_options(p, names=True, label_mode=True)
    p = add_command(
        isub, "images", "Ingest 2D images (PNG/JPEG/TIFF, RGB or multi-band) with optional masks.",
        "tcupgan ingest images tiles/*.jpg --masks masks/*.png --store kelp.zarr", cmd_ingest_images,
    )  # fmt: skip
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--masks", nargs="+", help="mask images, one per image, same order")
    p.add_argument("--boxes", help="CSV of boxes (image,x_min,x_max,y_min,y_max) as weak labels instead")
    p.add_argument("--pixel-scale", type=float, default=1.0, help="pixel size (e.g. arcsec or m per pixel)")
    add_ingest_options(p, names=True, label_mode=True)
    return isub


def _add_predict_commands(sub) -> None:
    """predict and evaluate."""
    p = add_command(
        sub, "predict", "Predict cubes of a store with a checkpoint: probabilities, masks, per-slice scores.",
        "tcupgan predict --ckpt runs/demo/lightning_logs/version_0/checkpoints/last.ckpt \\\n"
        "    --store demo.zarr --split test",
        cmd_predict,
    )  # fmt: skip
    p.add_argument("--ckpt", required=True, help="training checkpoint (.ckpt from `tcupgan fit`)")
    p.add_argument("--store", help="cube store to read and write")
    p.add_argument(
        "--input", nargs="+", help="quick run without a store: NIfTI/TIFF/image files or BraTS folders"
    )
    p.add_argument("--out", help="with --input: folder for the predicted label maps")
    p.add_argument("--cubes", nargs="+", help="cube names (default: all, or --split)")
    p.add_argument("--split", choices=["train", "val", "test"], help="predict the cubes of one split")
    p.add_argument(
        "--roi", type=int, nargs=3, metavar=("D", "H", "W"), help="sliding window (default: val_roi)"
    )
    p.add_argument("--overlap", type=float, default=0.25, help="sliding-window overlap (default 0.25)")
    p.add_argument("--tta", action="store_true", help="average in-plane flips (4x slower)")
    p.add_argument(
        "--min-size", type=_min_size, default=0,
        help="drop predicted components under N voxels, or per label value: 3=50,1=100 (default off)",
    )  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="redo cubes this checkpoint already predicted")
    p.add_argument(
        "--reference",
        help="store whose labelled train-split cubes are 'familiar' for slice_novelty (default: --store)",
    )
    p.add_argument("--device", default="auto", help="auto (a GPU where there is one), cuda, mps or cpu")
    p.add_argument(
        "--precision", choices=["auto", "32", "bf16"], default="auto",
        help="generator arithmetic: auto is bf16 on CUDA GPUs that have it (predict 1.33x on an H200) "
        "and on CPUs with AVX512-BF16/AMX (predict 1.3x on 2 cores), 32 elsewhere, where bf16 is "
        "emulated and slower (default auto)",
    )  # fmt: skip
    p.add_argument(
        "--window-batch", type=int,
        help="sliding windows per generator call (default: as many as half the GPU's free memory holds; "
        "on a CPU 4 in float32, in bf16 as many as 2^19 voxels hold, 1-4); the numbers do not change",
    )  # fmt: skip
    p.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=None,
        help="run the generator compiled, on CUDA as CUDA graphs (default: on GPUs); the first run "
        "compiles, later ones load the kernels from ~/.cache/tcupgan; falls back to eager with a warning",
    )  # fmt: skip

    p = add_command(
        sub, "evaluate", "Score predictions against labels: Dice, HD95 and BraTS 2023 lesion-wise metrics.",
        "tcupgan evaluate --store demo.zarr --split test --out report/", cmd_evaluate,
    )  # fmt: skip
    p.add_argument("--store", required=True, help="cube store with labels and predictions")
    p.add_argument("--cubes", nargs="+", help="cube names (default: all, or --split)")
    p.add_argument("--split", choices=["train", "val", "test"], help="evaluate the cubes of one split")
    p.add_argument("--metrics", default="dice,hd95,lesionwise", help="comma-separated: dice,hd95,lesionwise")
    p.add_argument("--challenge", default="GLI", choices=["GLI", "SSA", "PED", "MEN", "MET"],
                   help="BraTS challenge: lesion dilation and minimum volume (default GLI)")  # fmt: skip
    p.add_argument("--out", required=True, help="folder for CSV tables and PNG figures")


def _add_training_commands(sub) -> None:
    """plan, and fit and finetune, whose arguments LightningCLI parses."""
    p = add_command(
        sub, "plan", "Derive training and prediction settings from a store's data and this machine.",
        "tcupgan plan --store em.zarr --out plan.yaml && tcupgan fit --plan plan.yaml", cmd_plan,
    )  # fmt: skip
    p.add_argument("--store", required=True, help="the cube store to plan for (its labelled train cubes)")
    p.add_argument("--out", default="plan.yaml", help="the plan, a LightningCLI config (plan.yaml)")
    sub.add_parser(
        "fit",
        help="Train TCuP-GAN (LightningCLI: --plan plan.yaml, --config demo, --print_config, "
        "--trainer.*).",
        add_help=False,
    )  # fmt: skip
    sub.add_parser(
        "finetune", help="Train a new project from a trained checkpoint (--from CKPT --freeze encoder ...).",
        add_help=False,
    )  # fmt: skip


def _min_size(text: str) -> int | dict[int, int]:
    if "=" not in text:
        return int(text)
    return {int(k): int(v) for k, v in (item.split("=") for item in text.split(","))}


LIBRARY_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
    "lightning.fabric.utilities.seed", "lightning.pytorch.accelerators.cuda",
)  # fmt: skip


def quiet_console(debug: bool, verbose: bool) -> None:
    """tcupgan's own progress at INFO; the libraries' INFO lines (Lightning's, which it also prints through
    a handler of its own, and its advertisements) and their deprecation warnings only with ``--verbose``
    or ``--debug``, so a command's result is not lost among them."""
    import warnings

    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if verbose:
        return
    # the loggers Lightning's INFO lines come from: Lightning resets its package loggers' levels on import,
    # not these
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category)


STORE_FIRST = (
    "info",
    "export",
    "show",
    "migrate",
    "view",
)  # commands whose store is their first positional argument


def store_spelling(argv: list[str]) -> list[str]:
    """``--store S`` works on every command: where the store is positional (``info``, ``export``,
    ``show``) it moves to that position; ``synth --out`` stays an alias of ``--store``."""
    if argv[:1] and argv[0] in STORE_FIRST and "--store" in argv[:-1]:
        i = argv.index("--store")
        return [argv[0], argv[i + 1], *argv[1:i], *argv[i + 2 :]]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug, verbose = "--debug" in argv, "--verbose" in argv or "--debug" in argv
    quiet_console(debug, verbose)
    try:
        rest = [a for a in argv if a not in ("--debug", "--verbose")]
        if rest[:1] == ["fit"]:  # LightningCLI owns fit's arguments (--config, --trainer.*, --print_config)
            cmd_fit(rest[1:])
            return 0
        if rest[:1] == ["finetune"]:
            cmd_fit(finetune_arguments(rest[1:]))
            return 0
        if rest[:1] == ["bench"]:
            cmd_bench(rest[1:])
            return 0
        args = build_parser().parse_args(store_spelling(rest))
        if not getattr(args, "func", None):
            build_parser().print_help()
            return 1
        args.func(args)
    except TcupganError as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except PermissionError as err:  # a read-only store, folder or file: nothing to debug in tcupgan
        if debug:
            raise
        where = err.filename or "a file this command writes"
        print(f"error: permission denied writing '{where}': make it writable for this user, or work on a "
              "writable copy (nothing of this step was made visible)", file=sys.stderr)  # fmt: skip
        return 2
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume (finished cubes are kept)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
