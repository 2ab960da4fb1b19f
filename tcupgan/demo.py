"""``tcupgan demo``: the whole product on built-in synthetic data, on a laptop CPU.

synth → fit → predict → evaluate → select → render → sandbox (in-process) → upload (with injected
faults) → three simulated volunteers draw → classification export → harvest → fit again on the
corrections → predict → a short report with Dice before/after and where the figures are.

The pool the volunteers see is domain-shifted fatchecker cubes *without* labels in the working store
(their truth lives in ``truth.zarr``, which only the simulated volunteers read); held-out shifted cubes
that volunteers never see measure whether the corrections helped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from tcupgan.data import CubeStore, synthesize
from tcupgan.data.synth import cube_name
from tcupgan.errors import ConfigError, TcupganError, require_extra

__all__ = ["run_demo", "build_stores", "fit_demo_model", "dice", "DEMO_CONFIG"]

DEMO_CONFIG = Path(__file__).resolve().parent / "configs" / "demo.yaml"


def build_stores(
    out: Path, quick: bool, seed: int = 0, shifted: int | None = None, shift: float = 1.0, familiar: int = 0
) -> tuple[Path, Path, list[str], list[str]]:
    """``work.zarr``: labelled cubes + unlabelled pool (train) + labelled shifted held-out (test);
    ``truth.zarr``: the pool's hidden labels. ``shifted`` cubes (4 quick, 8 otherwise) of strength
    ``shift`` split evenly between pool and held-out; ``familiar`` unshifted cubes join the pool, as
    unlabelled data a project already segments well would (then picking slices matters more)."""
    shape = (16, 64, 64) if quick else None
    work, truth = out / "work.zarr", out / "truth.zarr"
    synthesize("fatchecker", work, n=4 if quick else 10, seed=seed, shape=shape)
    n_shifted = shifted or (4 if quick else 8)
    synthesize("fatchecker", truth, n=n_shifted, seed=seed + 1, shift=shift, shape=shape)
    if familiar:  # another seed than the labelled cubes': new cubes of the same family
        synthesize("fatchecker", truth, n=familiar, seed=seed + 2, shape=shape)
    store, hidden = CubeStore(work, mode="r+"), CubeStore(truth)
    shifted_names = [cube_name("fatchecker", seed + 1, i, shift) for i in range(n_shifted)]
    pool = shifted_names[::2] + [cube_name("fatchecker", seed + 2, i) for i in range(familiar)]
    heldout = shifted_names[1::2]
    for name in pool:
        store.write_cube(name, hidden[name].image[...], None, attrs={"split": "train"})
    for name in heldout:
        cube = hidden[name]
        store.write_cube(name, cube.image[...], cube.label[...], attrs={"split": "test"})
    return work, truth, pool, heldout


def fit_demo_model(
    store: Path,
    run_dir: Path,
    epochs: int,
    quick: bool,
    init_from: str | None = None,
    seed: int = 0,
    samples: int | None = None,
    extra: Sequence[str] = (),
) -> str:
    """``tcupgan fit --config configs/demo.yaml`` (the command line's code path); returns last.ckpt.

    ``quick``: ``samples`` (default 16) crops per epoch, validation only after the last epoch. ``extra``:
    further ``fit`` arguments (ablations such as ``--model.dropout 0.1``)."""
    from tcupgan.training.cli import fit_config

    return fit_config(
        DEMO_CONFIG, store, run_dir, epochs=epochs, seed=seed,
        samples=(samples or 16) if quick else None, validate_every=epochs if quick else None,
        extra=[*(["--model.init_from", init_from] if init_from else []), *extra],
    )  # fmt: skip


def dice(store_path: Path, truth_path: Path, names: list[str]) -> float:
    """Mean Dice of stored predictions against the labels of ``truth_path``."""
    store, truth = CubeStore(store_path), CubeStore(truth_path)
    scores = []
    for name in names:
        pred, label = store[name]["prediction"][...] > 0, truth[name].label[...] > 0
        scores.append(2 * (pred & label).sum() / max(pred.sum() + label.sum(), 1))
    return float(np.mean(scores))


def _set_audit(sandbox) -> dict:
    """Subjects in the demo's set, listed through panoptes-client: duplicates and missing images."""
    import requests
    from panoptes_client import Panoptes, Subject, SubjectSet

    user, password = sandbox.owner_credentials()
    with Panoptes(endpoint=sandbox.endpoint, username=user, password=password):
        (subject_set,) = SubjectSet.where(project_id=sandbox.project_id, display_name="demo-round-1")
        subjects = list(Subject.where(subject_set_id=subject_set.id, page_size=100))
    ids = [s.metadata["#tcupgan_id"] for s in subjects]
    urls = [next(iter(loc.values())) for s in subjects for loc in s.locations]
    missing = sum(requests.head(u, timeout=30).status_code != 200 for u in urls)
    return {
        "subjects_in_set": len(subjects),
        "duplicates": len(ids) - len(set(ids)),
        "images_missing": missing,
    }


def _before_after_figure(work: Path, truth: Path, before: dict, names: list[str], path: Path) -> Path:
    """A held-out slice per cube: truth, first model, after one volunteer round."""
    from tcupgan.viz import overlay, save_panels

    store, hidden = CubeStore(work), CubeStore(truth)
    rows = []
    for name in names:
        label = hidden[name].label[...]
        z = int(np.argmax(label.sum(axis=(1, 2))))
        planes = store[name].image[:, z]
        rows.append(
            [
                (f"{name} z={z}: truth", overlay(planes, label[z])),
                ("first model", overlay(planes, before[name][z])),
                ("after the volunteer round", overlay(planes, store[name]["prediction"][z])),
            ]
        )
    return save_panels(rows, path)


@contextmanager
def _logged_in(sandbox) -> Iterator[None]:
    """The sandbox owner's credentials in the environment, as a real project's would be, for the
    sandbox's lifetime only: its throwaway credentials do not outlive it."""
    keys = ("PANOPTES_ENDPOINT", "PANOPTES_USERNAME", "PANOPTES_PASSWORD")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(dict(zip(keys, (sandbox.endpoint, *sandbox.owner_credentials()), strict=True)))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def volunteer_round(out: Path, truth: Path, fail_rate: float, progress=print) -> dict:
    """Upload ``out/subjects`` to a sandbox with injected faults, let its simulated volunteers draw on
    them (from the hidden ``truth``) and download the classification export: the report's upload, audit
    and classification entries, the export's path and the workflow's tasks."""
    from tcupgan.zooniverse.harvest import download_export, fetch_workflow_tasks
    from tcupgan.zooniverse.testing import Sandbox, classify_subject_set
    from tcupgan.zooniverse.upload import upload_until_complete

    progress(f"5/8 uploading to the sandbox (fault rate {fail_rate}), volunteers classifying")
    classes = tuple(CubeStore(truth).class_names)
    with (
        Sandbox(out / "sandbox", fail_rate=fail_rate, seed=1, classes=classes) as sandbox,
        _logged_in(sandbox),
    ):
        report, runs = upload_until_complete(
            out / "subjects", sandbox.project_id, "demo-round-1", workflow=sandbox.workflow_id, attempts=3,
            backoff=0.05,
        )  # fmt: skip
        if report is None:
            raise TcupganError(f"the demo upload did not complete in {len(runs)} runs: {runs}")
        sandbox.set_fail_rate(0)
        audit = _set_audit(sandbox)
        volunteers = {k: v for k, v in sandbox.state.credentials().items() if k.startswith("volunteer")}
        set_id = next(s["id"] for s in sandbox.state.objects("subject_sets"))
        posted = classify_subject_set(sandbox.endpoint, volunteers, str(truth), set_id, sandbox.workflow_id)
        progress("6/8 downloading the classification export and harvesting")
        export = download_export(sandbox.project_id, out / "classifications.csv", timeout=60)
        tasks = fetch_workflow_tasks(sandbox.project_id)
    upload = {"runs": runs, "last": report.as_dict()}
    return {"upload": upload, "set_audit": audit, "classifications": posted, "export": export, "tasks": tasks}


def run_demo(
    out: str | os.PathLike,
    *,
    quick: bool = False,
    fail_rate: float = 0.2,
    budget: int | None = None,
    epochs: int | None = None,
    progress=print,
) -> dict:
    """Run the whole loop into ``out`` (a new folder); returns the report (also ``out/report.json``)."""
    import json

    from tcupgan.inference import predict_store
    from tcupgan.metrics.evaluate import evaluate_store
    from tcupgan.selection import select_slices, write_selection
    from tcupgan.zooniverse import render_subjects
    from tcupgan.zooniverse.harvest import harvest

    require_extra("panoptes_client", "zooniverse", "the demo's upload and harvest")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"'{out}' already holds files; give the demo a new folder (--out)")
    out.mkdir(parents=True, exist_ok=True)
    epochs = epochs or (3 if quick else 18)
    budget = budget or (8 if quick else 24)
    progress("1/8 synthesising stores")
    work, truth, pool, heldout = build_stores(out, quick)
    progress(f"2/8 training TCuP-GAN ({epochs} epochs)")
    ckpt = fit_demo_model(work, out / "run0", epochs, quick)
    progress("3/8 predicting and evaluating")
    predict_store(ckpt, work, cubes=pool + heldout)
    before = {"pool": dice(work, truth, pool), "heldout": dice(work, truth, heldout)}
    first = {name: CubeStore(work)[name]["prediction"][...] for name in heldout}
    evaluate_store(work, out / "evaluation-before", cubes=heldout)
    progress(f"4/8 selecting {budget} slices and rendering subjects")
    selection = write_selection(select_slices(work, budget, cubes=pool), out / "selection.csv")
    render_subjects(work, selection, out / "subjects")
    loop = volunteer_round(out, truth, fail_rate, progress)
    harvested = harvest(loop.pop("export"), work, min_volunteers=3, workflow_tasks=loop.pop("tasks"))
    progress("7/8 training again on labels + corrections")
    tuned = fit_demo_model(work, out / "run1", max(1, epochs // 2), quick, init_from=ckpt)
    progress("8/8 predicting again and drawing figures")
    predict_store(tuned, work, cubes=pool + heldout, overwrite=True)
    after = {"pool": dice(work, truth, pool), "heldout": dice(work, truth, heldout)}
    evaluate_store(work, out / "evaluation-after", cubes=heldout)
    figures = [
        str(_before_after_figure(work, truth, first, heldout, out / "before_after.png")),
        str(out / "evaluation-after" / "worst_slices.png"),
        str(out / "subjects"),
    ]
    report = {
        "dice_before": before, "dice_after": after, "slices_sent": budget, **loop,
        "harvest": harvested.as_dict(), "checkpoints": [ckpt, tuned], "figures": figures,
    }  # fmt: skip
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return report
