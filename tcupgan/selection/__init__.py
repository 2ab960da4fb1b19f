"""Slice selection: rank the slices of predicted cubes by a registered scorer and pick a budget of them
for volunteers; the selection CSV."""

from tcupgan.selection.select import (
    DEFAULT_STRATEGY,
    SAMPLINGS,
    SelectionRules,
    read_selection,
    sampling_for,
    select_slices,
    write_selection,
)

__all__ = [
    "DEFAULT_STRATEGY",
    "SAMPLINGS",
    "SelectionRules",
    "read_selection",
    "sampling_for",
    "select_slices",
    "write_selection",
]
