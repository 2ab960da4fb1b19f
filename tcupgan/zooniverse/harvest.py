"""``tcupgan harvest``: volunteers' drawings from a classification export back into the store.

Each classification's drawing marks (polygons, rectangles and freehand lines, from the old and the new
front end) are rasterised onto the slice grid (scikit-image), volunteers are combined per pixel by vote
fraction, and pixels at or above the consensus threshold become the corrected label. Per cube the store
gets ``corrections`` (D, H, W) uint8 labels, ``correction_votes`` (K, D, H, W) uint8 vote percentages,
and provenance per slice (subject, classification ids, volunteers, workflow version) in the attributes
of ``corrections``; a slice counts as corrected when it is listed there.

A malformed row is counted and skipped, never fatal; harvesting the same export again changes nothing.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from skimage.draw import polygon2mask

from tcupgan.data.locks import store_lock
from tcupgan.data.store import CubeStore
from tcupgan.errors import InputError, TcupganError, require_extra

__all__ = [
    "harvest",
    "HarvestReport",
    "parse_marks",
    "rasterise",
    "consensus",
    "download_export",
    "write_corrections",
]

log = logging.getLogger(__name__)


@dataclass
class Mark:
    """One drawn outline in frame pixels: vertices as (x, y), which tool, which frame."""

    tool: int
    frame: int
    points: np.ndarray


@dataclass
class HarvestReport:
    rows: int = 0
    classifications_used: int = 0
    skipped: Counter = field(default_factory=Counter)
    subjects_waiting: int = 0
    slices_written: int = 0
    slices_unchanged: int = 0
    cubes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "skipped": dict(self.skipped)}


# ------------------------------------------------------------------------------------ marks
def _mark(raw: dict) -> Mark | None:
    """One mark of either front end, or None for marks without an area (points, lines of <3 vertices)."""
    tool = int(raw.get("toolIndex", raw.get("tool", 0)) or 0)
    frame = int(raw.get("frame", 0) or 0)
    if "pathX" in raw:  # new front end freehand line: closed into an outline
        points = np.column_stack([np.asarray(raw["pathX"], float), np.asarray(raw["pathY"], float)])
    elif "points" in raw:
        points = np.array([[float(p["x"]), float(p["y"])] for p in raw["points"]])
    elif "width" in raw and "height" in raw:
        w, h = float(raw["width"]), float(raw["height"])
        x0 = float(raw["x_center"]) - w / 2 if "x_center" in raw else float(raw["x"])
        y0 = float(raw["y_center"]) - h / 2 if "y_center" in raw else float(raw["y"])
        points = np.array([[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]])
    else:
        return None
    if len(points) < 3 or not np.isfinite(points).all():
        return None
    return Mark(tool, frame, points)


def parse_marks(annotations: list[dict]) -> list[Mark]:
    """Every area mark of every drawing task of one classification's ``annotations``."""
    marks = []
    for task in annotations:
        value = task.get("value")
        if not isinstance(value, list):
            continue  # a question or text task
        for raw in value:
            if isinstance(raw, dict) and (mark := _mark(raw)) is not None:
                marks.append(mark)
    return marks


def rasterise(marks: list[Mark], frame_size: tuple[int, int], slice_shape: tuple[int, int],
              tool_values: dict[int, int]) -> dict[int, np.ndarray]:  # fmt: skip
    """Boolean (H, W) mask per label value from marks drawn on a frame of (width, height) pixels.

    Frame pixel edges map to slice pixel edges (a frame may be enlarged or shrunk by render); a slice
    pixel is inside when its centre is.
    """
    height, width = slice_shape
    scale = np.array([width / frame_size[0], height / frame_size[1]])
    masks: dict[int, np.ndarray] = {}
    for mark in marks:
        value = tool_values.get(mark.tool)
        if value is None:
            continue
        xy = mark.points * scale - 0.5
        area = polygon2mask((height, width), xy[:, ::-1])
        masks[value] = masks.get(value, np.zeros(slice_shape, bool)) | area
    return masks


def consensus(volunteer_masks: list[dict[int, np.ndarray]], values: list[int], task: str,
              shape: tuple[int, int], threshold: float) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Per-pixel vote fraction of each label value, and the label the votes settle on.

    Every volunteer counts, including those who drew nothing (they say "nothing here"). Binary and
    BraTS: the value with the most votes wins where its fraction reaches ``threshold``. Multilabel: each
    bit independently.
    """
    n = len(volunteer_masks)
    votes = np.zeros((len(values), *shape), np.float32)
    for masks in volunteer_masks:
        for k, value in enumerate(values):
            if value in masks:
                votes[k] += masks[value]
    votes /= max(n, 1)
    label = np.zeros(shape, np.uint8)
    if task == "multilabel":
        for k, value in enumerate(values):
            label[votes[k] >= threshold] |= np.uint8(value)
    else:
        best = votes.argmax(0)
        ok = votes.max(0) >= threshold
        label[ok] = np.asarray(values, np.uint8)[best[ok]]
    return label, votes


def default_tool_values(store: CubeStore) -> dict[int, int]:
    """Drawing tool i marks the store's i-th foreground class: label i+1, or bit i for multilabel stores."""
    multilabel = store.task == "multilabel"
    return {i: (1 << i) if multilabel else i + 1 for i in range(len(store.class_names))}


