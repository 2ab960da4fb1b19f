"""Simulated volunteers for the sandbox: they outline the true regions of a slice, imperfectly.

The loop demo and the tests need classifications with known answers. Each simulated volunteer logs in
with its own sandbox account, marks every true region of a subject's slice, jitters the vertices,
sometimes misses a region, and posts the marks as a classification through panoptes-client. Volunteers
draw in different ways, so harvest meets every export shape: old front end polygons inside the combo
task, new front end freehand lines, and new front end shapes (any of ellipse, rotated rectangle,
rectangle or circle that fits the region well, a polygon where none does).
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import numpy as np
from skimage.measure import approximate_polygon, find_contours
from skimage.measure import label as connected

from tcupgan.data.store import CubeStore

__all__ = ["trace_marks", "fit_shapes", "classify_subject_set", "simulate_consensus", "STYLES"]

STYLES = ("old", "freehand", "shapes")  # volunteer i draws in STYLES[i % 3]
SHAPE_FIT = 0.75  # a shape is drawn instead of a polygon when it covers the region this well (IoU)


def _outline(mask: np.ndarray, scale: np.ndarray, noise_px: float, rng: np.random.Generator) -> np.ndarray:
    contour = max(find_contours(np.pad(mask, 1).astype(float), 0.5), key=len) - 1
    contour = approximate_polygon(contour, tolerance=0.4)[:-1]
    return (contour[:, ::-1] + 0.5) * scale + rng.normal(0, noise_px, contour.shape)


def fit_shapes(mask: np.ndarray, scale: np.ndarray) -> dict[str, tuple[dict[str, float], float]]:
    """New front end shape marks (in frame pixels) outlining a region, with how well each covers it (IoU).

    Candidates come from the region's principal axes: an ellipse of the same second moments, the
    rotated rectangle spanning the region along those axes, the bounding rectangle, the circle of equal
    area. Angles follow the Zooniverse's conventions as panoptes_aggregation reads them.
    """
    rows, cols = np.nonzero(mask)
    if len(rows) < 4:
        return {}
    xy = np.column_stack([cols + 0.5, rows + 0.5]) * scale
    centre = xy.mean(0)
    eigval, eigvec = np.linalg.eigh(np.cov((xy - centre).T) + 1e-6 * np.eye(2))
    major, minor = eigvec[:, 1], eigvec[:, 0]
    along, across = (xy - centre) @ major, (xy - centre) @ minor
    half = scale.mean() / 2  # pixels have a size: extents reach half a pixel past the centres
    width, height = np.ptp(along) + 2 * half, np.ptp(across) + 2 * half
    mid = centre + major * (along.max() + along.min()) / 2 + minor * (across.max() + across.min()) / 2
    x0, y0 = xy.min(0) - half
    x1, y1 = xy.max(0) + half
    candidates = {
        "ellipse": {"x_center": centre[0], "y_center": centre[1], "rx": 2 * math.sqrt(eigval[1]),
                    "ry": 2 * math.sqrt(eigval[0]), "angle": math.degrees(math.atan2(-major[1], major[0]))},
        "rotateRectangle": {"x_center": mid[0], "y_center": mid[1], "width": width, "height": height,
                            "angle": math.degrees(math.atan2(major[1], major[0]))},
        "rectangle": {"x_center": (x0 + x1) / 2, "y_center": (y0 + y1) / 2, "width": x1 - x0,
                      "height": y1 - y0},
        "circle": {"x_center": centre[0], "y_center": centre[1],
                   "r": math.sqrt(mask.sum() / math.pi) * scale.mean()},
    }  # fmt: skip
    return {shape: (params, _iou(shape, params, mask, scale)) for shape, params in candidates.items()}


def _iou(shape: str, params: dict[str, float], mask: np.ndarray, scale: np.ndarray) -> float:
    from tcupgan.zooniverse.harvest import rasterise
    from tcupgan.zooniverse.marks import MarkReader

    frame = (round(mask.shape[1] * scale[0]), round(mask.shape[0] * scale[1]))
    outlines, _, _ = MarkReader().read(
        [{"task": "T1", "value": [{"toolIndex": 0, "toolType": shape, **params}]}]
    )
    drawn = rasterise(outlines, frame, mask.shape, {("T1", 0): 1}).get(1, np.zeros(mask.shape, bool))
    return float((drawn & mask).sum() / max((drawn | mask).sum(), 1))


def trace_marks(
    truth: np.ndarray,
    frame_size: tuple[int, int],
    tools: dict[int, dict[str, int]],
    rng: np.random.Generator,
    *,
    noise_px: float = 1.0,
    miss_rate: float = 0.0,
    style: str = "old",
    min_area: int = 4,
    bits: bool = False,
) -> list[dict[str, Any]]:
    """Drawing marks (in frame pixels) of each region of a label slice.

    ``tools`` maps a label value to its tool index per tool type (``{1: {"polygon": 0, ...}}``).
    ``style``: ``old`` (old front end polygons), ``freehand`` (new front end ``pathX``/``pathY``) or
    ``shapes`` (new front end shapes, see :func:`fit_shapes`). ``bits``: label values are bit flags.
    """
    height, width = truth.shape
    scale = np.array([frame_size[0] / width, frame_size[1] / height])
    marks = []
    for value, by_type in tools.items():
        regions = connected((truth & value) > 0 if bits else truth == value)
        for region in range(1, regions.max() + 1):
            mask = regions == region
            if mask.sum() < min_area or rng.random() < miss_rate:
                continue
            fitted = fit_shapes(mask, scale) if style == "shapes" else {}
            fitting = sorted(
                shape for shape, (_, iou) in fitted.items() if iou >= SHAPE_FIT and shape in by_type
            )
            if fitting:  # volunteers reach for different tools: any shape that fits will do
                shape = fitting[rng.integers(len(fitting))]
                params = fitted[shape][0]
                jittered = {
                    k: v + (rng.normal(0, noise_px) if k != "angle" else 0.0) for k, v in params.items()
                }
                marks.append({"toolIndex": by_type[shape], "toolType": shape, "frame": 0,
                              "markId": uuid.uuid4().hex[:12], **jittered})  # fmt: skip
                continue
            xy = np.clip(_outline(mask, scale, noise_px, rng), 0, np.array(frame_size, float))
            points = [{"x": round(float(x), 2), "y": round(float(y), 2)} for x, y in xy]
            if style == "old":
                marks.append({"tool": by_type["polygon"], "frame": 0, "points": points, "details": []})
            elif style == "freehand":
                marks.append({"toolIndex": by_type["freehandLine"], "toolType": "freehandLine", "frame": 0,
                              "markId": uuid.uuid4().hex[:12], "pathX": [p["x"] for p in points],
                              "pathY": [p["y"] for p in points]})  # fmt: skip
            else:
                marks.append({"toolIndex": by_type["polygon"], "toolType": "polygon", "frame": 0,
                              "markId": uuid.uuid4().hex[:12], "points": points})  # fmt: skip
    return marks


def tools_by_class(tasks: dict[str, dict], class_values: dict[str, int]) -> dict[int, dict[str, int]]:
    """Label value → {tool type: tool index} of the workflow's drawing task (T1 of the sandbox)."""
    from tcupgan.zooniverse.marks import tool_classes

    classes = tool_classes(tasks, class_values)
    tools: dict[int, dict[str, int]] = {}
    for (task, index), value in classes.items():
        tools.setdefault(value, {}).setdefault(tasks[task]["tools"][index]["type"], index)
    return tools


