"""The volunteer-loop commands: select → render → upload → (volunteers) → harvest, and the sandbox."""

from __future__ import annotations

import argparse
import json
import os
import time

from tcupgan.cli.common import add_command
from tcupgan.errors import InputError

__all__ = ["add_volunteer_commands"]


def cmd_select(args: argparse.Namespace) -> None:
    from tcupgan.selection import SelectionRules, select_slices, write_selection

    rules = SelectionRules(per_cube=args.per_cube, min_gap=args.min_gap, min_content=args.min_content)
    rows = select_slices(
        args.store, args.budget, strategy=args.strategy, sampling=args.sampling, rules=rules,
        split=args.split, seed=args.seed,
    )  # fmt: skip
    path = write_selection(rows, args.out)
    print(
        f"wrote {path}: {len(rows)} slice(s) from {len({r['cube'] for r in rows})} cube(s) by {args.strategy}"
    )


def cmd_render(args: argparse.Namespace) -> None:
    from tcupgan.zooniverse import render_subjects

    path = render_subjects(args.store, args.selection, args.out, channel=args.channel)
    print(f"wrote {path} and its frames")


def cmd_upload(args: argparse.Namespace) -> None:
    from tcupgan.zooniverse.upload import upload_subjects

    report = upload_subjects(
        args.subjects, args.project, args.subject_set, workflow=args.workflow, endpoint=args.endpoint,
        dry_run=args.dry_run, batch=args.batch, workers=args.workers,
    )  # fmt: skip
    if report.dry_run:
        todo = report.subjects - report.already_uploaded
        print(
            f"dry run: {report.subjects} subject(s) in the manifest, {report.already_uploaded} already "
            f"uploaded by the ledger, {todo} would be sent to '{args.subject_set}'; no request was made"
        )
        return
    print(json.dumps(report.as_dict(), indent=1))
    if report.failed:
        raise InputError(f"{report.failed} subject(s) could not be uploaded; rerun the same command")


def cmd_sandbox(args: argparse.Namespace) -> None:
    from tcupgan.zooniverse.testing.sandbox import Sandbox

    faults = tuple(args.faults.split(",")) if args.faults else None
    kwargs = {"faults": faults} if faults else {}
    sandbox = Sandbox(args.state, port=args.port, fail_rate=args.fail_rate, seed=args.seed,
                      subject_limit=args.subject_limit, verbose=True, latency=args.latency,
                      classes=tuple(args.classes.split(",")), **kwargs)  # fmt: skip
    user, password = sandbox.owner_credentials()
    print(f"Panoptes sandbox on {sandbox.endpoint} (state in {args.state}; Ctrl-C stops it)")
    print(f"  project {sandbox.project_id}, workflow {sandbox.workflow_id}")
    print("  use it with:")
    print(f"    export PANOPTES_ENDPOINT={sandbox.endpoint}")
    print(f"    export PANOPTES_USERNAME={user} PANOPTES_PASSWORD={password}")
    print(f"  volunteer accounts: {', '.join(k for k in sandbox.state.credentials() if k != user)} "
          f"(passwords in {os.path.join(args.state, 'state.json')})", flush=True)  # fmt: skip
    sandbox.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sandbox.stop()


def cmd_harvest(args: argparse.Namespace) -> None:
    from tcupgan.zooniverse.harvest import (
        download_export,
        fetch_workflow_tasks,
        harvest,
        read_workflow_export,
    )

    export, tasks = args.export, None
    if args.workflow_export:
        tasks = read_workflow_export(args.workflow_export)
    if args.project:
        export = download_export(args.project, args.export, endpoint=args.endpoint, timeout=args.timeout)
        print(f"downloaded the classification export to {export}")
        tasks = tasks or fetch_workflow_tasks(args.project, endpoint=args.endpoint)
    tools = None
    if args.tool_values:
        try:
            tools = {k.strip(): int(v) for k, v in (item.split("=") for item in args.tool_values.split(","))}
        except ValueError:
            raise InputError(
                f"--tool-values '{args.tool_values}': write TOOL=VALUE pairs, e.g. 0=1,T1.1=2"
            ) from None
    report = harvest(
        export, args.store, min_volunteers=args.min_volunteers, threshold=args.threshold,
        workflow=args.workflow, workflow_version=args.workflow_version, workflow_tasks=tasks,
        tool_values=tools,
    )  # fmt: skip
    print(json.dumps(report.as_dict(), indent=1))


def add_volunteer_commands(sub) -> None:
    """Register select, render, upload, sandbox and harvest on the ``tcupgan`` parser."""
    _add_selection_commands(sub)
    _add_upload_commands(sub)
    _add_harvest_command(sub)


