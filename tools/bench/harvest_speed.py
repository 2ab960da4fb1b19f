"""Harvest time and memory for a project-sized classification export (100,000 rows by default).

An export as a busy project produces it: 10 volunteers per slice, drawing in every front end's shapes
(old polygons inside a combo task, new freehand lines, ellipses, circles), each row with its subject
data, into a store of 64 x 64 px slices. ``tcupgan harvest`` runs in a fresh process (its peak resident
memory is the process's); the baseline is the harvest before it streamed the export and read marks
with panoptes_aggregation (git ``--baseline-commit``), on the same export, where git has that commit.

    python -m tools.bench.harvest_speed            # 100,000 rows
    python -m tools.bench.harvest_speed --tiny     # the test suite's smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from skimage.draw import ellipse as ellipse_pixels

from tcupgan.data import CubeStore
from tcupgan.zooniverse.testing.exports import write_export
from tcupgan.zooniverse.testing.sandbox import workflow_tasks
from tcupgan.zooniverse.testing.volunteers import trace_marks
from tools.bench.common import bench_cli

ROOT = Path(__file__).resolve().parents[2]
SIDE, DEPTH, VOLUNTEERS, FRAME = 64, 128, 10, 512
MEASURE = """
import json, sys, time
sys.path[:0] = [sys.argv[1], sys.argv[5]]
from {module} import harvest
from tools.bench.common import peak_rss_mb
start = time.perf_counter()
report = harvest(sys.argv[2], sys.argv[3], min_volunteers=3, **json.loads(sys.argv[4]))
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "peak_mb": peak_rss_mb(), "slices_written": report.slices_written,
                  "classifications_used": report.classifications_used}}))
"""


def ellipses(rng: np.random.Generator) -> list[tuple[float, float, float, float, float]]:
    """Two or three regions per slice: (x, y, rx, ry, angle in degrees) in slice pixels."""

    def one() -> tuple:
        return (
            rng.uniform(12, 52),
            rng.uniform(12, 52),
            rng.uniform(4, 10),
            rng.uniform(3, 7),
            rng.uniform(-80, 80),
        )

    return [one() for _ in range(int(rng.integers(2, 4)))]


def truth_of(regions: list[tuple]) -> np.ndarray:
    label = np.zeros((SIDE, SIDE), np.uint8)
    for x, y, rx, ry, angle in regions:
        rr, cc = ellipse_pixels(y, x, ry, rx, (SIDE, SIDE), rotation=math.radians(angle))
        label[rr, cc] = 1
    return label


def marks_of(regions: list[tuple], style: int, rng: np.random.Generator) -> list[dict]:
    """One volunteer's annotations: old front end polygons in the combo, freehand lines, or ellipses."""
    scale = FRAME / SIDE
    if style == 2:  # new front end ellipses, jittered (the angle turns counter-clockwise on screen)
        value = [{"toolIndex": 5, "toolType": "ellipse", "frame": 0,
                  "x_center": (x + rng.normal(0, 0.3)) * scale,
                  "y_center": (y + rng.normal(0, 0.3)) * scale, "rx": rx * scale, "ry": ry * scale,
                  "angle": angle} for x, y, rx, ry, angle in regions]  # fmt: skip
        return [{"task": "T1", "taskType": "drawing", "value": value}]
    tools = {1: {"polygon": 0, "freehandLine": 1}}
    kind = "old" if style == 0 else "freehand"
    value = trace_marks(truth_of(regions), (FRAME, FRAME), tools, rng, noise_px=1.0, style=kind)
    drawing = {"task": "T1", "value": value}
    return [{"task": "T0", "value": [drawing, {"task": "T2", "value": 0}]}] if style == 0 else [drawing]


