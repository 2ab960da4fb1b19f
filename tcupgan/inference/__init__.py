"""Inference: whole-cube prediction into the store (probabilities, masks, per-slice scores)."""

from tcupgan.inference.predict import PredictReport, hard_labels, load_model, predict_store

__all__ = ["PredictReport", "hard_labels", "load_model", "predict_store"]
