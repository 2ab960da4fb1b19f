"""Training data straight from the cube store: random crops read chunk by chunk, whole cubes to validate.

Crops are read lazily from Zarr (only the chunks under the crop), so a store larger than memory trains
as well as a small one. Foreground oversampling centres a share of crops on labelled voxels; the
coordinates of foreground voxels are gathered once per cube and worker, from the uint8 label alone.

Targets are the label by default; ``target="vote_fraction"`` trains on soft targets instead (per-pixel
fractions of volunteers, as Galaxy Zoo 3D provides them), so the outputs become calibrated fractions.

Volunteer corrections (``tcupgan harvest``) override the label on their slices. A cube with no ground
truth but some corrected slices trains too: its crops always hold a corrected slice, and each item says
which of its slices are labelled so the losses ignore the others.

With ``unlabelled_share`` a share of the crops comes from train cubes with neither labels nor corrections
(the pool volunteers pick from), every slice unlabelled: no segmentation loss and no real term, but the
generator's masks on them are the discriminator's fakes like any other (and the generator's adversarial
term covers them, as in semi-supervised adversarial segmentation), so the verdict learns where the
labelled data does not reach (the labelled-versus-unlabelled discriminator of VAAL, Sinha et al. 2019).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from tcupgan.data.store import CubeStore
from tcupgan.data.transforms import augmentations, label_to_target, n_targets, normalise, target_names
from tcupgan.errors import ConfigError

__all__ = ["CubeDataModule", "CropDataset", "CubeDataset"]

log = logging.getLogger(__name__)


def _crop_size(crop: Sequence[int], shape: Sequence[int]) -> tuple[int, int, int]:
    """Clip a (D, H, W) crop to the cube so small cubes and 2D images (D = 1) just work."""
    return tuple(min(int(c), int(s)) for c, s in zip(crop, shape, strict=True))  # type: ignore[return-value]


def _random_start(rng: np.random.Generator, crop: Sequence[int], shape: Sequence[int]) -> list[int]:
    """The corner of a ``crop`` placed uniformly at random inside ``shape``."""
    return [int(rng.integers(0, s - k + 1)) for k, s in zip(crop, shape, strict=True)]


def has_target(cube, target: str = "label") -> bool:
    """Whether a cube holds the whole training target (its label, or a soft-target array)."""
    return cube.label is not None if target == "label" else target in cube


def is_trainable(cube, target: str = "label") -> bool:
    """A whole target, or (for labels) at least some slices corrected by volunteers."""
    return has_target(cube, target) or (target == "label" and bool(cube.corrected_slices))


def check_target(target: str) -> str:
    """``label`` or the name of a float array of the cube (K, D, H, W) with values in [0, 1]."""
    if target in ("image", "prediction", "probability", "corrections", "correction_votes"):
        raise ConfigError(f"data.target '{target}' is not a training target; use 'label' or 'vote_fraction'")
    return target


def read_soft_target(cube, target: str, window: tuple[slice, slice, slice] | None = None) -> np.ndarray:
    """A crop (``window``; None: the whole cube) of a soft-target array (K, d, h, w) as float32, checked
    to be fractions."""
    array = cube[target]
    data = np.asarray(array[...] if window is None else array[(slice(None), *window)], np.float32)
    if not np.isfinite(data).all() or data.min() < 0 or data.max() > 1:
        raise ConfigError(f"cube '{cube.name}': '{target}' must hold fractions in [0, 1]")
    return data


def read_training_label(
    cube, window: tuple[slice, slice, slice], corrected: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The label of a crop, corrections overriding ground truth, and a (d,) mask of labelled slices.

    ``corrected``: the cube's corrected slices, when the caller already knows them (saves reading the
    corrections' attributes for every crop)."""
    corrected = cube.corrected_slices if corrected is None else corrected
    zs = range(window[0].start, window[0].stop)
    truth = cube.label
    if truth is not None:
        label, labelled = truth[window], np.ones(len(zs), bool)
    else:
        shape = [w.stop - w.start for w in window]
        label, labelled = np.zeros(shape, np.uint8), np.zeros(len(zs), bool)
    inside = [z for z in corrected if z in zs]
    if inside:
        corrections = cube["corrections"]
        for z in inside:
            label[z - zs.start] = corrections[z, window[1], window[2]]
            labelled[z - zs.start] = True
    return label, labelled


