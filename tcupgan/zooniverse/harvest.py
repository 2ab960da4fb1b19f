"""``tcupgan harvest``: volunteers' drawings from a classification export back into the store.

Each classification's marks are read by the Zooniverse's own extractors (``panoptes_aggregation``,
configured from the workflow's task definitions: every drawing tool of both front ends, combo tasks),
rasterised with their true geometry onto the slice grid (scikit-image), and volunteers are combined per
pixel by vote fraction; pixels at or above the consensus threshold become the corrected label. Per cube
the store gets ``corrections`` (D, H, W) uint8 labels, ``correction_votes`` (K, D, H, W) uint8 vote
percentages, and provenance per slice (subjects, classification ids, volunteers, workflow version) in the
attributes of ``corrections``; a slice counts as corrected when it is listed there.

Nothing is dropped silently: a malformed row is counted and skipped, every mark that cannot become an area
is counted by reason, and a volunteer whose marks could not all be read is left out of the slice's vote
(never counted as "drew nothing"). Harvesting the same export again changes nothing. The export is
streamed, so memory follows the number of slices, not of rows.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from skimage.draw import polygon2mask

from tcupgan.data.locks import store_lock
from tcupgan.data.store import CubeStore
from tcupgan.errors import InputError, TcupganError, require_extra
from tcupgan.zooniverse.marks import MarkReader, Outline, tool_classes

__all__ = [
    "harvest",
    "HarvestReport",
    "rasterise",
    "consensus",
    "class_values",
    "download_export",
    "read_workflow_export",
    "fetch_workflow_tasks",
    "write_corrections",
]

log = logging.getLogger(__name__)
Tasks = dict[str, dict[int, dict]]  # workflow id → major version → the workflow's task definitions


@dataclass
class HarvestReport:
    rows: int = 0
    classifications_used: int = 0
    skipped: Counter = field(default_factory=Counter)
    marks_lost: Counter = field(default_factory=Counter)
    tools_inferred_from_marks: int = 0
    subjects_waiting: int = 0
    slices_written: int = 0
    slices_unchanged: int = 0
    cubes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "skipped": dict(self.skipped), "marks_lost": dict(self.marks_lost)}


@dataclass
class Vote:
    """One volunteer's latest classification of one slice; ``masks`` None when its marks were unreadable."""

    created_at: str
    classification_id: str
    workflow_version: str
    masks: dict[int, np.ndarray] | None  # label value → packed bits of the slice


# ------------------------------------------------------------------------------------ marks
def class_values(store: CubeStore) -> dict[str, int]:
    """Class name → label value: class i is value i+1, or bit i for multilabel stores."""
    multilabel = store.task == "multilabel"
    return {name: (1 << i) if multilabel else i + 1 for i, name in enumerate(store.class_names)}


def rasterise(outlines: list[Outline], frame_size: tuple[int, int], slice_shape: tuple[int, int],
              classes: dict[tuple[str, int], int]) -> dict[int, np.ndarray]:  # fmt: skip
    """Boolean (H, W) mask per label value from outlines drawn on a frame of (width, height) pixels.

    Frame pixel edges map to slice pixel edges (a frame may be enlarged or shrunk by render); a slice
    pixel is inside when its centre is.
    """
    height, width = slice_shape
    scale = np.array([width / frame_size[0], height / frame_size[1]])
    masks: dict[int, np.ndarray] = {}
    for outline in outlines:
        value = classes[(outline.task, outline.tool)]
        xy = outline.xy * scale - 0.5
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


def read_workflow_export(path: str | os.PathLike) -> Tasks:
    """Task definitions per workflow and major version from the project's workflow export (CSV:
    ``workflow_id``, ``version``, ``tasks`` and, where tool labels are translated, ``strings``)."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    tasks: Tasks = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not {"workflow_id", "version", "tasks"} <= set(reader.fieldnames or []):
                raise InputError(f"'{path}' is not a workflow export (needs workflow_id, version, tasks)")
            for row in reader:
                labelled = _with_labels(json.loads(row["tasks"]), json.loads(row.get("strings") or "{}"))
                tasks.setdefault(row["workflow_id"], {})[int(float(row["version"]))] = labelled
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as e:
        raise InputError(f"cannot read the workflow export '{path}': {e}") from e
    return tasks


def _with_labels(tasks: dict, strings: dict) -> dict:
    """Tool labels filled in from the workflow's translation strings (``tasks.T0.tools.1.label``)."""
    for key, task in tasks.items():
        for i, tool in enumerate(task.get("tools", []) if isinstance(task, dict) else []):
            tool.setdefault("label", strings.get(f"tasks.{key}.tools.{i}.label"))
    return tasks


