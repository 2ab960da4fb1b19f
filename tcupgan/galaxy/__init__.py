"""Galaxies: Galaxy Zoo 3D FITS ingest (``gz3d``), soft spiral-arm and bar masks for cutouts (``predict``)
and bar length, angle and arm measurements from masks (``measure``)."""

from tcupgan.galaxy.measure import bar_geometry, measure_galaxy, measure_store

__all__ = ["bar_geometry", "measure_galaxy", "measure_store"]
