"""Training: the TCuP-GAN LightningModule, the store-backed data module, the ``fit`` CLI (LightningCLI),
transfer to a new project and weight averaging."""

from tcupgan.training.data import CubeDataModule
from tcupgan.training.module import TCuPGAN

__all__ = ["CubeDataModule", "TCuPGAN"]
