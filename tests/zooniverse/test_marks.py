"""Every drawing tool of both front ends, read by panoptes_aggregation's extractors, becomes its true
area; what cannot become an area is counted and its volunteer left out, never counted as "drew nothing".

Expected masks are computed here from each shape's definition (pixel centres inside the shape), not
through the code under test. The slice is 40 x 40 px shown on an 80 x 80 px frame.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from tcupgan.cli.main import main
from tcupgan.data import CubeStore
from tcupgan.zooniverse.harvest import harvest, read_workflow_export
from tcupgan.zooniverse.testing.exports import write_export
from tests.zooniverse.test_harvest import row

SCALE = 2.0  # frame px per slice px
SHAPES = ("polygon", "freehandLine", "rectangle", "rotateRectangle", "circle", "ellipse")
TASKS = {
    "T0": {"type": "combo", "tasks": ["T1", "T2"]},
    "T1": {"type": "drawing", "tools": [{"type": t, "label": "fg", "details": []} for t in SHAPES]
           + [{"type": "point", "label": "nucleus", "details": []}]},
    "T2": {"type": "single", "question": "ok?", "answers": [{"label": "yes"}, {"label": "no"}]},
}  # fmt: skip
TOOL = {t: i for i, t in enumerate(SHAPES)} | {"point": len(SHAPES)}


def centres() -> tuple[np.ndarray, np.ndarray]:
    """Frame coordinates (x, y) of every slice pixel's centre."""
    rows, cols = np.mgrid[0:40, 0:40]
    return (cols + 0.5) * SCALE, (rows + 0.5) * SCALE


def level_circle(x, y, r):
    px, py = centres()
    return np.hypot(px - x, py - y) / r


def level_ellipse(x, y, rx, ry, angle):
    """The Zooniverse's ellipse angle turns its rx axis counter-clockwise on screen (y down)."""
    a = math.radians(angle)
    px, py = centres()
    u = (px - x) * math.cos(a) - (py - y) * math.sin(a)  # along (cos a, -sin a)
    v = (px - x) * math.sin(a) + (py - y) * math.cos(a)  # along (sin a, cos a)
    return np.hypot(u / rx, v / ry)


def level_rotated_rectangle(x, y, width, height, angle):
    """The rotated rectangle's (x, y) is its corner before turning ``angle`` clockwise on screen about
    its centre."""
    a = math.radians(angle)
    cx, cy = x + width / 2, y + height / 2
    px, py = centres()
    u = (px - cx) * math.cos(a) + (py - cy) * math.sin(a)
    v = -(px - cx) * math.sin(a) + (py - cy) * math.cos(a)
    return np.maximum(np.abs(u) / (width / 2), np.abs(v) / (height / 2))


def run(tmp_path, store, rows, name="e.csv", **kwargs):
    export = write_export(rows, tmp_path / name)
    report = harvest(export, store, min_volunteers=kwargs.pop("min_volunteers", 1), **kwargs)
    return report, CubeStore(store)["c"]["corrections"][1] if report.slices_written else None


def classify(marks, style="new", **extra):
    """A row whose annotations are one classification of the combo task (old front end: nested)."""
    drawing = {"task": "T1", "value": marks}
    annotations = (
        [{"task": "T0", "value": [drawing, {"task": "T2", "value": 0}]}]
        if style == "old"
        else [{**drawing, "taskType": "drawing"}, {"task": "T2", "taskType": "single", "value": 0}]
    )
    version = "1.0" if style == "old" else "2.0"
    return {**row("1", "ann", []), "annotations": json.dumps(annotations),
            "metadata": json.dumps({"classifier_version": version}), **extra}  # fmt: skip


