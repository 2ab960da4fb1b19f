"""Volunteers' drawings → outlines in frame pixels, read by the Zooniverse's own extractors.

``panoptes_aggregation`` (the package Zooniverse teams aggregate with) is configured from the
workflow's task definitions and extracts every drawing tool of both front ends; this module turns its
extracts into outlines with each shape's true geometry (the same geometry ``panoptes_aggregation``'s
shape reducers use: circles, ellipses and rotated rectangles are polygons, not bounding boxes). Every
mark that cannot become an area is counted by reason, so a caller can leave out a volunteer whose
drawing it could not read instead of counting them as "drew nothing".

Two things the extractors do not do are done here, before extraction: combo tasks of the old front end
nest their sub-tasks' annotations (flattened), and the new front end writes rectangles, circles and
ellipses by their centre (``x_center``/``y_center``, which the shape extractor would silently skip).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from tcupgan.errors import require_extra

__all__ = ["Outline", "MarkReader", "tool_classes", "infer_tasks", "flatten_combo"]

OUTLINE_TOOLS = ("polygon", "freehandLine")
AREA_SHAPES = ("rectangle", "rotateRectangle", "circle", "ellipse", "triangle")
SHAPE_KEYS = {  # new front end mark keys → the names the extractors read
    "rectangle": {"x": ("x_center", "width"), "y": ("y_center", "height")},
    "rotateRectangle": {"x": ("x_center", "width"), "y": ("y_center", "height")},
}
SHAPE_SIGNATURES = (  # old front end marks carry no tool type: the keys tell the shape
    ("rotateRectangle", {"width", "height", "angle"}),
    ("rectangle", {"width", "height"}),
    ("ellipse", {"rx", "ry"}),
    ("circle", {"r"}),
)
_EXTRACT_KEY = re.compile(r"^(?P<task>.+)_tool(?:Index)?(?P<tool>\d+)_(?P<param>[A-Za-z]+)$")


@dataclass(frozen=True)
class Outline:
    """One drawn area: the drawing task and tool that made it, the subject frame, vertices as (x, y)."""

    task: str
    tool: int
    frame: int
    xy: np.ndarray


def flatten_combo(annotations: list[dict]) -> list[dict]:
    """Annotations with the old front end's combo tasks opened: a combo's value is a list of its
    sub-tasks' annotations (each with its own ``task`` key), which the extractors expect at top level."""
    flat = []
    for annotation in annotations:
        value = annotation.get("value")
        nested = isinstance(value, list) and value and all(isinstance(v, dict) and "task" in v for v in value)
        flat.extend(flatten_combo(value) if nested else [annotation])
    return flat


def _tool_index(mark: dict) -> int | None:
    tool = mark.get("toolIndex", mark.get("tool"))
    return tool if isinstance(tool, int) and not isinstance(tool, bool) else None


def _shape_of(mark: dict) -> str | None:
    """A mark's tool type from its own keys (used only when the workflow's tasks are unknown)."""
    keys = set(mark)
    if "toolType" in mark:
        return str(mark["toolType"])
    if "points" in keys or "pathX" in keys:
        return "polygon"
    for shape, needs in SHAPE_SIGNATURES:
        if needs <= keys:
            return shape
    return None


def infer_tasks(annotations: list[dict]) -> dict[str, dict]:
    """Drawing tasks as the marks describe them, for exports whose workflow definition is not at hand:
    each (task, tool index) gets the type its marks' keys imply."""
    tasks: dict[str, dict] = {}
    for annotation in flatten_combo(annotations):
        value = annotation.get("value")
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            continue
        tools: dict[int, str] = {}
        for mark in value:
            tool, shape = _tool_index(mark), _shape_of(mark)
            if tool is not None and shape is not None:
                tools.setdefault(tool, shape)
        if tools:
            types = [tools.get(i, "unknown") for i in range(max(tools) + 1)]
            tools_list = [{"type": t, "details": []} for t in types]
            tasks[str(annotation.get("task"))] = {"type": "drawing", "tools": tools_list}
    return tasks


