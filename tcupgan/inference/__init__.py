"""Inference: whole-cube prediction into the store (probabilities, masks) and the registry of per-slice
scores predict writes beside them."""

from tcupgan.inference.predict import PredictReport, hard_labels, load_model, predict_store
from tcupgan.inference.scorers import SCORERS, SlicePool, SliceScorer, get_scorer, register

__all__ = [
    "SCORERS",
    "PredictReport",
    "SlicePool",
    "SliceScorer",
    "get_scorer",
    "hard_labels",
    "load_model",
    "predict_store",
    "register",
]
