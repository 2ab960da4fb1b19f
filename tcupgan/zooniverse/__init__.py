"""Zooniverse: subjects rendered from selected slices (:mod:`.render`), uploaded through panoptes-client
(:mod:`.upload`), and volunteers' drawings harvested back into the store (:mod:`.harvest`). Test doubles
of the Zooniverse (a loopback Panoptes sandbox, simulated volunteers) live in :mod:`.testing`."""

from tcupgan.zooniverse.render import render_subjects, subject_id

__all__ = ["render_subjects", "subject_id"]
