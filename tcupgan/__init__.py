"""tcupgan: TCuP-GAN segmentation of 3D image cubes with a Zooniverse volunteer loop.

The front door: every step of the loop as one import, for notebooks and scripts (the CLI calls the same
functions)::

    import tcupgan
    tcupgan.synthesize("fatchecker", "demo.zarr", n=10)
    ckpt = tcupgan.fit_config("demo", "demo.zarr", "runs/demo", epochs=20)
    tcupgan.predict_store(ckpt, "demo.zarr")
    rows = tcupgan.select_slices("demo.zarr", 20)

Names are imported on first use, so ``import tcupgan`` (and every CLI command) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_HOMES = {
    "tcupgan.data": ("CubeStore", "ingest_brats", "ingest_tiff", "ingest_images", "synthesize", "make_scene",
                     "export_cube"),
    "tcupgan.data.nnunet": ("ingest_nnunet", "ingest_nifti", "export_nnunet"),
    "tcupgan.data.store": ("migrate_store",),
    "tcupgan.training": ("TCuPGAN", "CubeDataModule"),
    "tcupgan.training.cli": ("fit_config", "shipped_config"),
    "tcupgan.training.plan": ("write_plan",),
    "tcupgan.training.transfer": ("transfer_weights",),
    "tcupgan.inference": ("predict_store", "load_model", "SliceScorer", "register"),
    "tcupgan.metrics.evaluate": ("evaluate_store",),
    "tcupgan.selection": ("select_slices", "SelectionRules", "write_selection", "read_selection"),
    "tcupgan.zooniverse.render": ("render_subjects",),
    "tcupgan.zooniverse.upload": ("upload_subjects", "upload_until_complete"),
    "tcupgan.zooniverse.harvest": ("harvest", "download_export"),
    "tcupgan.galaxy": ("measure_store",),
    "tcupgan.galaxy.predict": ("predict_galaxies",),
    "tcupgan.viz": ("show_cube", "display_image", "overlay", "outline", "save_panels", "view_cube",
                    "viewer_layers"),
    "tcupgan.demo": ("run_demo", "build_stores", "fit_demo_model", "dice", "DEMO_CONFIG"),
}  # fmt: skip
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}
__all__ = ["__version__", *_HOME_OF]


def __getattr__(name: str) -> Any:
    if name not in _HOME_OF:
        raise AttributeError(f"module 'tcupgan' has no attribute '{name}'")
    return getattr(importlib.import_module(_HOME_OF[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
