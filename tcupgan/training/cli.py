"""``tcupgan fit``: LightningCLI over :class:`TCuPGAN` and :class:`CubeDataModule`.

The store decides the model's input and output channels and class names (linked arguments), so a config
names a store and the network's choices, never channel counts that could disagree with the data.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from lightning.pytorch.cli import LightningCLI

from tcupgan.training.data import CubeDataModule
from tcupgan.training.module import TCuPGAN

__all__ = ["TCuPGANCLI", "run_fit"]


class TCuPGANCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        for field in ("in_channels", "out_channels", "class_names", "task"):
            parser.link_arguments(f"data.{field}", f"model.{field}", apply_on="instantiate")


def run_fit(argv: Sequence[str]) -> TCuPGANCLI:
    """Run ``fit`` with LightningCLI arguments, e.g. ``["--config", "configs/demo.yaml"]``."""
    # `tcupgan fit ...` hands its own command line over; LightningCLI would warn that it also sees sys.argv
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter", category=UserWarning)
    return TCuPGANCLI(
        TCuPGAN,
        CubeDataModule,
        args=["fit", *argv],
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"fit": {"default_env": False}},
    )