def _add_selection_commands(sub) -> None:
    """select and render."""
    p = add_command(
        sub, "select",
        "Rank slices by how poorly generalised they look and pick a budget for volunteers (never a slice "
        "they already corrected).",
        "tcupgan select --store demo.zarr --budget 20 --per-cube 4 --out selection.csv", cmd_select,
    )  # fmt: skip
    p.add_argument("--store", required=True, help="cube store with predictions (tcupgan predict)")
    p.add_argument("--budget", type=int, required=True, help="number of slices to select")
    p.add_argument(
        "--strategy", default="novelty",  # checked by select_slices: importing the registry here is slow
        help="a slice scorer: novelty (default): images farthest from the training slices' as the "
        "discriminator's first layer sees them; entropy: the most uncertain; realness (alias "
        "discriminator): the discriminator's lowest verdict; hybrid: novelty and entropy ranks; random: "
        "the baseline",
    )  # fmt: skip
    p.add_argument("--per-cube", type=int, help="at most this many slices per cube")
    p.add_argument(
        "--min-gap", type=int, default=2,
        help="minimum distance between slices of one cube, and from its already corrected slices (2)",
    )  # fmt: skip
    p.add_argument("--min-content", type=float, default=0.05, help="skip slices with less content (0.05)")
    p.add_argument(
        "--sampling", choices=["top", "softrank", "cubes"],  # scorers.SAMPLINGS, tested
        help="top: the best-ranked slices; softrank: draw slices with probability 1 / rank; cubes: rank "
        "cubes by their slices' mean score and draw slices at random with probability 1 / their cube's "
        "rank (draws seeded by --seed). Default: the strategy's own (cubes for novelty and entropy, "
        "softrank for realness)",
    )  # fmt: skip
    p.add_argument("--split", choices=["train", "val", "test"], help="select from the cubes of one split")
    p.add_argument("--seed", type=int, default=0, help="seed of random and of the draws")
    p.add_argument("--out", required=True, help="selection CSV to write")

    p = add_command(
        sub, "render", "Render selected slices as subject images (raw + proposed mask) with a manifest.",
        "tcupgan render --store demo.zarr --selection selection.csv --out subjects/", cmd_render,
    )  # fmt: skip
    p.add_argument("--store", required=True, help="cube store with predictions")
    p.add_argument("--selection", required=True, help="CSV from `tcupgan select`")
    p.add_argument("--out", required=True, help="folder for frames and manifest.csv")
    p.add_argument("--channel", help="show one channel in grey (e.g. t1c) instead of a colour composite")


def _add_upload_commands(sub) -> None:
    """upload, and the sandbox it can talk to."""
    p = add_command(
        sub,
        "upload",
        "Upload rendered subjects to a Zooniverse subject set, resumable and duplicate-free.",
        "tcupgan upload --subjects subjects/ --project 1234 --subject-set round-1 --workflow 5678",
        cmd_upload,
    )
    p.add_argument("--subjects", required=True, help="folder from `tcupgan render` (manifest.csv + frames)")
    p.add_argument("--project", required=True, help="project id or owner/slug")
    p.add_argument("--subject-set", required=True, help="subject set name; created when missing")
    p.add_argument("--workflow", help="workflow id to link the subject set to")
    p.add_argument("--endpoint", help="API endpoint (default $PANOPTES_ENDPOINT or www.zooniverse.org)")
    p.add_argument("--dry-run", action="store_true", help="check and report what would be sent; no requests")
    p.add_argument("--batch", type=int, default=500, help="subjects linked to the set per batch (500)")
    p.add_argument("--workers", type=int, default=16, help="subjects sent at once (16; 1 = one at a time)")
    p.epilog = "credentials: PANOPTES_USERNAME and PANOPTES_PASSWORD, or a prompt; never stored"

    p = add_command(
        sub, "sandbox", "Run a local Panoptes API (loopback only) for tests, demos and dry runs.",
        "tcupgan sandbox --state sandbox-state/ --port 8765 --fail-rate 0.2", cmd_sandbox,
    )  # fmt: skip
    p.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free port)")
    p.add_argument("--state", default="sandbox-state", help="folder where the state persists")
    p.add_argument("--fail-rate", type=float, default=0.0, help="share of write requests that meet a fault")
    p.add_argument(
        "--faults", help="comma list among error_before,error_after,drop_before,drop_after,slow,stale"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the fault draws")
    p.add_argument("--subject-limit", type=int, help="imitate the per-user subject limit (403 beyond it)")
    p.add_argument("--latency", type=float, default=0.0, help="seconds each request takes, e.g. 0.15 (0)")
    p.add_argument(
        "--classes", default="region", help="class names for the workflow's drawing tools (first start)"
    )


def _add_harvest_command(sub) -> None:
    p = add_command(
        sub,
        "harvest",
        "Read volunteers' drawings from a classification export into the store's corrections.",
        "tcupgan harvest --export classifications.csv --store demo.zarr --min-volunteers 3",
        cmd_harvest,
    )
    p.add_argument(
        "--export",
        default="classifications.csv",
        help="classification export CSV to read (with --project: where to save the download)",
    )
    p.add_argument("--project", help="download the export of this project (id or owner/slug) first")
    p.add_argument("--endpoint", help="API endpoint for --project (default $PANOPTES_ENDPOINT)")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for the export (600)")
    p.add_argument("--store", required=True, help="cube store the subjects were rendered from")
    p.add_argument("--workflow", help="only classifications of this workflow id")
    p.add_argument(
        "--workflow-version",
        help="only this workflow version, 3 (any 3.x) or 3.1 (default: the latest major)",
    )
    p.add_argument("--min-volunteers", type=int, default=3, help="subjects with fewer wait (3)")
    p.add_argument("--threshold", type=float, default=0.5, help="vote fraction that makes a pixel (0.5)")
    p.add_argument(
        "--workflow-export",
        help="the project's workflow export (CSV): its task definitions configure the mark extractors "
        "(with --project they are read from the project instead; without either, from the marks)",
    )
    p.add_argument(
        "--tool-values",
        help="drawing tool → label value, e.g. 0=1,1=2 or T1.0=1 (default: a tool labelled with a class "
        "name marks that class, else the i-th tool label marks class i)",
    )
