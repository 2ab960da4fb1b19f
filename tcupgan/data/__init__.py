"""Data: the cube store, ingestion from NIfTI (BraTS, nnU-Net, Decathlon, plain pairs), TIFF and images,
export, and synthetic scene families."""

from tcupgan.data.export import export_cube
from tcupgan.data.ingest import IngestReport, ingest_brats, ingest_images, ingest_tiff
from tcupgan.data.store import Cube, CubeStore
from tcupgan.data.synth import FAMILIES, make_scene, synthesize

__all__ = [
    "FAMILIES",
    "Cube",
    "CubeStore",
    "IngestReport",
    "export_cube",
    "ingest_brats",
    "ingest_images",
    "ingest_tiff",
    "make_scene",
    "synthesize",
]