@pytest.mark.parametrize(
    "mark, level",
    [
        ({"tool": TOOL["circle"], "frame": 0, "x": 37.3, "y": 41.1, "r": 17.7},
         lambda: level_circle(37.3, 41.1, 17.7)),
        ({"toolIndex": TOOL["circle"], "toolType": "circle", "frame": 0, "x_center": 37.3, "y_center": 41.1,
          "r": 17.7}, lambda: level_circle(37.3, 41.1, 17.7)),
        ({"tool": TOOL["ellipse"], "frame": 0, "x": 40.2, "y": 38.9, "rx": 25.3, "ry": 9.6, "angle": 30},
         lambda: level_ellipse(40.2, 38.9, 25.3, 9.6, 30)),
        ({"toolIndex": TOOL["ellipse"], "toolType": "ellipse", "frame": 0, "x_center": 40.2, "y_center": 38.9,
          "rx": 25.3, "ry": 9.6, "angle": -55}, lambda: level_ellipse(40.2, 38.9, 25.3, 9.6, -55)),
        ({"tool": TOOL["rotateRectangle"], "frame": 0, "x": 20.3, "y": 30.2, "width": 40.6, "height": 14.2,
          "angle": 35}, lambda: level_rotated_rectangle(20.3, 30.2, 40.6, 14.2, 35)),
        ({"tool": TOOL["rectangle"], "frame": 0, "x": 10.3, "y": 22.7, "width": 31.1, "height": 20.9},
         lambda: level_rotated_rectangle(10.3, 22.7, 31.1, 20.9, 0)),
        ({"toolIndex": TOOL["rectangle"], "toolType": "rectangle", "frame": 0, "x_center": 25.85,
          "y_center": 33.15, "width": 31.1, "height": 20.9},
         lambda: level_rotated_rectangle(10.3, 22.7, 31.1, 20.9, 0)),
    ],
    ids=["circle-old", "circle-new", "ellipse-old", "ellipse-new", "rotateRectangle", "rectangle-old",
         "rectangle-new"],
)  # fmt: skip
def test_each_shape_becomes_its_true_area(small_store, tmp_path, mark, level):
    style = "new" if "toolIndex" in mark else "old"
    report, got = run(tmp_path, small_store, [classify([mark], style)], workflow_tasks={"9": {3: TASKS}})
    expected = level() <= 1
    near_edge = np.abs(level() - 1) < 0.01  # within ~0.2 frame px of the outline: polygon resolution
    assert report.marks_lost == {} and expected.sum() > 50
    assert np.array_equal(got[~near_edge] > 0, expected[~near_edge]) and near_edge.sum() < 12


def square_as(kind: str) -> tuple[dict, str]:
    """Frame square x 20..60, y 10..50 (slice pixels x 10..29, y 5..24) drawn with each tool."""
    corners = [(20, 10), (60, 10), (60, 50), (20, 50)]
    points = [{"x": x, "y": y} for x, y in corners]
    new = {"frame": 0, "markId": "m"}
    return {
        "polygon-old": ({"tool": TOOL["polygon"], "frame": 0, "points": points, "details": []}, "old"),
        "polygon-new": ({"toolIndex": TOOL["polygon"], "toolType": "polygon", "points": points, **new},
                        "new"),
        "freehand-new": ({"toolIndex": TOOL["freehandLine"], "toolType": "freehandLine", **new,
                          "pathX": [x for x, _ in corners], "pathY": [y for _, y in corners]}, "new"),
        "rectangle-old": ({"tool": TOOL["rectangle"], "frame": 0, "x": 20, "y": 10, "width": 40,
                           "height": 40}, "old"),
        "rectangle-new": ({"toolIndex": TOOL["rectangle"], "toolType": "rectangle", "x_center": 40,
                           "y_center": 30, "width": 40, "height": 40, **new}, "new"),
        "rotated-90": ({"tool": TOOL["rotateRectangle"], "frame": 0, "x": 20, "y": 10, "width": 40,
                        "height": 40, "angle": 90}, "old"),
    }[kind]  # fmt: skip


def test_the_same_drawing_in_any_shape_gives_identical_corrections(small_store, tmp_path):
    kinds = ["polygon-old", "polygon-new", "freehand-new", "rectangle-old", "rectangle-new", "rotated-90"]
    results = []
    for kind in kinds:
        mark, style = square_as(kind)
        for inferred in (False, True):  # with the workflow's tasks, and with tools read from the marks
            tasks = None if inferred else {"9": {3: TASKS}}
            report, got = run(tmp_path, small_store, [classify([mark], style, classification_id=kind)],
                              name=f"{kind}{inferred}.csv", workflow_tasks=tasks)  # fmt: skip
            if report.slices_written:
                results.append(got.copy())
            assert report.marks_lost == {}, (kind, report.marks_lost)
            assert report.tools_inferred_from_marks == int(inferred)
    corrections = CubeStore(small_store)["c"]["corrections"][1]
    expected = np.zeros((40, 40), bool)
    expected[5:25, 10:30] = True
    assert np.array_equal(corrections > 0, expected) and all(np.array_equal(r, results[0]) for r in results)


