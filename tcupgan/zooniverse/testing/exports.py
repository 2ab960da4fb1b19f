"""The Zooniverse classification export (CSV): the columns, written by the sandbox, read by harvest.

One row per classification; ``metadata``, ``annotations`` and ``subject_data`` are JSON strings, exactly
as the project builder's "Request new classification export" produces them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tcupgan.tables import write_csv

__all__ = ["EXPORT_COLUMNS", "classification_rows", "write_export"]

EXPORT_COLUMNS = [
    "classification_id", "user_name", "user_id", "user_ip", "workflow_id", "workflow_name",
    "workflow_version", "created_at", "gold_standard", "expert", "metadata", "annotations",
    "subject_data", "subject_ids",
]  # fmt: skip


def classification_rows(state: Any, project_id: str) -> list[dict[str, str]]:
    """Export rows of every classification of one project held by a :class:`SandboxState`."""
    rows = []
    for c in state.objects("classifications"):
        if c["links"]["project"] != project_id:
            continue
        user = state.get("users", c["links"]["user"])
        workflow = state.get("workflows", c["links"]["workflow"])
        subject_data = {}
        for sid in c["links"]["subjects"]:
            subject = state.data["objects"]["subjects"].get(sid)
            subject_data[sid] = {"retired": None, **(subject["metadata"] if subject else {})}
        rows.append({
            "classification_id": c["id"], "user_name": user["login"], "user_id": user["id"],
            "user_ip": hashlib.sha1(user["login"].encode()).hexdigest()[:8], "workflow_id": workflow["id"],
            "workflow_name": workflow["display_name"], "workflow_version": c["workflow_version"],
            "created_at": c["created_at"].replace("T", " ").split(".")[0] + " UTC", "gold_standard": "",
            "expert": "", "metadata": json.dumps(c["metadata"]), "annotations": json.dumps(c["annotations"]),
            "subject_data": json.dumps(subject_data), "subject_ids": ";".join(c["links"]["subjects"]),
        })  # fmt: skip
    return rows


def write_export(rows: Iterable[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write export rows as CSV (atomic: a reader never sees half a file)."""
    return write_csv(rows, path, EXPORT_COLUMNS)
