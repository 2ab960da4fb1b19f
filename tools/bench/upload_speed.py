"""Upload throughput to the loopback sandbox, with and without fault injection, and what goes wrong.

Baseline: the panoptes-client recipe from its documentation (``Subject()``, ``add_location``, ``save()``
per subject, then ``SubjectSet.add``), run on the same subjects against the same sandbox. Under faults
the recipe's own retries are counted for what they leave behind: duplicates and subjects without images.
``tcupgan upload`` is rerun after failed runs, as a user would, until complete.

    python -m tools.bench.upload_speed             # 100 subjects (recipe under faults: 20)
    python -m tools.bench.upload_speed --tiny      # the test suite's smoke run
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tcupgan.data import CubeStore, synthesize
from tcupgan.selection import SelectionRules, select_slices, write_selection
from tcupgan.zooniverse import render_subjects
from tcupgan.zooniverse.testing.sandbox import Sandbox
from tcupgan.zooniverse.upload import upload_until_complete
from tools.bench.common import bench_cli


def make_subjects(tmp: Path, n: int) -> Path:
    """``n`` rendered subjects (real frames, ~512 px) from synthetic cubes with stand-in predictions."""
    store_path = tmp / "s.zarr"
    synthesize("fatchecker", store_path, n=max(1, n // 12 + 1), seed=0, shape=(16, 128, 128))
    store = CubeStore(store_path, mode="r+")
    rng = np.random.default_rng(0)
    for name in store.names():
        store.write_array(name, "prediction", store[name].label[...], attrs={"checkpoint": "bench"})
        store.write_array(
            name, "slice_realness", rng.random(16).astype(np.float32), attrs={"checkpoint": "bench"}
        )
    rows = select_slices(store_path, n, strategy="realness", rules=SelectionRules(min_gap=1))
    selection = write_selection(rows, tmp / "sel.csv")
    render_subjects(store_path, selection, tmp / "subjects")
    return tmp / "subjects"


def manifest_ids(folder: Path) -> list[str]:
    with open(folder / "manifest.csv") as f:
        return [r["#tcupgan_id"] for r in csv.DictReader(f)]


def audit(sandbox: Sandbox, wanted: set[str]) -> dict:
    """Server-side truth: subjects per tcupgan id in the set, and subjects whose images are missing."""
    state = sandbox.state
    in_set: dict[str, int] = {}
    no_media = 0
    for member in state.objects("set_member_subjects"):
        subject = state.get("subjects", member["links"]["subject"])
        tid = subject["metadata"].get("#tcupgan_id")
        in_set[tid] = in_set.get(tid, 0) + 1
        no_media += any(not (state.media / path).exists() for _, path in subject["_media"])
    return {
        "in_set": sum(in_set.values()),
        "missing": len(wanted - set(in_set)),
        "duplicates": sum(c - 1 for c in in_set.values()),
        "without_images": no_media,
        "unlinked_on_server": len(state.objects("subjects")) - sum(in_set.values()),
    }


def ours(folder: Path, sandbox: Sandbox) -> dict:
    start = time.perf_counter()
    _, runs = upload_until_complete(
        folder, sandbox.project_id, "bench", max_runs=20, endpoint=sandbox.endpoint, backoff=0.05
    )
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 2), "runs": len(runs), **audit(sandbox, set(manifest_ids(folder)))}


def recipe(folder: Path, sandbox: Sandbox, n: int) -> dict:
    """The documented client loop; exceptions it raises end the run (as in a user's script)."""
    from panoptes_client import Panoptes, Project, Subject, SubjectSet

    user, password = sandbox.owner_credentials()
    with open(folder / "manifest.csv") as f:
        rows = list(csv.DictReader(f))[:n]
    start, errors = time.perf_counter(), 0
    with Panoptes(endpoint=sandbox.endpoint, username=user, password=password):
        project = Project.find(sandbox.project_id)
        subject_set = SubjectSet()
        subject_set.links.project = project
        subject_set.display_name = "bench"
        subject_set.save()
        made = []
        for row in rows:
            subject = Subject()
            subject.links.project = project
            subject.add_location(str(folder / row["frame_0"]))
            subject.add_location(str(folder / row["frame_1"]))
            subject.metadata.update({k: v for k, v in row.items() if k.startswith("#")})
            try:
                subject.save()
                made.append(subject)
            except Exception:  # noqa: BLE001 - the recipe has no recovery; count and go on
                errors += 1
        try:
            subject_set.add(made)
        except Exception:  # noqa: BLE001
            errors += 1
    seconds = time.perf_counter() - start
    return {
        "seconds": round(seconds, 2),
        "errors": errors,
        **audit(sandbox, {r["#tcupgan_id"] for r in rows}),
    }


def run(args: argparse.Namespace) -> dict:
    n = 8 if args.tiny else args.n
    n_recipe = min(n, 4 if args.tiny else 20)
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    out: dict = {"baseline": "panoptes-client documented recipe (Subject.save per subject, SubjectSet.add)"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = make_subjects(tmp, n)
        out["subjects"], out["mean_frame_kb"] = (
            n,
            round(np.mean([p.stat().st_size for p in folder.glob("*_*.*")]) / 1024, 1),
        )
        for label, rate in (("no_faults", 0.0), ("faults", args.fail_rate)):
            for who in ("tcupgan", "recipe"):
                if who == "recipe" and rate > 0 and (args.skip_recipe_faults or args.tiny):
                    continue
                sub = tmp / f"{who}-{label}"
                sub.mkdir()
                for f in folder.iterdir():
                    (sub / f.name).write_bytes(f.read_bytes())
                state = tmp / f"state-{who}-{label}"
                with Sandbox(state, fail_rate=rate, seed=3, media_latency=args.media_latency) as sandbox:
                    user, password = sandbox.owner_credentials()
                    os.environ.update(PANOPTES_USERNAME=user, PANOPTES_PASSWORD=password)
                    res = ours(sub, sandbox) if who == "tcupgan" else recipe(sub, sandbox, n_recipe)
                count = n if who == "tcupgan" else n_recipe
                res["subjects_per_s"] = round(count / res["seconds"], 2)
                out[f"{who}_{label}"] = res
    out["fail_rate"], out["recipe_subjects"], out["media_latency"] = (
        args.fail_rate,
        n_recipe,
        args.media_latency,
    )
    ratio = out["tcupgan_no_faults"]["subjects_per_s"] / out["recipe_no_faults"]["subjects_per_s"]
    out["speed_ratio_no_faults"] = round(ratio, 2)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=100, help="subjects (100)")
    p.add_argument(
        "--fail-rate", type=float, default=0.2, help="sandbox fault rate for the faulty runs (0.2)"
    )
    p.add_argument("--skip-recipe-faults", action="store_true", help="skip the slow recipe-under-faults run")
    p.add_argument(
        "--media-latency", type=float, default=0.0, help="seconds per media PUT in the sandbox (0)"
    )


def rows(s: dict) -> list[tuple]:
    """This benchmark's rows of docs/benchmarks.md: (what, tcupgan, baseline, ratio)."""
    ours, base, faulty = s["tcupgan_no_faults"], s["recipe_no_faults"], s["tcupgan_faults"]
    recipe = s.get("recipe_faults")  # not run with --tiny or --skip-recipe-faults
    under_faults = (
        "not run"
        if recipe is None
        else (
            f"{recipe['duplicates']} duplicates, {recipe['without_images']} without images, "
            f"{recipe['missing']} missing of {s['recipe_subjects']}"
        )
    )
    return [
        ("upload to the sandbox, no faults", f"{ours['subjects_per_s']} subjects/s",
         f"{base['subjects_per_s']} subjects/s", f"{s['speed_ratio_no_faults']}x"),
        (f"upload under faults (rate {s['fail_rate']})",
         f"{faulty['duplicates']} duplicates, {faulty['missing']} missing, {faulty['without_images']} "
         f"without images ({faulty['runs']} runs, {faulty['subjects_per_s']} subjects/s)", under_faults, ""),
    ]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> dict:
    return bench_cli(__doc__, argv, run, add_arguments)


if __name__ == "__main__":
    main()
