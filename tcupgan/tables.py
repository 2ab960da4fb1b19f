"""CSV tables that readers never see half-written: selections, manifests, exports, catalogues, metrics.

Each table is written to a temporary file next to its destination and renamed over it (atomic on one
file system), so a crash or a bad row leaves the previous file, never a truncated one, and a rerun starts
from a consistent state.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["write_csv"]


def write_csv(
    rows: Iterable[dict[str, Any]], path: str | os.PathLike, fields: Sequence[str] | None = None
) -> Path:
    """Write ``rows`` (dicts) as CSV at ``path``, atomically; columns: ``fields`` or the first row's keys."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    columns = list(fields) if fields is not None else list(rows[0]) if rows else []
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