def simulate_consensus(
    truth: np.ndarray,
    class_values: dict[str, int],
    task: str,
    rng: np.random.Generator,
    *,
    volunteers: int = 3,
    noise_px: float = 1.0,
    miss_rate: float = 0.1,
    threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """What harvest would make of ``volunteers`` simulated volunteers correcting one slice, without HTTP:
    the same marks (on the sandbox's workflow), extraction, rasterisation and consensus. Frames are as
    large as render makes them (≥ 512 px)."""
    from tcupgan.zooniverse.harvest import consensus, rasterise
    from tcupgan.zooniverse.marks import MarkReader, tool_classes
    from tcupgan.zooniverse.render import MIN_SIDE
    from tcupgan.zooniverse.testing.sandbox import workflow_tasks

    height, width = truth.shape
    scale = max(1.0, MIN_SIDE / max(height, width))
    frame = (round(width * scale), round(height * scale))
    tasks = workflow_tasks(tuple(class_values))
    tools, classes, reader = (
        tools_by_class(tasks, class_values),
        tool_classes(tasks, class_values),
        MarkReader(tasks),
    )
    masks = []
    for i in range(volunteers):
        options = {
            "noise_px": noise_px,
            "miss_rate": miss_rate,
            "style": STYLES[i % 3],
            "bits": task == "multilabel",
        }
        marks = trace_marks(truth, frame, tools, rng, **options)
        outlines, _, _ = reader.read(_annotations(marks, STYLES[i % 3]))
        masks.append(rasterise(outlines, frame, truth.shape, classes))
    return consensus(masks, sorted(set(class_values.values())), task, truth.shape, threshold)


def _annotations(marks: list[dict], style: str) -> list[dict]:
    """One classification's annotations of the sandbox's combo task: nested in the combo by the old
    front end, flat (one per sub-task) by the new one."""
    drawing = {"task": "T1", "task_label": "Outline every region", "value": marks}
    question = {"task": "T2", "value": 1}
    if style == "old":
        return [{"task": "T0", "value": [drawing, question]}]
    return [{**drawing, "taskType": "drawing"}, {**question, "taskType": "single"}]


def classify_subject_set(endpoint: str, volunteers: dict[str, str], store_path: str, subject_set_id: str,
                         workflow_id: str, *, seed: int = 0, noise_px: float = 1.0,
                         miss_rate: float = 0.1) -> int:  # fmt: skip
    """Every volunteer classifies every subject of a set (truth from the store) with the workflow's
    tools; returns how many posts."""
    from panoptes_client import Panoptes, Subject, Workflow

    from tcupgan.zooniverse.harvest import class_values

    store = CubeStore(store_path)
    rng = np.random.default_rng(seed)
    posted = 0
    for i, (login, password) in enumerate(sorted(volunteers.items())):
        with Panoptes(endpoint=endpoint, username=login, password=password) as client:
            tools = tools_by_class(Workflow.find(workflow_id).tasks, class_values(store))
            style = STYLES[i % len(STYLES)]
            for subject in Subject.where(subject_set_id=subject_set_id, page_size=100):
                meta = subject.metadata
                truth = store[meta["#cube"]].label[int(meta["#slice"])]
                frame = (int(meta["#frame_width"]), int(meta["#frame_height"]))
                marks = trace_marks(truth, frame, tools, rng, noise_px=noise_px, miss_rate=miss_rate,
                                    style=style, bits=store.task == "multilabel")  # fmt: skip
                metadata = {
                    "classifier_version": "1.0" if style == "old" else "2.0",
                    "source": "api",
                    "subject_dimensions": [{"naturalWidth": frame[0], "naturalHeight": frame[1]}],
                }
                classification = {
                    "annotations": _annotations(marks, style),
                    "metadata": metadata,
                    "completed": True,
                    "links": {
                        "project": subject.links.project.id,
                        "workflow": workflow_id,
                        "subjects": [subject.id],
                    },
                }
                client.post("/classifications", json={"classifications": classification})
                posted += 1
    return posted