class CropDataset(Dataset):
    """``samples`` random crops per epoch from the labelled (or corrected) cubes ``names`` of a store.

    Each item: {"image": (C, d, h, w) float32 normalised, "target": (K, d, h, w) float32,
    "labelled": (d,) bool (slices the losses may use), "cube": name}. ``target``: ``label`` or a soft-target
    array such as ``vote_fraction`` (crops are then centred where any volunteer voted). ``cube_weights``:
    how often each cube is drawn, relative to the others (None: all alike). ``unlabelled``: cubes without
    any label, ``unlabelled_share`` of the crops drawn from them (all slices marked unlabelled).
    """

    def __init__(
        self,
        store: str | Path,
        names: Sequence[str],
        crop: Sequence[int],
        samples: int,
        foreground_ratio: float = 0.66,
        augment: bool = True,
        seed: int = 0,
        target: str = "label",
        cube_weights: Sequence[float] | None = None,
        unlabelled: Sequence[str] = (),
        unlabelled_share: float = 0.0,
    ) -> None:
        self.store_path, self.names, self.crop, self.samples = str(store), list(names), tuple(crop), samples
        self.unlabelled, self.unlabelled_share = list(unlabelled), unlabelled_share if unlabelled else 0.0
        self.cube_p = None if cube_weights is None else np.asarray(cube_weights, float) / sum(cube_weights)
        self.foreground_ratio, self.seed, self.target = foreground_ratio, seed, check_target(target)
        self.augment = augmentations() if augment else None
        self._store: CubeStore | None = None
        self._foreground: dict[str, np.ndarray] = {}
        self._corrected_slices: dict[str, list[int]] = {}
        self._rng: np.random.Generator | None = None

    def __len__(self) -> int:
        return self.samples

    @property
    def store(self) -> CubeStore:
        if self._store is None:  # opened in each worker process, never pickled open
            self._store = CubeStore(self.store_path)
        return self._store

    @property
    def rng(self) -> np.random.Generator:
        """One generator per worker process, drawn from in sequence so every epoch sees new crops."""
        if self._rng is None:
            worker = get_worker_info()
            self._rng = np.random.default_rng([self.seed, 0 if worker is None else worker.id + 1])
        return self._rng

    def _foreground_voxels(self, name: str, label) -> np.ndarray:
        if name not in self._foreground:
            data = label[...]
            coords = np.argwhere(data > 0 if data.ndim == 3 else (data > 0).any(0))
            if len(coords) > 20000:
                coords = coords[np.random.default_rng(0).choice(len(coords), 20000, replace=False)]
            self._foreground[name] = coords
        return self._foreground[name]

    def _corrected(self, name: str, cube) -> list[int]:
        """A cube's corrected slices, read once per cube and worker (the store does not change in a run)."""
        if name not in self._corrected_slices:
            self._corrected_slices[name] = cube.corrected_slices
        return self._corrected_slices[name]

    def _labelled_crop(self, rng: np.random.Generator) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
        """A crop of a labelled (or corrected) cube, a share centred on foreground: image, target, and
        which slices are labelled."""
        n = len(self.names)
        name = self.names[rng.integers(n) if self.cube_p is None else rng.choice(n, p=self.cube_p)]
        cube = self.store[name]
        shape = cube.shape[1:]
        crop = _crop_size(self.crop, shape)
        soft = self.target != "label"
        truth = cube[self.target] if soft else cube.label
        corrected = [] if soft else self._corrected(name, cube)
        if truth is not None:
            fg = self._foreground_voxels(name, truth)
        else:  # only corrected slices are known: centre on one of them
            z = rng.choice(corrected)
            fg = np.argwhere(cube["corrections"][z] > 0)
            fg = (
                np.column_stack([np.full(len(fg), z), fg])
                if len(fg)
                else np.array([[z, *(s // 2 for s in shape[1:])]])
            )
        if len(fg) and (truth is None or rng.random() < self.foreground_ratio):
            centre = fg[rng.integers(len(fg))]
            jitter = [0 if truth is None and axis == 0 else rng.integers(-k // 4, k // 4 + 1)
                      for axis, k in enumerate(crop)]  # fmt: skip
            start = [
                int(np.clip(c - k // 2 + j, 0, s - k))
                for c, k, s, j in zip(centre, crop, shape, jitter, strict=True)
            ]
        else:
            start = _random_start(rng, crop, shape)
        window = tuple(slice(a, a + k) for a, k in zip(start, crop, strict=True))
        image = normalise(cube.image[(slice(None), *window)], cube.attrs)
        if soft:
            target, labelled = read_soft_target(cube, self.target, window), np.ones(crop[0], bool)
        else:
            label, labelled = read_training_label(cube, window, corrected)
            target = label_to_target(label, self.store.task, len(self.store.class_names))
        return name, image, target, labelled

    def _unlabelled_crop(self, rng: np.random.Generator) -> tuple[str, np.ndarray, np.ndarray, np.ndarray]:
        """A crop at a random place of an unlabelled cube: image, zero target, no slice labelled."""
        cube = self.store[self.unlabelled[rng.integers(len(self.unlabelled))]]
        crop = _crop_size(self.crop, cube.shape[1:])
        start = _random_start(rng, crop, cube.shape[1:])
        window = tuple(slice(a, a + k) for a, k in zip(start, crop, strict=True))
        target = np.zeros((n_targets(self.store.task, self.store.class_names), *crop), np.float32)
        image = normalise(cube.image[(slice(None), *window)], cube.attrs)
        return cube.name, image, target, np.zeros(crop[0], bool)

    def __getitem__(self, index: int) -> dict:
        rng = self.rng
        if self.unlabelled_share and rng.random() < self.unlabelled_share:
            name, image, target, labelled = self._unlabelled_crop(rng)
        else:
            name, image, target, labelled = self._labelled_crop(rng)
        item = {"image": image, "target": target}
        if self.augment is not None:
            self.augment.set_random_state(seed=int(rng.integers(2**31)))
            item = self.augment(item)
        return {
            "image": torch.as_tensor(np.asarray(item["image"]), dtype=torch.float32),
            "target": torch.as_tensor(np.asarray(item["target"]), dtype=torch.float32),
            "labelled": torch.from_numpy(labelled),
            "cube": name,
        }


class CubeDataset(Dataset):
    """Whole labelled cubes, normalised, for validation by sliding-window inference."""

    def __init__(self, store: str | Path, names: Sequence[str], target: str = "label") -> None:
        self.store_path, self.names, self.target = str(store), list(names), check_target(target)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict:
        store = CubeStore(self.store_path)
        cube = store[self.names[index]]
        image = normalise(cube.image[...], cube.attrs)
        if self.target != "label":
            target = read_soft_target(cube, self.target)
        else:
            target = label_to_target(cube.label[...], store.task, len(store.class_names))
        return {"image": torch.from_numpy(image), "target": torch.from_numpy(target), "cube": cube.name}


class CubeDataModule(L.LightningDataModule):
    """Crops for training and whole cubes for validation, from a store's train/val splits.

    Args:
        store: path of the cube store.
        crop_size: training crop (D, H, W); clipped to each cube (D = 1 for 2D images).
        batch_size: crops per batch.
        samples_per_epoch: crops drawn per training epoch.
        foreground_ratio: share of crops centred on a labelled voxel.
        num_workers: loader processes (0 reads in the training process).
        augment: random flips and intensity jitter.
        max_val_cubes: validate on at most this many val cubes (keeps epochs short).
        label_fraction: train on a seeded random share of the trainable train cubes (label-efficiency
            curves: 0.05, 0.1, 0.25 ...); at least one cube.
        seed: seed of the crop positions and of the label-fraction subset.
        target: ``label`` (masks) or a soft-target array of the cubes, e.g. ``vote_fraction`` (galaxy
            models trained on the fraction of volunteers who marked each pixel; use ``seg_loss: bce``
            or ``l1``).
        corrections_share: share of crops drawn from cubes holding volunteer corrections (0: every
            trainable cube alike). After a volunteer round a few dozen corrected slices sit among many
            labelled cubes; drawn like the rest, they shape a retraining little.
        unlabelled_share: share of crops drawn from train cubes with neither labels nor corrections (the
            volunteers' pool), whose predicted masks the discriminator learns to call fake (0: unused).
            Its verdict then tells the slices the labelled data does not cover from those it does.
    """

    def __init__(
        self,
        store: str,
        crop_size: tuple[int, int, int] = (16, 64, 64),
        batch_size: int = 2,
        samples_per_epoch: int = 64,
        foreground_ratio: float = 0.66,
        num_workers: int = 1,
        augment: bool = True,
        max_val_cubes: int = 4,
        label_fraction: float = 1.0,
        seed: int = 0,
        target: str = "label",
        corrections_share: float = 0.0,
        unlabelled_share: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_target(target)
        for name, share in (("corrections_share", corrections_share), ("unlabelled_share", unlabelled_share)):
            if not 0 <= share < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {share}")
        if unlabelled_share and target != "label":
            raise ConfigError("unlabelled_share works with data.target 'label' only")
        store_obj = CubeStore(store)  # fail here, with the store's own message, if the path is wrong
        self.task = store_obj.task
        self.in_channels = len(store_obj.channel_names)
        self.out_channels = n_targets(store_obj.task, store_obj.class_names)
        self.class_names = target_names(store_obj.task, store_obj.class_names)

    def setup(self, stage: str | None = None) -> None:
        store = CubeStore(self.hparams.store)
        target = self.hparams.target
        train = store.names(split="train")
        self.train_names = [n for n in train if is_trainable(store[n], target)]
        self.unlabelled_names = []
        if self.hparams.unlabelled_share:
            trainable = set(self.train_names)
            self.unlabelled_names = [n for n in train if n not in trainable]
            if not self.unlabelled_names:
                log.info("unlabelled_share: %s has no unlabelled train cubes; all crops labelled", store.path)
        fraction = self.hparams.label_fraction
        if not 0 < fraction <= 1:
            raise ConfigError(f"label_fraction must be in (0, 1], got {fraction}")
        if fraction < 1 and self.train_names:
            keep = max(1, round(fraction * len(self.train_names)))
            chosen = np.random.default_rng(self.hparams.seed).choice(
                len(self.train_names), keep, replace=False
            )
            self.train_names = [self.train_names[i] for i in sorted(chosen)]
        self.train_weights = self._weights(store)
        val = [n for n in store.names(split="val") if has_target(store[n], target)]
        self.val_names = val[: self.hparams.max_val_cubes]
        if not self.train_names:
            what = "labelled or corrected" if target == "label" else f"'{target}'"
            raise ConfigError(
                f"store '{store.path}' has no cubes with {what} in split 'train'; see `tcupgan info`"
            )
        if not self.val_names:
            raise ConfigError(
                f"store '{store.path}' has no labelled cubes in split 'val'; add some (--split val)"
            )

    def _weights(self, store: CubeStore) -> list[float] | None:
        """Per-cube draw weights giving corrected cubes ``corrections_share`` of the crops together."""
        share = self.hparams.corrections_share
        corrected = [bool(store[n].corrected_slices) for n in self.train_names] if share else []
        if not any(corrected) or all(corrected):
            return None
        n_corrected = sum(corrected)
        return [share / n_corrected if c else (1 - share) / (len(corrected) - n_corrected) for c in corrected]

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=workers,
            persistent_workers=workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        data = CropDataset(
            hp.store,
            self.train_names,
            hp.crop_size,
            hp.samples_per_epoch,
            hp.foreground_ratio,
            hp.augment,
            hp.seed,
            hp.target,
            self.train_weights,
            self.unlabelled_names,
            hp.unlabelled_share,
        )
        return self._loader(data, hp.batch_size, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self._loader(
            CubeDataset(self.hparams.store, self.val_names, self.hparams.target), 1, shuffle=False
        )
