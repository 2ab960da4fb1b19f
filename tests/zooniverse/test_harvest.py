"""Harvest: marks of both front ends → slice masks → consensus → corrections in the store."""

from __future__ import annotations

import csv
import json
from collections import Counter

import numpy as np
import pytest

from tcupgan.cli.main import main
from tcupgan.data import CubeStore
from tcupgan.errors import InputError
from tcupgan.zooniverse.harvest import harvest
from tcupgan.zooniverse.testing.exports import write_export
from tcupgan.zooniverse.testing.volunteers import classify_subject_set
from tcupgan.zooniverse.upload import upload_subjects
from tests.conftest import snapshot


def row(cid, user, marks, cube="c", z=1, frame=(80, 80), sid="101", **extra):
    meta = {
        "#cube": cube,
        "#slice": z,
        "#frame_width": frame[0],
        "#frame_height": frame[1],
        "#store": "h.zarr",
    }
    return {
        "classification_id": cid, "user_name": user, "user_id": "", "user_ip": "ip", "workflow_id": "9",
        "workflow_name": "w", "workflow_version": "3.1", "created_at": "2026-11-23 10:00:00 UTC",
        "gold_standard": "", "expert": "", "metadata": json.dumps({"classifier_version": "2.0"}),
        "annotations": json.dumps([{"task": "T0", "value": marks}]),
        "subject_data": json.dumps({sid: {"retired": None, **meta}}), "subject_ids": sid, **extra,
    }  # fmt: skip


def square(x0, y0, x1, y1, **keys):
    return {
        "points": [{"x": x0, "y": y0}, {"x": x1, "y": y0}, {"x": x1, "y": y1}, {"x": x0, "y": y1}],
        **keys,
    }


def test_known_polygons_give_known_areas_and_three_volunteer_consensus(small_store, tmp_path):
    store_path = small_store
    # frames are 80 px for a 40 px slice: frame square 20..60 = slice pixels 10..29 (400 px)
    rows = [
        row("1", "ann", [square(20, 20, 60, 60, tool=0, frame=0)]),  # old front end polygon
        row(
            "2",
            "bob",
            [
                {
                    "toolIndex": 0,
                    "toolType": "rectangle",
                    "frame": 1,
                    "x_center": 40,
                    "y_center": 40,
                    "width": 40,
                    "height": 40,
                }
            ],
        ),  # fmt: skip
        row(
            "3",
            "cyd",
            [
                {
                    "toolIndex": 0,
                    "toolType": "freehandLine",
                    "frame": 0,
                    "pathX": [0, 20, 20, 0],
                    "pathY": [0, 0, 20, 20],
                }
            ],
        ),  # fmt: skip  a different region: outvoted
        row("4", "dan", [square(0, 0, 8, 8, tool=0)], sid="102", z=2),  # only one volunteer: waits
        row("5", "eve", [], annotations="{oops"),  # torn JSON
        row("6", "fay", [], subject_data="[]"),  # not an object
        row("7", "gus", [], cube="missing-cube"),
    ]
    export = write_export(rows, tmp_path / "classifications.csv")
    report = harvest(export, store_path, min_volunteers=3)
    assert report.rows == 7 and report.classifications_used == 3 and report.subjects_waiting == 1
    assert report.skipped == {"malformed JSON": 2, "cube or slice not in this store": 1}
    cube = CubeStore(store_path)["c"]
    corrected = cube["corrections"][1]
    assert corrected.sum() == 400 and corrected[10:30, 10:30].all()  # 2 of 3 volunteers
    votes = cube["correction_votes"][0, 1]
    assert votes[15, 15] == 67 and votes[5, 5] == 33 and votes[35, 35] == 0
    assert cube["corrections"].attrs["slices"]["1"]["classification_ids"] == ["1", "2", "3"]
    assert cube["corrections"][0].sum() == 0 and "2" not in cube["corrections"].attrs["slices"]
    before = snapshot(store_path)
    again = harvest(export, store_path, min_volunteers=3)
    assert again.slices_written == 0 and again.slices_unchanged == 1 and snapshot(store_path) == before


def test_threshold_and_cli(small_store, tmp_path, capsys):
    store_path = small_store
    rows = [row(str(i), f"v{i}", [square(20, 20, 60, 60, tool=0)] if i < 2 else []) for i in range(4)]
    export = write_export(rows, tmp_path / "e.csv")
    assert main(["harvest", "--export", str(export), "--store", str(store_path), "--threshold", "0.75"]) == 0
    assert json.loads(capsys.readouterr().out)["slices_written"] == 1
    assert CubeStore(store_path)["c"]["corrections"][1].sum() == 0  # 2 of 4 < 0.75
    assert main(["harvest", "--export", str(export), "--store", str(store_path), "--threshold", "0.5"]) == 0
    assert CubeStore(store_path)["c"]["corrections"][1].sum() == 400
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="not a classification export"):
        harvest(tmp_path / "bad.csv", store_path)


def _marks(annotation: dict) -> list[dict]:
    value = annotation.get("value")
    if not isinstance(value, list):
        return []
    return [m for v in value for m in (_marks(v) if "task" in v else [v])]


