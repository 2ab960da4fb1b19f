"""The ecosystem: ``tcupgan ingest nifti | nnunet`` and ``export-nnunet`` (the medical field's dataset
layouts), ``tcupgan migrate`` (a store of an older format to the current OME-Zarr one), ``tcupgan view``
(napari)."""

from __future__ import annotations

import argparse

from tcupgan.cli.common import add_command, add_ingest_options, add_store_argument


def cmd_ingest_nifti(args: argparse.Namespace) -> None:
    from tcupgan.data.nnunet import ingest_nifti

    report = ingest_nifti(
        args.images, args.store, labels=args.labels, class_names=args.class_names or ["foreground"],
        overwrite=args.overwrite, split=args.split,
    )  # fmt: skip
    print(f"{args.store}: {report}")


def cmd_ingest_nnunet(args: argparse.Namespace) -> None:
    from tcupgan.data.nnunet import ingest_nnunet

    report = ingest_nnunet(args.dataset, args.store, overwrite=args.overwrite)
    print(f"{args.store}: {report}")


def cmd_export_nnunet(args: argparse.Namespace) -> None:
    from tcupgan.data.nnunet import export_nnunet

    print(f"wrote {export_nnunet(args.store, args.out, name=args.name)}")


def cmd_migrate(args: argparse.Namespace) -> None:
    from tcupgan.data.store import migrate_store

    report = migrate_store(args.store)
    done = f"{report['cubes']} cube(s) now OME-Zarr, {report['label_maps_moved']} label map(s) moved"
    print(f"{args.store}: {done if report['cubes'] else 'already current'}")


def cmd_view(args: argparse.Namespace) -> None:
    from tcupgan.data import CubeStore
    from tcupgan.viz import view_cube

    store = CubeStore(args.store)
    store[args.cube]  # an unknown cube is one line before a window opens
    view_cube(store, args.cube)
    import napari

    napari.run()


def add_layout_commands(sub, isub) -> None:
    """``ingest nifti`` and ``ingest nnunet`` under ``isub`` (the ingest sub-commands), ``export-nnunet``
    ``migrate`` and ``view`` under ``sub``."""
    p = add_command(
        isub, "nifti", "Ingest NIfTI image/label pairs by pattern ('*' stands for the case name).",
        "tcupgan ingest nifti 'scans/*_t2.nii.gz' --labels 'masks/*_mask.nii.gz' --store mri.zarr",
        cmd_ingest_nifti,
    )  # fmt: skip
    p.add_argument("images", help="image files, a pattern with one '*' (quote it), 3D or 4D (channels)")
    p.add_argument("--labels", help="label files, the same pattern with '*' for the case name")
    p.add_argument("--class-names", nargs="+", help="the classes of label values 1..K (foreground)")
    add_ingest_options(p)
    p = add_command(
        isub, "nnunet", "Ingest an nnU-Net dataset (dataset.json, imagesTr, labelsTr) or a Decathlon task.",
        "tcupgan ingest nnunet nnUNet_raw/Dataset004_Hippocampus --store hippo.zarr", cmd_ingest_nnunet,
    )  # fmt: skip
    p.add_argument("dataset", help="the Dataset### or Task## folder holding dataset.json")
    p.add_argument("--store", required=True, help="store to create or extend")
    p.add_argument("--overwrite", action="store_true", help="replace cubes that already exist")
    p = add_command(
        sub, "export-nnunet", "Write a store as an nnU-Net raw dataset, to train nnU-Net on the same data.",
        "tcupgan export-nnunet --store em.zarr --out nnUNet_raw --name Dataset500_em", cmd_export_nnunet,
    )  # fmt: skip
    p.add_argument("--store", required=True, help="the cube store")
    p.add_argument("--out", required=True, help="nnU-Net's raw data folder (nnUNet_raw)")
    p.add_argument("--name", default="Dataset500_tcupgan", help="dataset folder name (Dataset500_tcupgan)")
    p = add_command(
        sub, "migrate", "Upgrade a store written by an older tcupgan in place (safe to re-run).",
        "tcupgan migrate demo.zarr", cmd_migrate,
    )  # fmt: skip
    add_store_argument(p)
    p = add_command(
        sub, "view", "Open a cube in napari: channels, probabilities, label maps and slice scores.",
        "tcupgan view demo.zarr fatchecker-s0-0000   (needs pip install 'tcupgan[view]')", cmd_view,
    )  # fmt: skip
    add_store_argument(p, cube=True)