def fetch_workflow_tasks(project: str, *, endpoint: str | None = None) -> Tasks:
    """The current task definitions of every workflow of a project, through panoptes-client."""
    require_extra("panoptes_client", "zooniverse", "reading a project's workflows")
    from panoptes_client import Workflow

    from tcupgan.zooniverse.upload import connect

    connect(endpoint)
    tasks: Tasks = {}
    for workflow in Workflow.where(project_id=project):
        major = _major(workflow.raw.get("version", "1"))
        tasks.setdefault(str(workflow.id), {})[major] = _with_labels(
            workflow.tasks, workflow.raw.get("strings") or {}
        )
    return tasks


def _export_rows(path: Path, report: HarvestReport, workflow: str | None,
                 wanted: str | None) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Rows of one workflow version with their JSON decoded, streamed; the others counted by reason.

    Only the latest major version of each workflow is read unless ``wanted`` names one (``3`` or
    ``3.1``): a new major version means the tasks changed."""
    latest = _latest_versions(path)
    for raw in _csv_rows(path):
        report.rows += 1
        version = str(raw.get("workflow_version", ""))
        if workflow is not None and raw.get("workflow_id") != str(workflow):
            report.skipped["other workflow"] += 1
        elif not _version_wanted(version, wanted, latest.get(raw.get("workflow_id", ""))):
            report.skipped["other workflow version"] += 1
        elif (row := _decoded(raw)) is None:
            report.skipped["malformed JSON"] += 1
        else:
            yield row


def _latest_versions(path: Path) -> dict[str, int]:
    """The latest major version of each workflow in the export (a first, light pass over it)."""
    latest: dict[str, int] = {}
    for header, fields in _csv_fields(path):
        if "workflow_version" not in header or "workflow_id" not in header:
            break
        wid, major = fields[header.index("workflow_id")], _major(fields[header.index("workflow_version")])
        if major is not None:
            latest[wid] = max(major, latest.get(wid, major))
    return latest


def _csv_rows(path: Path) -> Iterator[dict[str, str]]:
    for header, fields in _csv_fields(path):
        yield dict(zip(header, fields, strict=False))


def _csv_fields(path: Path) -> Iterator[tuple[list[str], list[str]]]:
    """(header, fields) of each row of a classification export: its columns checked first, read errors
    turned into one line."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    needed = {"classification_id", "annotations", "subject_data", "subject_ids"}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # a spreadsheet's save adds a BOM
            reader = csv.reader(f)
            header = next(reader, [])
            if not needed <= set(header):
                raise InputError(f"'{path}' is not a classification export (missing {needed})")
            for fields in reader:
                yield header, fields + [""] * (len(header) - len(fields))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"cannot read the export '{path}': {e}") from e


def _decoded(raw: dict[str, str]) -> dict[str, Any] | None:
    try:
        row = dict(raw)
        row["annotations"] = json.loads(raw["annotations"])
        row["subject_data"] = json.loads(raw["subject_data"])
        row["metadata"] = json.loads(raw.get("metadata") or "{}")
    except (ValueError, TypeError):
        return None
    ok = isinstance(row["annotations"], list) and isinstance(row["subject_data"], dict)
    return row if ok and isinstance(row["metadata"], dict) else None


def _major(version: Any) -> int | None:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return None


def _version_wanted(version: str, wanted: str | None, latest: int | None) -> bool:
    if wanted is not None:
        return version == wanted or ("." not in wanted and _major(version) == _major(wanted))
    return _major(version) in (None, latest)


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
    workflow_tasks: Tasks | None = None,
    tool_values: dict[str, int] | None = None,
) -> HarvestReport:
    """Write the volunteers' consensus of every slice with ``min_volunteers`` or more into the store.

    Marks are read with the extractors ``workflow_tasks`` configures (:func:`read_workflow_export`,
    :func:`fetch_workflow_tasks`); without them, each classification's tools are inferred from its
    marks. Tools map to classes by ``tool_values`` (``{"T1.0": 1}`` or ``{"0": 1}``), else by label
    (:func:`tcupgan.zooniverse.marks.tool_classes`). All subjects showing one slice are pooled; each
    volunteer counts once per slice, with their latest classification (``created_at``); only the latest
    major workflow version present is read unless ``workflow_version`` names one (``3`` or ``3.1``).
    """
    if not 0 < threshold <= 1:
        raise InputError("the consensus threshold must be in (0, 1]")
    store = CubeStore(store_path, mode="r+")
    report = HarvestReport()
    values = sorted(set(class_values(store).values()))
    rows = _export_rows(Path(export), report, workflow, workflow_version)
    by_cube = _votes_by_slice(rows, store, _Reader(store, workflow_tasks, tool_values, report), report)
    for cube in sorted(by_cube):  # one cube at a time: memory holds one cube's consensus, not the store's
        slices = {}
        for z, entry in sorted(by_cube.pop(cube).items()):
            settled = _settle(
                entry, store[cube].shape[2:], values, store.task, threshold, min_volunteers, report
            )
            if settled is not None:
                slices[z] = settled
        written = write_corrections(store, cube, slices, values) if slices else 0
        report.slices_written += written
        report.slices_unchanged += len(slices) - written
        if written:
            report.cubes.append(cube)
    report.skipped = Counter({k: n for k, n in report.skipped.items() if n})
    return report


