"""Galaxy spiral arms and bars: measurements from segmentation masks."""

from tcupgan.galaxy.measure import bar_geometry, measure_galaxy, measure_store

__all__ = ["bar_geometry", "measure_galaxy", "measure_store"]
