"""``tcupgan galaxy ingest | predict | measure``: spiral arms and bars in galaxy images."""

from __future__ import annotations

import argparse

from tcupgan.cli.common import add_command, add_ingest_options


def cmd_ingest(args: argparse.Namespace) -> None:
    from tcupgan.galaxy.gz3d import ingest_gz3d

    report = ingest_gz3d(
        args.files, args.store, volunteers=args.volunteers, overwrite=args.overwrite, split=args.split
    )
    print(f"{args.store}: {report}")


def cmd_predict(args: argparse.Namespace) -> None:
    from tcupgan.galaxy.predict import predict_galaxies

    catalogue = predict_galaxies(
        args.ckpt, args.images, args.out, size=args.size, threshold=args.threshold,
        pixel_scale=args.pixel_scale, bar_level=args.bar_level or None, device=args.device,
    )  # fmt: skip
    print(f"wrote masks, overlays and {catalogue}")


def cmd_measure(args: argparse.Namespace) -> None:
    from tcupgan.galaxy import measure_store

    path = measure_store(
        args.store, args.out, what=args.what, threshold=args.threshold, pixel_scale=args.pixel_scale,
        bar_level=args.bar_level or None, split=args.split,
    )  # fmt: skip
    print(f"wrote {path}")


def add_galaxy_commands(sub) -> None:
    galaxy = sub.add_parser("galaxy", help="Galaxy spiral arms and bars: ingest vote maps, predict, measure.")
    gsub = galaxy.add_subparsers(dest="galaxy_command", metavar="COMMAND", required=True)

    p = add_command(
        gsub, "ingest", "Ingest Galaxy Zoo 3D FITS files (image + spiral/bar vote counts) as vote fractions.",
        "tcupgan galaxy ingest gz3d/*.fits.gz --store gz3d.zarr", cmd_ingest,
    )  # fmt: skip
    p.add_argument("files", nargs="+", help="GZ3D FITS files (needs astropy: pip install 'tcupgan[fits]')")
    p.add_argument("--volunteers", type=int, help="classifications per galaxy if a file does not say (15)")
    add_ingest_options(p)

    p = add_command(
        gsub, "predict", "Soft spiral-arm and bar masks, overlays and a measured catalogue per galaxy image.",
        "tcupgan galaxy predict cutouts/ --ckpt galaxy.ckpt --out galaxy-masks --pixel-scale 0.262",
        cmd_predict,
    )  # fmt: skip
    p.add_argument("images", nargs="+", help="PNG/JPEG/TIFF cutouts or folders of them")
    p.add_argument("--ckpt", required=True, help="galaxy checkpoint (configs/galaxy_spiral_bar.yaml)")
    p.add_argument("--out", required=True, help="folder for masks, overlays and catalogue.csv")
    p.add_argument("--size", type=int, help="resize images to this square size (default: the model's)")
    p.add_argument("--threshold", type=float, default=0.5, help="vote fraction counted as marked (0.5)")
    p.add_argument("--pixel-scale", type=float, help="arcsec per pixel (DECaLS 0.262): adds arcsec lengths")
    _bar_level(p)
    p.add_argument("--device", default="auto", help="auto (a GPU where there is one), cuda, mps or cpu")

    p = add_command(
        gsub, "measure", "Bar length, angle and axis ratio, arm fraction and count per galaxy of a store.",
        "tcupgan galaxy measure --store galaxies.zarr --out catalogue.csv --pixel-scale 0.262", cmd_measure,
    )  # fmt: skip
    p.add_argument("--store", required=True, help="store of 2D galaxy cubes (classes: spiral arm, bar)")
    p.add_argument("--out", required=True, help="catalogue CSV to write")
    p.add_argument("--what", default="probability", choices=["probability", "vote_fraction", "label"])
    p.add_argument("--split", choices=["train", "val", "test"], help="measure the cubes of one split")
    p.add_argument("--threshold", type=float, default=0.5, help="mask threshold on probabilities/votes (0.5)")
    p.add_argument("--pixel-scale", type=float, help="arcsec per pixel, adds bar_length_arcsec")
    _bar_level(p)


def _bar_level(p) -> None:
    p.add_argument(
        "--bar-level", type=float, default=0.5,
        help="outline the bar at this share of its peak (0.5; 0: at --threshold); the peak must reach "
        "--threshold for a bar to count",
    )  # fmt: skip
