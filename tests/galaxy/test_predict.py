"""Galaxy models: soft vote-fraction targets through training, and predictions on real DECaLS cutouts."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from tcupgan.data import CubeStore, synthesize
from tcupgan.errors import ConfigError, InputError
from tcupgan.galaxy.predict import predict_galaxies
from tcupgan.training import CubeDataModule, TCuPGAN
from tcupgan.training.module import write_checkpoint
from tests.conftest import quiet_trainer, shared

SMALL = {"widths": (4, 8, 16), "disc_width": 4, "disc_layers": 2, "seg_loss": "bce", "val_roi": (1, 64, 64)}


@pytest.fixture(scope="module")
def galaxies(tmp_path_factory):
    path = tmp_path_factory.mktemp("galaxy") / "g.zarr"
    synthesize("galaxy", path, n=10, seed=0, shape=(1, 64, 64))
    return path


@pytest.fixture(scope="module")
def trained(galaxies, tmp_path_factory):
    """A galaxy model trained for one short epoch on vote fractions, saved by Lightning."""
    data = CubeDataModule(
        str(galaxies), crop_size=(1, 64, 64), batch_size=4, samples_per_epoch=8, num_workers=0,
        target="vote_fraction",
    )  # fmt: skip
    model = TCuPGAN(data.in_channels, data.out_channels, data.class_names, task="multilabel", **SMALL)
    trainer = quiet_trainer(tmp_path_factory.mktemp("run"))
    trainer.fit(model, data)
    ckpt = tmp_path_factory.mktemp("ckpt") / "galaxy.ckpt"
    trainer.save_checkpoint(ckpt)
    return ckpt


def test_vote_fraction_targets_reach_the_loss_as_fractions(galaxies):
    data = CubeDataModule(
        str(galaxies), crop_size=(1, 64, 64), batch_size=4, samples_per_epoch=4, num_workers=0,
        augment=False, target="vote_fraction",
    )  # fmt: skip
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    target = batch["target"]
    assert target.shape == (4, 2, 1, 64, 64)
    soft = (target > 0) & (target < 1)
    assert soft.any(), "vote fractions between 0 and 1 must survive to the loss"
    cube = CubeStore(galaxies)[batch["cube"][0]]
    votes = torch.from_numpy(cube["vote_fraction"][...])
    assert torch.equal(target[0], votes)  # whole 64 px cutouts: the crop is the cube
    with pytest.raises(ConfigError, match="not a training target"):
        CubeDataModule(str(galaxies), target="prediction")


def test_soft_target_out_of_range_is_refused(galaxies, tmp_path):
    store = CubeStore(galaxies)
    name = store.names(split="train")[0]
    bad = tmp_path / "bad.zarr"
    copy = CubeStore.create(bad, task=store.task, channel_names=store.channel_names,
                            class_names=store.class_names)  # fmt: skip
    votes = store[name]["vote_fraction"][...] * 3
    for split in ("train", "val"):
        copy.write_cube(f"{split}-{name}", store[name].image[...], store[name].label[...],
                        attrs={"split": split}, arrays={"vote_fraction": votes})  # fmt: skip
    data = CubeDataModule(str(bad), crop_size=(1, 64, 64), samples_per_epoch=2, num_workers=0,
                          target="vote_fraction")  # fmt: skip
    data.setup("fit")
    with pytest.raises(ConfigError, match="fractions in"):
        next(iter(data.train_dataloader()))


def test_predict_real_decals_cutouts(trained, tmp_path):
    folder = shared("galaxy-decals-sample")
    images = sorted(folder.glob("*.png"))[:3]
    out = tmp_path / "masks"
    catalogue = predict_galaxies(trained, images, out, pixel_scale=0.262)
    with open(catalogue, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == [p.stem for p in images]
    for row, path in zip(rows, images, strict=True):
        assert 0 <= float(row["realness"]) <= 1 and 0 <= float(row["arm_fraction"]) <= 1
        assert float(row["bar_length_arcsec"]) == pytest.approx(float(row["bar_length_px"]) * 0.262)
        masks = np.load(out / f"{path.stem}_masks.npy")
        assert masks.shape == (2, 424, 424) and masks.min() >= 0 and masks.max() <= 1
        assert Image.open(out / f"{path.stem}_bar.png").size == (424, 424)
        assert (out / f"{path.stem}_overlay.png").stat().st_size > 10_000
    again = predict_galaxies(trained, [folder], out)  # a folder; re-running rewrites the same files
    with open(again, newline="") as f:
        assert len(list(csv.DictReader(f))) == len(list(folder.glob("*.png")))


def test_galaxy_predict_refuses_wrong_models_and_inputs(trained, tmp_path):
    one_class = write_checkpoint(TCuPGAN(3, 1, ["fg"], widths=(4, 8)), tmp_path / "one.ckpt")
    image = tmp_path / "g.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    with pytest.raises(InputError, match="two \\(spiral arm, bar\\)"):
        predict_galaxies(one_class, [image], tmp_path / "out")
    grey = tmp_path / "grey.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(grey)
    with pytest.raises(InputError, match="expects 3"):
        predict_galaxies(trained, [grey], tmp_path / "out")
    with pytest.raises(InputError, match="does not exist"):
        predict_galaxies(trained, [tmp_path / "missing.png"], tmp_path / "out")
