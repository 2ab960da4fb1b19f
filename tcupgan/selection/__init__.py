"""Slice selection: rank the slices of predicted cubes for volunteers."""

from tcupgan.selection.select import (
    CALIBRATIONS,
    SAMPLINGS,
    STRATEGIES,
    read_selection,
    sampling_for,
    select_slices,
    write_selection,
)

__all__ = [
    "CALIBRATIONS",
    "SAMPLINGS",
    "STRATEGIES",
    "read_selection",
    "sampling_for",
    "select_slices",
    "write_selection",
]
