"""Upload throughput to the loopback sandbox, on loopback and at a network's latency, and what faults and
kills leave behind.

Baselines, run on the first 20 of the same subjects against the same sandbox: ``tcupgan upload
--workers 1`` (one subject at a time, the same ledger and checks), and the panoptes-client recipe from
its documentation (``Subject()``, ``add_location``, ``save()`` per subject, then ``SubjectSet.add``).
Each runs at 0 and at ``--latency`` seconds per request. Under faults (``--fail-rate``) the upload runs
as a process that is SIGKILLed ``--kills`` times mid-run, then rerun until complete; the server is then
audited: duplicates, subjects without images, missing subjects, and orphaned creations (unlinked
subjects no volunteer sees). The recipe under faults is audited the same way.

    python -m tools.bench.upload_speed             # 300 subjects (the baselines: 20)
    python -m tools.bench.upload_speed --tiny      # the test suite's smoke run
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import tempfile
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import requests

from tcupgan.data import CubeStore, synthesize
from tcupgan.selection import SelectionRules, select_slices, write_selection
from tcupgan.zooniverse import render_subjects
from tcupgan.zooniverse.testing.sandbox import Sandbox
from tcupgan.zooniverse.upload import LEDGER, upload_subjects, upload_until_complete
from tools.bench.common import bench_cli, peak_rss_mb


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
    """What volunteers would be served, listed through panoptes-client as the project owner: subjects per
    tcupgan id in every subject set, and those whose images do not download whole (GET of each public
    URL). Orphans (created, never linked) are invisible to the client: counted from the server's state."""
    from panoptes_client import Panoptes, Subject, SubjectSet

    user, password = sandbox.owner_credentials()
    sandbox.server.latency, faults = 0.0, sandbox.server.faults.rate  # the run is over: audit quickly
    sandbox.set_fail_rate(0.0)
    in_set: dict[str, int] = {}
    no_media = 0
    with Panoptes(endpoint=sandbox.endpoint, username=user, password=password):
        for subject_set in SubjectSet.where(project_id=sandbox.project_id):
            for subject in Subject.where(subject_set_id=subject_set.id, page_size=100):
                tid = subject.metadata.get("#tcupgan_id")
                in_set[tid] = in_set.get(tid, 0) + 1
                urls = [next(iter(location.values())) for location in subject.locations]
                no_media += len(urls) < 2 or any(not requests.get(u, timeout=30).ok for u in urls)
    sandbox.set_fail_rate(faults)
    return {
        "in_set": sum(in_set.values()),
        "missing": len(wanted - set(in_set)),
        "duplicates": sum(c - 1 for c in in_set.values()),
        "without_images": no_media,
        "unlinked_on_server": len(sandbox.state.objects("subjects")) - sum(in_set.values()),
    }


def ours(folder: Path, sandbox: Sandbox, workers: int = 16) -> dict:
    start = time.perf_counter()
    _, runs = upload_until_complete(
        folder,
        sandbox.project_id,
        "bench",
        max_runs=20,
        endpoint=sandbox.endpoint,
        backoff=0.05,
        workers=workers,
    )
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 2), "runs": len(runs), **audit(sandbox, set(manifest_ids(folder)))}


def _upload_once(folder: str, project: str, endpoint: str, peak_file: str | None = None) -> None:
    """One `tcupgan upload` as the CLI runs it: a run that could not send every subject exits non-zero
    (the user is told to rerun)."""
    report = upload_subjects(folder, project, "bench", endpoint=endpoint, backoff=0.05)
    if peak_file is not None:
        Path(peak_file).write_text(str(peak_rss_mb()))
    if report.failed:
        raise SystemExit(1)


