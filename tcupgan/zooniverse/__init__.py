"""Zooniverse: subjects rendered from selected slices (:mod:`.render`), uploaded through panoptes-client
(:mod:`.upload`), and volunteers' drawings harvested back into the store (:mod:`.harvest`). Test doubles
of the Zooniverse (a loopback Panoptes sandbox, simulated volunteers) live in :mod:`.testing`."""

from __future__ import annotations

from typing import Any

__all__ = ["render_subjects", "subject_id"]


def __getattr__(name: str) -> Any:  # rendering imports the model stack; harvest and upload do not need it
    if name in __all__:
        from tcupgan.zooniverse import render

        return getattr(render, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
