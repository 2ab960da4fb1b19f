"""Test doubles of the Zooniverse, for the demo, the tests and the studies: a loopback Panoptes API with
injected faults that panoptes-client talks to over real HTTP (:mod:`.sandbox`), the classification
export it writes (:mod:`.exports`), and simulated volunteers who draw on its subjects
(:mod:`.volunteers`). Nothing here is needed to run a real project."""

from tcupgan.zooniverse.testing.sandbox import Sandbox
from tcupgan.zooniverse.testing.volunteers import classify_subject_set, simulate_consensus

__all__ = ["Sandbox", "classify_subject_set", "simulate_consensus"]