def tool_classes(tasks: dict[str, dict], class_values: dict[str, int],
                 explicit: dict[str, int] | None = None) -> dict[tuple[str, int], int]:  # fmt: skip
    """(drawing task, tool index) → label value, for the tools that have an area.

    ``explicit`` keys are ``"T1.0"`` (task T1, tool 0) or ``"0"`` (tool 0 of every task). Otherwise,
    when a task's tool labels name the store's classes, each tool marks the class it names (others mark
    none); when they do not, the task's i-th distinct label (or i-th unlabelled tool) marks the i-th
    class, so several shapes of one label mark one class. Points and lines mark no class.
    """
    names = {name.lower(): value for name, value in class_values.items()}
    mapping: dict[tuple[str, int], int] = {}
    for task_key, task in tasks.items():
        if task.get("type") != "drawing":
            continue
        tools = {i: str(tool.get("label") or f"#tool{i}") for i, tool in enumerate(task.get("tools", []))
                 if tool.get("type") in OUTLINE_TOOLS + AREA_SHAPES}  # fmt: skip
        by_name = any(label.lower() in names for label in tools.values())
        order = list(dict.fromkeys(tools.values()))
        for i, label in tools.items():
            if explicit is not None:
                value = explicit.get(f"{task_key}.{i}", explicit.get(str(i)))
            elif by_name:
                value = names.get(label.lower())
            else:
                position = order.index(label)
                value = list(class_values.values())[position] if position < len(class_values) else None
            if value is not None:
                mapping[(task_key, i)] = int(value)
    return mapping


def _front_end_centres(mark: dict) -> dict:
    """A new front end shape mark with ``x``/``y`` as the extractors expect (its corner for rectangles,
    its centre for circles and ellipses)."""
    if "x_center" not in mark or "x" in mark:
        return mark
    mark = dict(mark)
    shift = SHAPE_KEYS.get(str(mark.get("toolType")), {})
    for axis in ("x", "y"):
        centre, size = shift.get(axis, (f"{axis}_center", None))
        mark[axis] = float(mark[centre]) - (float(mark[size]) / 2 if size else 0.0)
    return mark


class MarkReader:
    """Reads one classification's marks with the extractors a workflow's tasks configure."""

    def __init__(self, tasks: dict[str, dict] | None = None) -> None:
        require_extra("panoptes_aggregation", "zooniverse", "reading volunteers' drawings")
        from panoptes_aggregation.workflow_config import workflow_extractor_config

        self.tasks = tasks
        self._configs: dict[int, tuple[dict, dict]] = {}  # by id() of task definitions kept below
        self._inferred: dict[tuple, dict] = {}
        self._config_for = workflow_extractor_config

    def read(
        self, annotations: list[dict], metadata: dict | None = None
    ) -> tuple[list[Outline], Counter, dict]:
        """Every area mark as an :class:`Outline`, the marks that could not become one by reason, and the
        task definitions they were read with (the workflow's, or inferred from the marks)."""
        from panoptes_aggregation.extractors import extractors

        flat = [
            {**a, "value": [_front_end_centres(m) if isinstance(m, dict) else m for m in a["value"]]}
            if isinstance(a.get("value"), list) else a
            for a in flatten_combo(annotations)
        ]  # fmt: skip
        tasks = self.tasks if self.tasks is not None else self._infer(flat)
        config, tool_types = self._config(tasks)
        by_task: dict[str, list[dict]] = {}  # the extractors' input: annotations grouped by task
        for annotation in flat:
            by_task.setdefault(str(annotation.get("task")), []).append(annotation)
        drawn = _tools_drawn(flat)
        outlines: list[Outline] = []
        for name, keywords in config.items():
            extractor = extractors["shape_extractor" if name.startswith("shape_extractor") else name]
            for kw in keywords:
                if not any((kw["task"], tool) in drawn for tool in kw.get("tools", [])):
                    continue  # none of this extractor's tools was used
                # the extractors replace lists in what they are given (never edit inside): copy one level
                given = {task: [dict(a) for a in items] for task, items in by_task.items()}
                try:
                    extract = extractor(
                        {"annotations": given, "metadata": metadata or {}}, no_version=True, **kw
                    )
                except Exception:  # noqa: BLE001 - a malformed mark; its marks are counted as lost below
                    continue
                outlines += [o for o in _outlines(extract, kw.get("shape")) if _has_area(o.xy)]
        return outlines, _lost(drawn, outlines, tool_types), tasks

    def _infer(self, flat: list[dict]) -> dict:
        """Tasks inferred from the marks; one object per distinct set of tools, so configs are reused."""
        inferred = infer_tasks(flat)
        key = tuple((k, tuple(tool["type"] for tool in v["tools"])) for k, v in sorted(inferred.items()))
        return self._inferred.setdefault(key, inferred)

    def _config(self, tasks: dict[str, dict]) -> tuple[dict, dict]:
        key = id(tasks)
        if key not in self._configs:
            config = {
                name: [{k: v for k, v in kw.items() if k != "details"} for kw in kws]
                for name, kws in self._config_for(tasks).items()
                if name == "polygon_extractor" or name.removeprefix("shape_extractor_") in AREA_SHAPES
            }
            tool_types = {
                (task_key, i): tool.get("type", "unknown")
                for task_key, task in tasks.items() if task.get("type") == "drawing"
                for i, tool in enumerate(task.get("tools", []))
            }  # fmt: skip
            self._configs[key] = (config, tool_types)
        return self._configs[key]


