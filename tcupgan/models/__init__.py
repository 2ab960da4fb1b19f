"""Networks: the ConvLSTM, the TCuP-GAN generator and the PatchGAN discriminator, one file each."""

from tcupgan.models.convlstm import ConvLSTM
from tcupgan.models.discriminator import PatchDiscriminator
from tcupgan.models.generator import TCuPGenerator

__all__ = ["ConvLSTM", "PatchDiscriminator", "TCuPGenerator"]