# ----------------------------------------------------------------------------------- export
def download_export(project: str, out: str | os.PathLike, *, endpoint: str | None = None,
                    timeout: float = 600, generate: bool = True) -> Path:  # fmt: skip
    """Generate (or reuse) a project's classification export through panoptes-client and save it."""
    import requests

    require_extra("panoptes_client", "zooniverse", "downloading a classification export")
    from panoptes_client import Project
    from panoptes_client.panoptes import PanoptesAPIException

    from tcupgan.zooniverse.upload import connect

    connect(endpoint)
    try:
        project_obj = Project.find(slug=project) if "/" in project else Project.find(project)
        if generate:
            project_obj.generate_export("classifications")
        described = project_obj.wait_export("classifications", timeout=timeout)
        src = described["media"][0]["src"]
        response = requests.get(src, timeout=timeout)
        response.raise_for_status()
    except (PanoptesAPIException, requests.RequestException) as e:
        raise TcupganError(f"could not download the classification export of project {project}: {e}") from e
    out = Path(out)
    tmp = out.with_suffix(".part")
    tmp.write_bytes(response.content)
    os.replace(tmp, out)
    return out


def _read_rows(
    path: Path, report: HarvestReport, workflow: str | None, workflow_version: str | None = None
) -> list[dict[str, Any]]:
    """Export rows with their JSON decoded; malformed rows are counted by reason and left out."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # a spreadsheet's save adds a BOM
            reader = csv.DictReader(f)
            needed = {"classification_id", "annotations", "subject_data", "subject_ids"}
            if not needed <= set(reader.fieldnames or []):
                raise InputError(f"'{path}' is not a classification export (missing {needed})")
            raw_rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"cannot read the export '{path}': {e}") from e
    rows = []
    for raw in raw_rows:
        report.rows += 1
        if workflow is not None and raw.get("workflow_id") != str(workflow):
            report.skipped["other workflow"] += 1
            continue
        try:
            row = dict(raw)
            row["annotations"] = json.loads(raw["annotations"])
            row["subject_data"] = json.loads(raw["subject_data"])
            row["metadata"] = json.loads(raw.get("metadata") or "{}")
            if not isinstance(row["annotations"], list) or not isinstance(row["subject_data"], dict):
                raise ValueError
        except (ValueError, TypeError):
            report.skipped["malformed JSON"] += 1
            continue
        rows.append(row)
    return _current_version(rows, report, workflow_version)


def _major(version: Any) -> int | None:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return None


def _current_version(rows: list[dict], report: HarvestReport, wanted: str | None) -> list[dict]:
    """Rows of one major workflow version per workflow: ``wanted`` (``N`` or ``N.M``), else the latest
    present. A new major version means the tasks changed, so marks of older ones are counted, not used."""
    latest: dict[str, int] = {}
    for row in rows:
        major = _major(row.get("workflow_version", ""))
        if major is not None:
            latest[row.get("workflow_id", "")] = max(major, latest.get(row.get("workflow_id", ""), major))
    kept = []
    for row in rows:
        version = str(row.get("workflow_version", ""))
        if wanted is not None:
            keep = version == wanted or (("." not in wanted) and _major(version) == _major(wanted))
        else:
            keep = _major(version) in (None, latest.get(row.get("workflow_id", "")))
        if keep:
            kept.append(row)
        else:
            report.skipped["other workflow version"] += 1
    return kept


def _subject(row: dict[str, Any]) -> tuple[str, dict] | None:
    sid = str(row.get("subject_ids", "")).split(";")[0]
    meta = row["subject_data"].get(sid)
    return (sid, meta) if isinstance(meta, dict) else None


# ---------------------------------------------------------------------------------- harvest
def harvest(
    export: str | os.PathLike,
    store_path: str | os.PathLike,
    *,
    min_volunteers: int = 3,
    threshold: float = 0.5,
    workflow: str | None = None,
    workflow_version: str | None = None,
    tool_values: dict[int, int] | None = None,
) -> HarvestReport:
    """Write the volunteers' consensus of every slice with ``min_volunteers`` or more into the store.

    All subjects showing one slice (two rounds, two subject sets) are pooled; each volunteer counts once
    per slice, with their latest classification (``created_at``); only the latest major workflow version
    present is read unless ``workflow_version`` names one (``3`` or ``3.1``).
    """
    if not 0 < threshold <= 1:
        raise InputError("the consensus threshold must be in (0, 1]")
    store = CubeStore(store_path, mode="r+")
    report = HarvestReport()
    tools = tool_values or default_tool_values(store)
    values = sorted(set(tools.values()))
    rows = _read_rows(Path(export), report, workflow, workflow_version)
    per_cube: dict[str, dict[int, dict]] = {}
    for (cube, z), entry in sorted(_classifications_by_slice(rows, store, report).items()):
        if len(entry["volunteers"]) < min_volunteers:
            report.subjects_waiting += 1
            continue
        shape = store[cube].shape[2:]
        chosen = list(entry["volunteers"].values())
        masks = [rasterise(marks, frame, shape, tools) for _, marks, frame in chosen]
        label, votes = consensus(masks, values, store.task, shape, threshold)
        report.classifications_used += len(chosen)
        provenance = {
            "subjects": sorted(entry["subjects"]),
            "classification_ids": sorted(str(row["classification_id"]) for row, _, _ in chosen),
            "volunteers": len(chosen),
            "threshold": threshold,
            "workflow_version": sorted({str(row.get("workflow_version", "")) for row, _, _ in chosen}),
        }
        per_cube.setdefault(cube, {})[z] = {"label": label, "votes": votes, "provenance": provenance}
    for cube, slices in sorted(per_cube.items()):
        written = write_corrections(store, cube, slices, values)
        report.slices_written += written
        report.slices_unchanged += len(slices) - written
        if written:
            report.cubes.append(cube)
    return report


def _classifications_by_slice(rows: list[dict], store: CubeStore, report: HarvestReport) -> dict:
    """Per slice of this store, (cube, z) → the subjects showing it and each volunteer's latest
    classification as (row, marks, frame size); rows that cannot be used are counted in
    ``report.skipped`` by reason."""
    by_slice: dict[tuple[str, int], dict[str, Any]] = {}
    for row in rows:
        found = _subject(row)
        if found is None:
            report.skipped["no subject data"] += 1
            continue
        sid, meta = found
        try:
            cube, z = str(meta["#cube"]), int(meta["#slice"])
            frame = (int(meta["#frame_width"]), int(meta["#frame_height"]))
        except (KeyError, ValueError, TypeError):
            report.skipped["not a tcupgan subject"] += 1
            continue
        if cube not in store or not 0 <= z < store[cube].shape[1] or min(frame) <= 0:
            report.skipped["cube or slice not in this store"] += 1
            continue
        if meta.get("#store") not in (None, "", store.path.name):
            report.skipped["subject of another store"] += 1
            continue
        try:
            marks = parse_marks(row["annotations"])
        except (ValueError, TypeError, KeyError, AttributeError):
            report.skipped["malformed marks"] += 1
            continue
        volunteer = row.get("user_name") or f"anonymous-{row.get('user_ip', '')}"
        entry = by_slice.setdefault((cube, z), {"subjects": set(), "volunteers": {}})
        entry["subjects"].add(sid)
        earlier = entry["volunteers"].get(volunteer)
        if earlier is not None:
            report.skipped["superseded by the volunteer's later classification"] += 1
            if str(earlier[0].get("created_at", "")) > str(row.get("created_at", "")):
                continue
        entry["volunteers"][volunteer] = (row, marks, frame)
    return by_slice


def write_corrections(store: CubeStore, cube: str, slices: dict[int, dict], values: list[int]) -> int:
    """Merge corrected slices ({z: {"label", "votes", "provenance"}}) into a cube's corrections; rewrite
    atomically only if something changed. Returns how many slices changed. Holds the cube's lock, so two
    harvests into one store keep each other's slices."""
    with store_lock(store.path, cube):
        return _merge_corrections(store, cube, slices, values)


def _merge_corrections(store: CubeStore, cube: str, slices: dict[int, dict], values: list[int]) -> int:
    c = store[cube]
    depth, height, width = c.shape[1:]
    if "corrections" in c:
        label = c["corrections"][...]
        votes = c["correction_votes"][...]
        provenance = dict(c["corrections"].attrs.get("slices", {}))
    else:
        label = np.zeros((depth, height, width), np.uint8)
        votes = np.zeros((len(values), depth, height, width), np.uint8)
        provenance = {}
    changed = 0
    for z, item in sorted(slices.items()):
        percent = np.round(item["votes"] * 100).astype(np.uint8)
        same = (
            provenance.get(str(z)) == item["provenance"]
            and np.array_equal(label[z], item["label"])
            and np.array_equal(votes[:, z], percent)
        )
        if not same:
            label[z], votes[:, z] = item["label"], percent
            provenance[str(z)] = item["provenance"]
            changed += 1
    if changed:
        attrs = {"slices": provenance, "values": values}
        store.write_array(cube, "correction_votes", votes, overwrite=True, attrs={"values": values})
        store.write_array(cube, "corrections", label, overwrite=True, attrs=attrs)
    return changed