def make_export(tmp: Path, rows: int, rng: np.random.Generator) -> tuple[Path, Path]:
    """A store with enough slices for ``rows`` classifications and the export itself."""
    slices = max(1, rows // VOLUNTEERS)
    cubes = math.ceil(slices / DEPTH)
    store = CubeStore.create(tmp / "h.zarr", task="binary", channel_names=["em"], class_names=["region"])
    for c in range(cubes):
        store.write_cube(f"c{c:03d}", np.zeros((1, DEPTH, SIDE, SIDE), np.float32),
                         np.zeros((DEPTH, SIDE, SIDE), np.uint8))  # fmt: skip
    templates = []  # annotations drawn for 50 distinct slices, reused across the store
    for _ in range(50):
        regions = ellipses(rng)
        templates.append([json.dumps(marks_of(regions, v % 3, rng)) for v in range(VOLUNTEERS)])
    out = []
    for i in range(slices):
        cube, z = f"c{i // DEPTH:03d}", i % DEPTH
        meta = {"retired": None, "#cube": cube, "#slice": z, "#frame_width": FRAME, "#frame_height": FRAME,
                "#store": "h.zarr", "#tcupgan_id": f"{cube}-{z}", "#checkpoint": "bench"}  # fmt: skip
        for v in range(VOLUNTEERS):
            version = "1.0" if v % 3 == 0 else "2.0"
            out.append({"classification_id": str(len(out) + 1), "user_name": f"volunteer{v}",
                        "user_id": str(v), "user_ip": "ip", "workflow_id": "9", "workflow_name": "w",
                        "workflow_version": "3.1",
                        "created_at": "2026-11-23 10:00:00 UTC", "gold_standard": "", "expert": "",
                        "metadata": json.dumps({"classifier_version": version}),
                        "annotations": templates[i % len(templates)][v],
                        "subject_data": json.dumps({str(100000 + i): meta}),
                        "subject_ids": str(100000 + i)})  # fmt: skip
    return write_export(out, tmp / "export.csv"), tmp / "h.zarr"


def measure(module: str, path: Path, export: Path, store: Path, **kwargs: object) -> dict:
    code = MEASURE.format(module=module)
    args = [str(path), str(export), str(store), json.dumps(kwargs), str(ROOT)]
    done = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True)
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in json.loads(done.stdout).items()}


def baseline_module(tmp: Path, commit: str) -> Path | None:
    """The harvest module of ``commit`` as a file importable beside today's package, if git has it."""
    try:
        source = subprocess.run(["git", "show", f"{commit}:tcupgan/zooniverse/harvest.py"], cwd=ROOT,
                                check=True, capture_output=True, text=True).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    (tmp / "baseline").mkdir()
    (tmp / "baseline" / "old_harvest.py").write_text(source)
    return tmp / "baseline"


def run(args: argparse.Namespace) -> dict:
    rows = 600 if args.tiny else args.rows
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        export, store = make_export(tmp, rows, np.random.default_rng(0))
        out = {"rows": rows, "export_mb": round(export.stat().st_size / 2**20, 1),
               "volunteers_per_slice": VOLUNTEERS,
               "make_seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
        untouched = shutil.copytree(store, tmp / "b" / "h.zarr")  # the same work for the baseline
        tasks = {"9": {"3": workflow_tasks(("region",))}}  # as `--project` reads them from the workflow
        out["tcupgan"] = measure("tcupgan.zooniverse.harvest", ROOT, export, store, workflow_tasks=tasks)
        old = None if args.tiny else baseline_module(tmp, args.baseline_commit)
        if old is not None:
            base = measure("old_harvest", old, export, untouched)
            out["baseline"] = {"commit": args.baseline_commit, **base}
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rows", type=int, default=100_000, help="classifications in the export (100000)")
    p.add_argument("--baseline-commit", default="6958c94", help="git commit of the baseline harvest")


def rows(s: dict) -> list[tuple]:
    """This benchmark's rows of docs/benchmarks.md: (what, tcupgan, baseline, ratio)."""
    ours, base = s["tcupgan"], s.get("baseline")
    against = (
        "not run" if base is None else f"{base['seconds']} s, {base['peak_mb']:.0f} MB (git {base['commit']})"
    )
    ratio = "" if base is None else f"{base['seconds'] / ours['seconds']:.2f}x"
    what = (
        f"harvest {s['rows']:,} rows ({s['export_mb']} MB, {s['volunteers_per_slice']} volunteers per slice)"
    )
    return [(what, f"{ours['seconds']} s, {ours['peak_mb']:.0f} MB peak", against, ratio)]


def main(argv: Sequence[str] | None = None) -> dict:
    return bench_cli(__doc__, argv, run, add_arguments)


if __name__ == "__main__":
    main()
