"""Training: the TCuP-GAN LightningModule, the store-backed data module and the ``fit`` CLI."""

from tcupgan.training.data import CubeDataModule
from tcupgan.training.module import TCuPGAN

__all__ = ["CubeDataModule", "TCuPGAN"]
