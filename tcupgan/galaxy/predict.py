"""Soft spiral-arm and bar masks for galaxy images (PNG/JPEG/TIFF cutouts), with a catalogue and overlays.

A galaxy model is a TCuP-GAN trained on 2D cubes (D = 1) with two outputs, spiral arm and bar, usually
on vote fractions (``data.target: vote_fraction``, ``seg_loss: bce`` or ``l1``), so each output pixel
reads as "the fraction of volunteers who would mark it". Images are resized to the size the model was
trained at (galaxy cutouts are centred and scaled alike, so the network sees galaxies at the scale it
learned), predicted whole, and the masks resized back. The discriminator's realness of each (image,
mask) pair goes into the catalogue: the least real predictions are the galaxies worth showing volunteers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage.transform import resize
from tqdm.auto import tqdm

from tcupgan.data.ingest import cube_name
from tcupgan.data.readers import IMAGE_SUFFIXES, read_image
from tcupgan.data.store import intensity_stats
from tcupgan.data.transforms import normalise
from tcupgan.errors import InputError
from tcupgan.galaxy.measure import measure_galaxy, write_catalogue
from tcupgan.inference.predict import load_model
from tcupgan.viz import display_image, outline, save_panels

__all__ = ["predict_galaxies", "galaxy_images"]


def galaxy_images(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Image files from files and folders (folders: their PNG/JPEG/TIFF files, sorted)."""
    paths = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            paths.append(item)
        else:
            raise InputError(f"'{item}' does not exist")
    if not paths:
        raise InputError("no galaxy images found (PNG, JPEG or TIFF)")
    return paths


def _soft_png(fraction: np.ndarray, path: Path) -> None:
    Image.fromarray(np.round(np.clip(fraction, 0, 1) * 255).astype(np.uint8)).save(path)


def predict_galaxies(
    ckpt: str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    size: int | None = None,
    threshold: float = 0.5,
    pixel_scale: float | None = None,
    bar_level: float | None = 0.5,
    device: str = "auto",
) -> Path:
    """Predict every image and write, under ``out``: ``<name>_masks.npy`` (2, H, W) float16 fractions,
    ``<name>_spiral.png`` and ``<name>_bar.png`` (fraction x 255), ``<name>_overlay.png`` and
    ``catalogue.csv`` (one row per image: realness and :func:`measure_galaxy`'s measurements).

    ``size``: the square size images are resized to for the network (default: the model's training
    window, ``val_roi``); ``threshold`` and ``bar_level`` as in :func:`measure_galaxy`. Returns the
    catalogue's path.
    """
    model = load_model(ckpt, device)
    device, hp = next(model.parameters()).device, model.hparams
    if hp.out_channels != 2:
        raise InputError(
            f"'{ckpt}' predicts {hp.out_channels} class(es); a galaxy model has two (spiral arm, bar): "
            "train one with `tcupgan fit --config galaxy_spiral_bar`"
        )
    size = int(size or (hp.val_roi[-1] if hp.val_roi else 0)) or None
    paths = galaxy_images(inputs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in tqdm(paths, desc="galaxy predict", unit="image", disable=None):
        data = read_image(path).data[:, 0].astype(np.float32)  # (C, H, W)
        if data.shape[0] != hp.in_channels:
            raise InputError(f"'{path}' has {data.shape[0]} channel(s); the model expects {hp.in_channels}")
        h, w = data.shape[1:]
        net_in = resize(data, (len(data), size, size), order=1, anti_aliasing=True) if size else data
        image = normalise(net_in, {"intensity": intensity_stats(net_in[:, None])})
        tensor = torch.from_numpy(image)[None, :, None].to(device)
        with torch.no_grad():
            prob = torch.sigmoid(model.predict_logits(tensor))
            realness = float(model.discriminator.slice_scores(tensor, prob).mean())
        fractions = prob[0, :, 0].cpu().numpy()
        if size:
            fractions = resize(fractions, (2, h, w), order=1)
        name = cube_name(path)
        np.save(out / f"{name}_masks.npy", fractions.astype(np.float16))
        _soft_png(fractions[0], out / f"{name}_spiral.png")
        _soft_png(fractions[1], out / f"{name}_bar.png")
        drawn = outline(display_image(data), fractions[0] >= threshold, (1.0, 0.2, 0.2))
        outline(drawn, fractions[1] >= threshold, (0.2, 1.0, 0.2))
        save_panels(
            [[(name, display_image(data)), (f"arms (red), bar (green) at {threshold:g}", drawn)]],
            out / f"{name}_overlay.png",
        )
        measured = measure_galaxy(
            fractions[0], fractions[1], threshold=threshold, pixel_scale=pixel_scale, bar_level=bar_level
        )
        rows.append({"image": str(path), "name": name, "realness": round(realness, 4), **measured})
    return write_catalogue(rows, out / "catalogue.csv")