def test_simulated_volunteers_through_sandbox_then_export_download(
    sandbox, subjects, store_path, tmp_path, capsys
):
    upload_subjects(subjects, sandbox.project_id, "round-1", workflow=sandbox.workflow_id, backoff=0)
    volunteers = {k: v for k, v in sandbox.state.credentials().items() if k.startswith("volunteer")}
    set_id = next(s["id"] for s in sandbox.state.objects("subject_sets"))
    posted = classify_subject_set(sandbox.endpoint, volunteers, str(store_path), set_id, sandbox.workflow_id)
    assert posted == 3 * 32
    code = main(["harvest", "--project", sandbox.project_id, "--export", str(tmp_path / "dl.csv"),
                 "--store", str(store_path), "--workflow", sandbox.workflow_id])  # fmt: skip
    report = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert code == 0 and report["marks_lost"] == {} and report["tools_inferred_from_marks"] == 0
    with open(tmp_path / "dl.csv", newline="") as f:
        drawn = Counter(
            mark.get("toolType", "polygon (old front end, in the combo task)")
            for r in csv.DictReader(f)
            for annotation in json.loads(r["annotations"])
            for mark in _marks(annotation)
        )
    assert {"polygon (old front end, in the combo task)", "freehandLine"} <= set(drawn)
    assert len(set(drawn) & {"ellipse", "circle", "rectangle", "rotateRectangle"}) >= 2, drawn
    store = CubeStore(store_path)
    dices = []
    for name in store.names():
        cube = store[name]
        for z in map(int, cube["corrections"].attrs["slices"]):
            truth, got = cube.label[z] > 0, cube["corrections"][z] > 0
            dices.append(2 * (truth & got).sum() / (truth.sum() + got.sum()))
    assert len(dices) == 32 and np.mean(dices) > 0.85


def test_an_export_saved_with_a_byte_order_mark_is_read(small_store, tmp_path):
    """A spreadsheet that saves the export as "UTF-8 with BOM" puts U+FEFF before the first column's
    name: the export is still a classification export, and the same corrections come out of it."""
    rows = [row(str(i), f"v{i}", [square(20, 20, 60, 60, tool=0)]) for i in range(3)]
    export = write_export(rows, tmp_path / "e.csv")
    marked = tmp_path / "bom.csv"
    marked.write_bytes(b"\xef\xbb\xbf" + export.read_bytes())
    report = harvest(marked, small_store, min_volunteers=3)
    assert report.classifications_used == 3 and report.slices_written == 1 and not report.skipped
    assert CubeStore(small_store)["c"]["corrections"][1].sum() == 400


def test_a_volunteers_latest_classification_counts_whatever_the_row_order(small_store, tmp_path):
    late, early = "2026-11-24 09:00:00 UTC", "2026-11-23 09:00:00 UTC"
    rows = [
        row("1", "ann", [square(20, 20, 60, 60, tool=0)], created_at=late),  # ann's second thoughts first
        row("2", "ann", [], created_at=early),
        row("3", "bob", [square(20, 20, 60, 60, tool=0)]),
        row("4", "cyd", []),
    ]
    report = harvest(write_export(rows, tmp_path / "e.csv"), small_store, min_volunteers=3)
    assert report.classifications_used == 3
    assert report.skipped == {"superseded by the volunteer's later classification": 1}
    cube = CubeStore(small_store)["c"]
    assert cube["corrections"][1].sum() == 400  # ann's later square and bob's: 2 of 3
    assert cube["corrections"].attrs["slices"]["1"]["classification_ids"] == ["1", "3", "4"]


def test_every_subject_of_one_slice_is_pooled(small_store, tmp_path):
    """The same slice sent twice (two rounds): two volunteers saw subject 101, one saw subject 202."""
    rows = [
        row("1", "ann", [square(20, 20, 60, 60, tool=0)], sid="101"),
        row("2", "bob", [square(20, 20, 60, 60, tool=0)], sid="101"),
        row("3", "cyd", [], sid="202", frame=(40, 40)),  # rendered at another size: marks scale by frame
    ]
    report = harvest(write_export(rows, tmp_path / "e.csv"), small_store, min_volunteers=3)
    assert report.slices_written == 1 and report.subjects_waiting == 0
    provenance = CubeStore(small_store)["c"]["corrections"].attrs["slices"]["1"]
    assert provenance["subjects"] == ["101", "202"] and provenance["volunteers"] == 3


def test_only_the_latest_major_workflow_version_counts_unless_one_is_named(small_store, tmp_path):
    rows = [
        *(row(str(i), f"new{i}", [square(20, 20, 60, 60, tool=0)], workflow_version="4.2") for i in range(3)),
        *(row(str(9 + i), f"old{i}", [], workflow_version="3.1") for i in range(3)),
    ]  # fmt: skip
    export = write_export(rows, tmp_path / "e.csv")
    report = harvest(export, small_store, min_volunteers=3)
    assert report.skipped == {"other workflow version": 3} and report.classifications_used == 3
    assert CubeStore(small_store)["c"]["corrections"][1].sum() == 400
    older = harvest(export, small_store, min_volunteers=3, workflow_version="3")
    assert older.skipped == {"other workflow version": 3} and older.slices_written == 1
    assert CubeStore(small_store)["c"]["corrections"][1].sum() == 0  # the old version's empty drawings
