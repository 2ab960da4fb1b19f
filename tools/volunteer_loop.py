"""The whole volunteer loop, end to end, against the loopback Panoptes sandbox.

    python -m tools.volunteer_loop --out loop-run            # ~10 minutes on 2 CPU cores
    python -m tools.volunteer_loop --out loop-run --quick    # ~1-2 minutes, the CI smoke run

fit (labelled fatchecker cubes) → predict a pool of domain-shifted cubes that have no labels → select
the slices the discriminator finds least real → render → upload (through panoptes-client, with fault
injection) → simulated volunteers draw on them → download the classification export → harvest → fit
again from the first checkpoint on labels + corrections → predict again. Held-out shifted cubes (never
shown to volunteers) measure whether the corrections helped. Prints a JSON summary and writes it to
``OUT/loop_summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from tcupgan.data import CubeStore, synthesize
from tcupgan.inference import predict_store
from tcupgan.selection import select_slices, write_selection
from tcupgan.training.cli import run_fit
from tcupgan.zooniverse import render_subjects
from tcupgan.zooniverse.harvest import download_export, harvest
from tcupgan.zooniverse.sandbox import Sandbox
from tcupgan.zooniverse.upload import upload_subjects
from tcupgan.zooniverse.volunteers import classify_subject_set

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def build_stores(out: Path, quick: bool, seed: int = 0) -> tuple[Path, Path, list[str], list[str]]:
    """``work.zarr``: labelled cubes + unlabelled shifted pool (train) + labelled shifted held-out (test);
    ``truth.zarr``: the pool's hidden labels, which only the simulated volunteers see."""
    shape = (16, 64, 64) if quick else None
    work, truth = out / "work.zarr", out / "truth.zarr"
    synthesize("fatchecker", work, n=4 if quick else 10, seed=seed, shape=shape)
    synthesize("fatchecker", truth, n=4 if quick else 8, seed=seed + 1, shift=True, shape=shape)
    store, hidden = CubeStore(work, mode="r+"), CubeStore(truth)
    pool, heldout = [], []
    for i, name in enumerate(hidden.names()):
        cube = hidden[name]
        if i % 2 == 0:  # the pool: no labels in the work store, volunteers will correct some slices
            store.write_cube(name, cube.image[...], None, attrs={"split": "train"})
            pool.append(name)
        else:
            store.write_cube(name, cube.image[...], cube.label[...], attrs={"split": "test"})
            heldout.append(name)
    return work, truth, pool, heldout


def fit(
    store: Path, run_dir: Path, epochs: int, quick: bool, init_from: str | None = None, seed: int = 0
) -> str:
    """``tcupgan fit`` with the demo config (the same code path as the command line); returns last.ckpt."""
    args = ["--config", str(CONFIG), "--data.store", str(store), "--trainer.max_epochs", str(epochs),
            "--trainer.default_root_dir", str(run_dir), "--trainer.logger.init_args.save_dir", str(run_dir),
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--data.num_workers", "0", "--seed_everything", str(seed)]  # fmt: skip
    if quick:
        args += ["--data.samples_per_epoch", "8", "--trainer.check_val_every_n_epoch", "1"]
    if init_from:
        args += ["--model.init_from", init_from]
    cli = run_fit(args)
    return cli.trainer.checkpoint_callback.last_model_path


def dice(store_path: Path, truth_path: Path, names: list[str]) -> float:
    """Mean Dice of stored predictions against the labels of ``truth_path``."""
    store, truth = CubeStore(store_path), CubeStore(truth_path)
    scores = []
    for name in names:
        pred, label = store[name]["prediction"][...] > 0, truth[name].label[...] > 0
        scores.append(2 * (pred & label).sum() / max(pred.sum() + label.sum(), 1))
    return float(np.mean(scores))


def upload_until_done(subjects: Path, sandbox: Sandbox) -> dict:
    """Rerun the upload after failures, as a user would; the ledger makes every rerun safe."""
    runs = []
    for _ in range(10):
        try:
            report = upload_subjects(
                subjects,
                sandbox.project_id,
                "loop-round-1",
                workflow=sandbox.workflow_id,
                attempts=3,
                backoff=0.05,
            )
        except Exception as e:  # noqa: BLE001 - a failed run is expected under fault injection
            runs.append(f"{type(e).__name__}: {e}")
            continue
        runs.append("complete" if not report.failed else f"{report.failed} failed")
        if not report.failed:
            return {"runs": runs, "last": report.as_dict()}
    raise RuntimeError(f"upload did not complete in 10 runs: {runs}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, help="folder for stores, runs, subjects and the summary")
    parser.add_argument("--quick", action="store_true", help="tiny cubes and few steps (CI smoke run)")
    parser.add_argument("--epochs", type=int, help="epochs of the first fit (default 18, quick 2)")
    parser.add_argument("--budget", type=int, help="slices sent to volunteers (default 24, quick 8)")
    parser.add_argument("--fail-rate", type=float, default=0.2, help="sandbox fault rate on writes (0.2)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=False)
    epochs = args.epochs or (2 if args.quick else 18)
    budget = args.budget or (8 if args.quick else 24)
    work, truth, pool, heldout = build_stores(out, args.quick)

    ckpt = fit(work, out / "run0", epochs, args.quick)
    predict_store(ckpt, work, cubes=pool + heldout)
    before = {"pool": dice(work, truth, pool), "heldout": dice(work, truth, heldout)}
    selection = write_selection(select_slices(work, budget, cubes=pool), out / "selection.csv")
    render_subjects(work, selection, out / "subjects")

    with Sandbox(out / "sandbox", fail_rate=args.fail_rate, seed=1) as sandbox:
        user, password = sandbox.owner_credentials()
        os.environ.update(
            PANOPTES_ENDPOINT=sandbox.endpoint, PANOPTES_USERNAME=user, PANOPTES_PASSWORD=password
        )
        upload = upload_until_done(out / "subjects", sandbox)
        sandbox.set_fail_rate(0)
        volunteers = {k: v for k, v in sandbox.state.credentials().items() if k.startswith("volunteer")}
        set_id = next(s["id"] for s in sandbox.state.objects("subject_sets"))
        posted = classify_subject_set(sandbox.endpoint, volunteers, str(truth), set_id, sandbox.workflow_id)
        export = download_export(sandbox.project_id, out / "classifications.csv", timeout=60)
    harvested = harvest(export, work, min_volunteers=3)

    tuned = fit(work, out / "run1", max(1, epochs // 2), args.quick, init_from=ckpt)
    predict_store(tuned, work, cubes=pool + heldout, overwrite=True)
    after = {"pool": dice(work, truth, pool), "heldout": dice(work, truth, heldout)}
    summary = {
        "slices_sent": budget, "classifications": posted, "upload": upload, "harvest": harvested.as_dict(),
        "dice_before": before, "dice_after": after, "checkpoints": [ckpt, tuned],
    }  # fmt: skip
    (out / "loop_summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
