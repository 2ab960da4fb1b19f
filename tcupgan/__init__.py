"""tcupgan: TCuP-GAN segmentation of 3D image cubes with a Zooniverse volunteer loop."""

__version__ = "0.1.0"
