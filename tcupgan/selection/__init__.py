"""Slice selection: rank the slices of predicted cubes for volunteers."""

from tcupgan.selection.select import STRATEGIES, read_selection, select_slices, write_selection

__all__ = ["STRATEGIES", "read_selection", "select_slices", "write_selection"]