def _outlines(extract: dict, shape: str | None) -> list[Outline]:
    """Outlines from one extractor's output: ``{frameN: {"T0_tool1_pathX": [...], ...}}``."""
    outlines = []
    for frame_key, values in extract.items():
        if not frame_key.startswith("frame") or not isinstance(values, dict):
            continue
        by_tool: dict[tuple[str, int], dict[str, list]] = {}
        for key, items in values.items():
            if (match := _EXTRACT_KEY.match(key)) is not None:
                by_tool.setdefault((match["task"], int(match["tool"])), {})[match["param"]] = items
        for (task, tool), params in by_tool.items():
            for xy in _geometries(params, shape):
                outlines.append(Outline(task, tool, int(frame_key[5:]), xy))
    return outlines


def _geometries(params: dict[str, list], shape: str | None) -> list[np.ndarray]:
    """Vertex arrays of one tool's marks: polygons as drawn, shapes through panoptes_aggregation's
    geometry (the one its IoU reducer uses)."""
    if shape is None:
        return [np.column_stack([np.asarray(x, float), np.asarray(y, float)])
                for x, y in zip(params["pathX"], params["pathY"], strict=True)]  # fmt: skip
    from panoptes_aggregation.reducers.shape_metric_IoU import panoptes_to_geometry
    from panoptes_aggregation.shape_tools import SHAPE_LUT

    columns = [params[name] for name in SHAPE_LUT[shape]]
    shapes = []
    for values in zip(*columns, strict=True):
        try:
            geometry = panoptes_to_geometry([float(v) for v in values], shape)
        except (TypeError, ValueError):
            shapes.append(np.empty((0, 2)))
            continue
        shapes.append(np.asarray(geometry.exterior.coords, float)[:-1])
    return shapes


def _tools_drawn(flat: list[dict]) -> Counter:
    """Marks per (task, tool index) of one classification; marks without a tool index count as tool -1."""
    drawn: Counter = Counter()
    for annotation in flat:
        value = annotation.get("value")
        if isinstance(value, list):
            for mark in value:
                if isinstance(mark, dict) and (tool := _tool_index(mark)) is not None:
                    drawn[(str(annotation.get("task")), tool)] += 1
                elif isinstance(mark, dict) and ("points" in mark or "pathX" in mark or "x" in mark):
                    drawn[(str(annotation.get("task")), -1)] += 1
    return drawn


def _lost(drawn: Counter, outlines: list[Outline], tool_types: dict) -> Counter:
    """Marks drawn minus marks extracted as areas, per (task, tool), named by the tool's type."""
    kept = Counter((o.task, o.tool) for o in outlines)
    lost: Counter = Counter()
    for key, count in drawn.items():
        missing = count - kept.get(key, 0)
        if missing > 0:
            kind = tool_types.get(key)
            if kind is None:
                reason = "mark of a tool the workflow does not define"
            elif kind in OUTLINE_TOOLS or kind in AREA_SHAPES:
                reason = f"{kind} mark without a readable area"
            else:
                reason = f"{kind} mark (no area)"
            lost[reason] += missing
    return lost


def _has_area(xy: np.ndarray) -> bool:
    if len(xy) < 3 or not np.isfinite(xy).all():
        return False
    x, y = xy[:, 0], xy[:, 1]
    twice_area = np.dot(x[:-1], y[1:]) - np.dot(y[:-1], x[1:]) + x[-1] * y[0] - y[-1] * x[0]  # shoelace
    return abs(twice_area) > 1e-9
