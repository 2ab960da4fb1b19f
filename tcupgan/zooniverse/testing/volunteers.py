"""Simulated volunteers for the sandbox: they outline the true regions of a slice, imperfectly.

The loop demo and the tests need classifications with known answers. Each simulated volunteer logs in
with its own sandbox account, traces every true region of a subject's slice (skimage contours), jitters
the vertices, sometimes misses a region, and posts the marks as a classification through
panoptes-client, in the old or the new front end's format, so harvest meets both.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
from skimage.measure import approximate_polygon, find_contours
from skimage.measure import label as connected

from tcupgan.data.store import CubeStore

__all__ = ["trace_marks", "classify_subject_set", "simulate_consensus"]


def trace_marks(
    truth: np.ndarray,
    frame_size: tuple[int, int],
    tool_values: dict[int, int],
    rng: np.random.Generator,
    *,
    noise_px: float = 1.0,
    miss_rate: float = 0.0,
    style: str = "old",
    min_area: int = 4,
    bits: bool = False,
) -> list[dict[str, Any]]:
    """Drawing marks (in frame pixels) outlining each region of a label slice.

    ``style`` picks the mark format: ``old`` (polygon ``tool``/``points``), ``new`` (``toolIndex``,
    ``toolType``, ``markId``) or ``freehand`` (new front end ``pathX``/``pathY``). ``bits``: label
    values are bit flags (multilabel stores).
    """
    height, width = truth.shape
    scale = np.array([frame_size[0] / width, frame_size[1] / height])
    marks = []
    for tool, value in tool_values.items():
        regions = connected((truth & value) > 0 if bits else truth == value)
        for region in range(1, regions.max() + 1):
            mask = regions == region
            if mask.sum() < min_area or rng.random() < miss_rate:
                continue
            contour = max(find_contours(np.pad(mask, 1).astype(float), 0.5), key=len) - 1
            contour = approximate_polygon(contour, tolerance=0.4)[:-1]
            xy = (contour[:, ::-1] + 0.5) * scale + rng.normal(0, noise_px, contour.shape)
            xy = np.clip(xy, 0, np.array(frame_size, float))
            points = [{"x": round(float(x), 2), "y": round(float(y), 2)} for x, y in xy]
            if style == "old":
                marks.append({"tool": tool, "frame": 0, "points": points, "details": []})
            elif style == "new":
                marks.append({"toolIndex": tool, "toolType": "polygon", "frame": int(rng.integers(2)),
                              "markId": uuid.uuid4().hex[:12], "points": points})  # fmt: skip
            else:
                marks.append({"toolIndex": tool, "toolType": "freehandLine", "frame": 0,
                              "markId": uuid.uuid4().hex[:12], "pathX": [p["x"] for p in points],
                              "pathY": [p["y"] for p in points]})  # fmt: skip
    return marks


def simulate_consensus(
    truth: np.ndarray,
    tool_values: dict[int, int],
    task: str,
    rng: np.random.Generator,
    *,
    volunteers: int = 3,
    noise_px: float = 1.0,
    miss_rate: float = 0.1,
    threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """What harvest would make of ``volunteers`` simulated volunteers correcting one slice, without HTTP:
    the same marks, rasterisation and consensus. Frames are as large as render makes them (≥ 512 px)."""
    from tcupgan.zooniverse.harvest import consensus, parse_marks, rasterise
    from tcupgan.zooniverse.render import MIN_SIDE

    height, width = truth.shape
    scale = max(1.0, MIN_SIDE / max(height, width))
    frame = (round(width * scale), round(height * scale))
    masks = []
    for i in range(volunteers):
        style = ("old", "new", "freehand")[i % 3]
        options = {"noise_px": noise_px, "miss_rate": miss_rate, "style": style, "bits": task == "multilabel"}
        marks = trace_marks(truth, frame, tool_values, rng, **options)
        masks.append(
            rasterise(parse_marks([{"task": "T0", "value": marks}]), frame, truth.shape, tool_values)
        )
    return consensus(masks, sorted(set(tool_values.values())), task, truth.shape, threshold)


def classify_subject_set(endpoint: str, volunteers: dict[str, str], store_path: str, subject_set_id: str,
                         workflow_id: str, *, seed: int = 0, noise_px: float = 1.0,
                         miss_rate: float = 0.1) -> int:  # fmt: skip
    """Every volunteer classifies every subject of a set (truth from the store); returns how many posts."""
    from panoptes_client import Panoptes, Subject

    from tcupgan.zooniverse.harvest import default_tool_values

    store = CubeStore(store_path)
    tools = default_tool_values(store)
    rng = np.random.default_rng(seed)
    styles = ("old", "new", "freehand")
    posted = 0
    for i, (login, password) in enumerate(sorted(volunteers.items())):
        with Panoptes(endpoint=endpoint, username=login, password=password) as client:
            for subject in Subject.where(subject_set_id=subject_set_id, page_size=100):
                meta = subject.metadata
                truth = store[meta["#cube"]].label[int(meta["#slice"])]
                frame = (int(meta["#frame_width"]), int(meta["#frame_height"]))
                style = styles[i % len(styles)]
                marks = trace_marks(truth, frame, tools, rng, noise_px=noise_px, miss_rate=miss_rate,
                                    style=style, bits=store.task == "multilabel")  # fmt: skip
                version = "2.0" if style != "old" else "1.0"
                metadata = {
                    "classifier_version": version,
                    "source": "api",
                    "subject_dimensions": [{"naturalWidth": frame[0], "naturalHeight": frame[1]}],
                }
                classification = {
                    "annotations": [{"task": "T0", "task_label": "Outline every region", "value": marks}],
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