def upload_memory(tmp: Path, counts: tuple[int, ...]) -> dict:
    """Peak resident memory of an upload process for folders of ``counts`` subjects (loopback)."""
    spawn, peaks = multiprocessing.get_context("spawn"), {}
    for count in counts:
        folder = make_subjects(tmp / f"memory-{count}", count)
        with Sandbox(tmp / f"memory-{count}" / "state") as sandbox:
            user, password = sandbox.owner_credentials()
            os.environ.update(PANOPTES_USERNAME=user, PANOPTES_PASSWORD=password)
            peak_file = tmp / f"memory-{count}" / "peak"
            process = spawn.Process(target=_upload_once, args=(str(folder), sandbox.project_id,
                                                               sandbox.endpoint, str(peak_file)))  # fmt: skip
            process.start()
            process.join()
            peaks[str(count)] = round(float(peak_file.read_text()), 1)
    return {"peak_mb": peaks, "ratio": round(peaks[str(counts[-1])] / peaks[str(counts[0])], 2)}


def _ledger_lines(folder: Path) -> int:
    ledger = folder / LEDGER
    return len(ledger.read_text().splitlines()) if ledger.exists() else 0


def killed_runs(folder: Path, sandbox: Sandbox, kills: int, rng: np.random.Generator) -> dict:
    """An upload process SIGKILLed ``kills`` times mid-run (after a random number of ledger events:
    between creating a subject, sending its images and linking it), then rerun until it completes;
    the server audited after."""
    spawn = multiprocessing.get_context("spawn")
    start, runs, killed, complete = time.perf_counter(), 0, 0, False
    while not complete and runs < kills + 20:
        runs += 1
        process = spawn.Process(target=_upload_once, args=(str(folder), sandbox.project_id, sandbox.endpoint))
        before, events = _ledger_lines(folder), int(rng.integers(1, max(2, len(manifest_ids(folder)) // 3)))
        process.start()
        while killed < kills and process.is_alive() and _ledger_lines(folder) < before + events:
            time.sleep(0.01)
        if killed < kills and process.is_alive():
            process.kill()
            killed += 1
        process.join()
        complete = process.exitcode == 0 and killed >= kills
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 2), "runs": runs, "killed": killed,
            **audit(sandbox, set(manifest_ids(folder)))}  # fmt: skip


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


def in_sandbox(tmp: Path, folder: Path, name: str, action, **sandbox_args) -> dict:
    """Run ``action(copy_of_folder, sandbox)`` against a fresh sandbox; subjects/s added."""
    sub = tmp / name
    sub.mkdir()
    for f in folder.iterdir():
        (sub / f.name).write_bytes(f.read_bytes())
    with Sandbox(tmp / f"state-{name}", seed=3, **sandbox_args) as sandbox:
        user, password = sandbox.owner_credentials()
        os.environ.update(PANOPTES_USERNAME=user, PANOPTES_PASSWORD=password)
        result = action(sub, sandbox)
    return {**result, "subjects_per_s": round(len(manifest_ids(sub)) / result["seconds"], 2)}


def run(args: argparse.Namespace) -> dict:
    n = 8 if args.tiny else args.n
    n_base = min(n, 4 if args.tiny else 20)  # the slow baselines send fewer subjects; rates compare
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    out: dict = {"baseline": "one subject at a time (tcupgan upload --workers 1) and panoptes-client's "
                 "documented recipe (Subject.save per subject, SubjectSet.add)", "subjects": n,
                 "baseline_subjects": n_base, "fail_rate": args.fail_rate, "kills": args.kills}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder, few = make_subjects(tmp, n), tmp / "few"
        few.mkdir()
        for f in folder.iterdir():  # the baselines' folder: the first n_base subjects
            if f.name != "manifest.csv":
                (few / f.name).write_bytes(f.read_bytes())
        with open(folder / "manifest.csv") as f:
            (few / "manifest.csv").write_text("".join(f.readlines()[: n_base + 1]))
        out["mean_frame_kb"] = round(np.mean([p.stat().st_size for p in folder.glob("*_*.*")]) / 1024, 1)
        for latency in (0.0, args.latency):
            tag = f"latency_{latency:g}"
            out[f"tcupgan_{tag}"] = in_sandbox(tmp, folder, f"ours-{tag}", ours, latency=latency)
            out[f"one_at_a_time_{tag}"] = in_sandbox(
                tmp, few, f"one-{tag}", partial(ours, workers=1), latency=latency
            )
            out[f"recipe_{tag}"] = in_sandbox(
                tmp, few, f"recipe-{tag}", partial(recipe, n=n_base), latency=latency
            )
        rng = np.random.default_rng(0)
        kills = partial(killed_runs, kills=1 if args.tiny else args.kills, rng=rng)
        out["tcupgan_faults_kills"] = in_sandbox(tmp, folder, "kills", kills, fail_rate=args.fail_rate,
                                                 latency=0.0 if args.tiny else args.latency)  # fmt: skip
        if args.memory_subjects and not args.tiny:
            out["memory"] = upload_memory(tmp, (args.memory_subjects // 10, args.memory_subjects))
        if not (args.tiny or args.skip_recipe_faults):
            out["recipe_faults"] = in_sandbox(tmp, few, "recipe-faults", partial(recipe, n=n_base),
                                              fail_rate=args.fail_rate)  # fmt: skip
    slow = f"latency_{args.latency:g}"
    for base in ("one_at_a_time", "recipe"):
        for tag in ("latency_0", slow):
            out[f"ratio_{base}_{tag}"] = round(
                out[f"tcupgan_{tag}"]["subjects_per_s"] / out[f"{base}_{tag}"]["subjects_per_s"], 2
            )
    out["latency"] = args.latency
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=300, help="subjects (300)")
    p.add_argument(
        "--fail-rate", type=float, default=0.3, help="sandbox fault rate for the faulty runs (0.3)"
    )
    p.add_argument("--skip-recipe-faults", action="store_true", help="skip the slow recipe-under-faults run")
    p.add_argument("--latency", type=float, default=0.15, help="seconds per request in the slow runs (0.15)")
    p.add_argument(
        "--memory-subjects",
        type=int,
        default=1000,
        help="upload memory at N and N/10 subjects (1000; 0: skip)",
    )
    p.add_argument("--kills", type=int, default=5, help="upload processes killed mid-run under faults (5)")


def rows(s: dict) -> list[tuple]:
    """This benchmark's rows of docs/benchmarks.md: (what, tcupgan, baseline, ratio)."""
    out = []
    for tag, what in (
        ("latency_0", "loopback"),
        (f"latency_{s['latency']:g}", f"{s['latency'] * 1000:g} ms per request"),
    ):
        ours, one, recipe = s[f"tcupgan_{tag}"], s[f"one_at_a_time_{tag}"], s[f"recipe_{tag}"]
        out.append((f"upload, {what} ({s['subjects']} subjects; baselines {s['baseline_subjects']})",
                    f"{ours['subjects_per_s']} subjects/s",
                    f"one at a time {one['subjects_per_s']}, recipe {recipe['subjects_per_s']} subjects/s",
                    f"{s[f'ratio_one_at_a_time_{tag}']}x, {s[f'ratio_recipe_{tag}']}x"))  # fmt: skip
    k = s["tcupgan_faults_kills"]
    recipe = s.get("recipe_faults")  # not run with --tiny or --skip-recipe-faults
    under_faults = "not run" if recipe is None else (
        f"recipe: {recipe['duplicates']} duplicates, {recipe['without_images']} without images, "
        f"{recipe['missing']} missing of {s['baseline_subjects']}")  # fmt: skip
    audit = (f"{k['duplicates']} duplicates, {k['missing']} missing, {k['without_images']} without "
             f"images, {k['unlinked_on_server']} orphaned creations ({k['runs']} runs)")  # fmt: skip
    out.append(
        (f"upload under faults (rate {s['fail_rate']}), {k['killed']} kills mid-run", audit, under_faults, "")
    )
    if "memory" in s:
        (small, few), (big, many) = s["memory"]["peak_mb"].items()
        ratio = f"{s['memory']['ratio']}x (lower is better)"
        out.append(
            (
                f"upload process peak memory, {big} subjects",
                f"{many} MB",
                f"{few} MB ({small} subjects)",
                ratio,
            )
        )
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    return bench_cli(__doc__, argv, run, add_arguments)


if __name__ == "__main__":
    main()