def _settle(entry: dict, shape: tuple[int, int], values: list[int], task: str, threshold: float,
            min_volunteers: int, report: HarvestReport) -> dict | None:  # fmt: skip
    """One slice's consensus and provenance from its volunteers' readable votes, or None while fewer
    than ``min_volunteers`` volunteers' marks could be read."""
    readable = [v for v in entry["volunteers"].values() if v.masks is not None]
    report.skipped["volunteer's marks could not all be read"] += len(entry["volunteers"]) - len(readable)
    if len(readable) < min_volunteers:
        report.subjects_waiting += 1
        return None
    masks = [{k: _unpack(m, shape) for k, m in v.masks.items()} for v in readable]
    label, fractions = consensus(masks, values, task, shape, threshold)
    report.classifications_used += len(readable)
    provenance = {
        "subjects": sorted(entry["subjects"]),
        "classification_ids": sorted(v.classification_id for v in readable),
        "volunteers": len(readable),
        "threshold": threshold,
        "workflow_version": sorted({v.workflow_version for v in readable}),
    }
    return {"label": label, "votes": fractions, "provenance": provenance}


class _Reader:
    """One classification's marks → packed masks per label value, or None when any mark is unreadable."""

    def __init__(self, store: CubeStore, tasks: Tasks | None, explicit: dict[str, int] | None,
                 report: HarvestReport) -> None:  # fmt: skip
        self.explicit, self.report = explicit, report
        self.tasks = {
            str(w): {int(v): t for v, t in versions.items()} for w, versions in (tasks or {}).items()
        }
        self.values = class_values(store)
        self.readers: dict[int, MarkReader] = {}  # by id() of the workflow's tasks (None: inferred)
        self.classes: dict[int, dict] = {}  # tool → class value, by id() of the tasks read with

    def _tasks(self, row: dict) -> dict | None:
        """The task definitions of the row's workflow version (else its latest known), if any."""
        known = self.tasks.get(str(row.get("workflow_id", "")), {})
        major = _major(row.get("workflow_version", ""))
        return known.get(major) if major in known else (known[max(known)] if known else None)

    def masks(
        self, row: dict, frame: tuple[int, int], shape: tuple[int, int]
    ) -> dict[int, np.ndarray] | None:
        known = self._tasks(row)
        if id(known) not in self.readers:
            self.readers[id(known)] = MarkReader(known)
        outlines, lost, tasks = self.readers[id(known)].read(row["annotations"], row["metadata"])
        if known is None:
            self.report.tools_inferred_from_marks += 1
        if id(tasks) not in self.classes:
            self.classes[id(tasks)] = tool_classes(tasks, self.values, self.explicit)
        classes = self.classes[id(tasks)]
        lost["mark of a tool mapped to no class"] += sum((o.task, o.tool) not in classes for o in outlines)
        lost = Counter({k: n for k, n in lost.items() if n})
        self.report.marks_lost.update(lost)
        if lost:
            return None
        masks = rasterise(outlines, frame, shape, classes)
        return {value: np.packbits(mask) for value, mask in masks.items()}


def _unpack(bits: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return np.unpackbits(bits, count=shape[0] * shape[1]).reshape(shape).astype(bool)


def _votes_by_slice(rows: Iterator[dict], store: CubeStore, reader: _Reader, report: HarvestReport) -> dict:
    """cube → z → the subjects showing the slice and each volunteer's latest :class:`Vote`; rows that
    cannot be used are counted in ``report.skipped`` by reason."""
    by_cube: dict[str, dict[int, dict[str, Any]]] = {}
    shapes: dict[str, tuple[int, ...]] = {}
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
        if cube not in shapes and cube in store:
            shapes[cube] = store[cube].shape
        if cube not in shapes or not 0 <= z < shapes[cube][1] or min(frame) <= 0:
            report.skipped["cube or slice not in this store"] += 1
            continue
        if meta.get("#store") not in (None, "", store.path.name):
            report.skipped["subject of another store"] += 1
            continue
        volunteer = row.get("user_name") or f"anonymous-{row.get('user_ip', '')}"
        entry = by_cube.setdefault(cube, {}).setdefault(z, {"subjects": set(), "volunteers": {}})
        entry["subjects"].add(sid)
        earlier = entry["volunteers"].get(volunteer)
        if earlier is not None:
            report.skipped["superseded by the volunteer's later classification"] += 1
            if earlier.created_at > str(row.get("created_at", "")):
                continue
        masks = reader.masks(row, frame, shapes[cube][2:])
        vote = Vote(str(row.get("created_at", "")), str(row["classification_id"]),
                    str(row.get("workflow_version", "")), masks)  # fmt: skip
        entry["volunteers"][volunteer] = vote
    return by_cube


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
