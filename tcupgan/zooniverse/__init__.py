"""Zooniverse: subject rendering (upload, sandbox and harvest are to come)."""

from tcupgan.zooniverse.render import render_subjects, subject_id

__all__ = ["render_subjects", "subject_id"]