def test_unreadable_marks_are_counted_and_their_volunteer_left_out(small_store, tmp_path):
    good, _ = square_as("polygon-new")
    rows = [
        classify([good], user_name="ann", classification_id="1"),
        classify([good], user_name="bob", classification_id="2"),
        # a point and a two-vertex polygon: neither is an area; cyd did not say "nothing here"
        classify([{"toolIndex": TOOL["point"], "toolType": "point", "x": 3, "y": 3, "frame": 0},
                  {"toolIndex": 0, "toolType": "polygon", "frame": 0,
                   "points": [{"x": 1, "y": 1}, {"x": 9, "y": 9}]}],
                 user_name="cyd", classification_id="3"),
        classify([{"toolIndex": 11, "toolType": "polygon", "frame": 0, "points": good["points"]}],
                 user_name="dan", classification_id="4"),  # a tool the workflow does not have
    ]  # fmt: skip
    report, got = run(tmp_path, small_store, rows, min_volunteers=3, workflow_tasks={"9": {3: TASKS}})
    assert report.marks_lost == {
        "point mark (no area)": 1,
        "polygon mark without a readable area": 1,
        "mark of a tool the workflow does not define": 1,
    }
    assert report.skipped == {"volunteer's marks could not all be read": 2}
    assert report.slices_written == 0 and report.subjects_waiting == 1  # 2 readable volunteers < 3
    report, got = run(tmp_path, small_store, rows, min_volunteers=2, workflow_tasks={"9": {3: TASKS}})
    assert report.slices_written == 1 and got.sum() == 400  # ann and bob: both drew the square
    provenance = CubeStore(small_store)["c"]["corrections"].attrs["slices"]["1"]
    assert provenance["classification_ids"] == ["1", "2"] and provenance["volunteers"] == 2


def test_workflow_export_labels_name_the_classes(small_store, tmp_path, capsys):
    """Tools map to classes by label, read from the project's workflow export (translated strings)."""
    tools = [{"type": "circle", "details": []}, {"type": "polygon", "details": []}]
    workflows = tmp_path / "workflows.csv"
    strings = {"tasks.T1.tools.0.label": "other", "tasks.T1.tools.1.label": "FG"}
    tasks = {"T1": {"type": "drawing", "tools": tools}}
    with open(workflows, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["workflow_id", "display_name", "version", "minor_version", "tasks", "strings"])
        writer.writerow(["9", "w", "3", "1", json.dumps(tasks), json.dumps(strings)])
    assert read_workflow_export(workflows)["9"][3]["T1"]["tools"][1]["label"] == "FG"
    square, _ = square_as("polygon-new")
    marks = [{**square, "toolIndex": 1}, {"toolIndex": 0, "toolType": "circle", "frame": 0, "x_center": 10,
                                          "y_center": 70, "r": 6}]  # fmt: skip
    export = write_export([classify(marks)], tmp_path / "e.csv")
    code = main(["harvest", "--export", str(export), "--store", str(small_store), "--min-volunteers", "1",
                 "--workflow-export", str(workflows)])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    # tool 1 is labelled with the class name "fg": it marks class 1; the circle ("other") would be
    # class 2, which this binary store lacks: counted, and the volunteer left out
    assert code == 0 and report["marks_lost"] == {"mark of a tool mapped to no class": 1}
    code = main(["harvest", "--export", str(export), "--store", str(small_store), "--min-volunteers", "1",
                 "--workflow-export", str(workflows), "--tool-values", "T1.1=1,T1.0=1"])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["marks_lost"] == {} and report["slices_written"] == 1
    disc = (level_circle(10, 70, 6) <= 1).sum()
    assert CubeStore(small_store)["c"]["corrections"][1].sum() == 400 + disc  # the square and a small disc
