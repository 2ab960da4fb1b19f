"""Training on volunteer corrections: they override labels, and cubes with only corrected slices train
with losses restricted to those slices."""

from collections import Counter

import numpy as np
import pytest
import torch

from tcupgan.data import CubeStore, synthesize
from tcupgan.errors import ConfigError
from tcupgan.training import CubeDataModule, TCuPGAN
from tcupgan.training.data import CropDataset
from tests.conftest import SMALL_MODEL, quiet_trainer


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Synthetic cubes; 'volunteer' cube: no ground truth, corrected slices 2 and 9 only; one labelled
    cube with a correction that overrides its label on slice 3."""
    path = tmp_path_factory.mktemp("corr") / "fc.zarr"
    synthesize("fatchecker", path, n=4, seed=0, shape=(12, 40, 40))
    store = CubeStore(path, mode="r+")
    donor = store[store.names(split="train")[0]]
    store.write_cube("volunteer", donor.image[...], None, attrs={"split": "train"})
    corrections = np.zeros((12, 40, 40), np.uint8)
    corrections[2, 10:20, 10:20] = corrections[9, 5:15, 20:30] = 1
    slices = {"2": {"subject": "1"}, "9": {"subject": "2"}}
    store.write_array("volunteer", "corrections", corrections, attrs={"slices": slices})
    override = np.zeros((12, 40, 40), np.uint8)
    override[3, :8, :8] = 1
    store.write_array(donor.name, "corrections", override, attrs={"slices": {"3": {"subject": "3"}}})
    return path, donor.name


def test_crops_of_a_corrected_only_cube_hold_corrected_slices_and_say_so(store):
    path, donor = store
    data = CropDataset(path, ["volunteer"], (6, 32, 32), samples=30, augment=False)
    for i in range(30):
        item = data[i]
        labelled = item["labelled"].numpy()
        assert 1 <= labelled.sum() <= 2  # the crop holds slice 2 or 9 (or both), and no other
        target = item["target"][0].numpy()
        assert target[~labelled].sum() == 0 and target[labelled].sum() > 0
    full = CropDataset(path, [donor], (12, 40, 40), samples=1, augment=False)[0]
    assert full["labelled"].all()
    np.testing.assert_array_equal(
        full["target"][0, 3].numpy() > 0, np.pad(np.ones((8, 8)), ((0, 32), (0, 32))) > 0
    )


def test_losses_ignore_unlabelled_slices(store):
    path, _ = store
    model = TCuPGAN(1, 1, ["fg"], **SMALL_MODEL)
    logits = torch.randn(2, 1, 6, 16, 16, requires_grad=True)
    target = (torch.rand(2, 1, 6, 16, 16) > 0.5).float()
    slices = torch.zeros(2, 6, dtype=torch.bool)
    slices[0, 1] = slices[1, 4] = True
    model._seg_loss(logits, target, slices).backward()
    grad = logits.grad.abs().sum(dim=(1, 3, 4))
    assert (grad[~slices] == 0).all() and (grad[slices] > 0).all()
    d_logits = torch.randn(2, 1, 6, 4, 4, requires_grad=True)
    model._bce(d_logits, real=True, slices=slices).backward()
    d_grad = d_logits.grad.abs().sum(dim=(1, 3, 4))
    assert (d_grad[~slices] == 0).all() and (d_grad[slices] > 0).all()


@pytest.mark.slow
def test_fit_on_corrections_alone(store, tmp_path):
    """A train split whose only cube has corrected slices and no ground truth trains end to end."""
    path, _ = store
    only = tmp_path / "only.zarr"
    source = CubeStore(path)
    target = CubeStore.create(
        only, task="binary", channel_names=source.channel_names, class_names=source.class_names
    )
    cube = source["volunteer"]
    target.write_cube("volunteer", cube.image[...], None, attrs={"split": "train"})
    target.write_array(
        "volunteer", "corrections", cube["corrections"][...], attrs=dict(cube["corrections"].attrs)
    )
    val = source[source.names(split="val")[0]]
    target.write_cube("val", val.image[...], val.label[...], attrs={"split": "val"})
    data = CubeDataModule(str(only), crop_size=(6, 32, 32), batch_size=2, samples_per_epoch=4, num_workers=0)
    model = TCuPGAN(data.in_channels, data.out_channels, data.class_names, **SMALL_MODEL)
    before = {k: v.clone() for k, v in model.generator.state_dict().items()}
    trainer = quiet_trainer(tmp_path)
    trainer.fit(model, data)
    assert data.train_names == ["volunteer"]
    assert torch.isfinite(trainer.callback_metrics["train/seg_loss_epoch"])
    assert any(not torch.equal(before[k], v) for k, v in model.generator.state_dict().items())


def test_corrections_share_sets_how_often_corrected_cubes_are_drawn(store):
    path, donor = store

    def drawn(share: float) -> float:
        data = CubeDataModule(str(path), crop_size=(6, 32, 32), samples_per_epoch=400, num_workers=0,
                              augment=False, corrections_share=share)  # fmt: skip
        data.setup("fit")
        crops = CropDataset(
            path, data.train_names, (6, 32, 32), 400, augment=False, cube_weights=data.train_weights
        )
        counts = Counter(crops[i]["cube"] for i in range(400))
        return (counts["volunteer"] + counts[donor]) / 400, len(data.train_names)

    uniform, n = drawn(0.0)
    assert n == 4 and abs(uniform - 2 / n) < 0.1  # two of four train cubes hold corrections
    favoured, _ = drawn(0.9)
    assert abs(favoured - 0.9) < 0.05
    with pytest.raises(ConfigError, match="corrections_share"):
        CubeDataModule(str(path), corrections_share=1.0)


@pytest.mark.slow
def test_unlabelled_cubes_give_a_share_of_crops_that_only_the_discriminator_learns_from(store, tmp_path):
    """Train cubes with neither labels nor corrections (the volunteers' pool) are drawn at
    ``unlabelled_share``, every slice unlabelled; a batch of them costs the generator no segmentation loss
    and the discriminator no real term, and a fit with them runs end to end."""
    path, donor = store
    mixed = tmp_path / "mixed.zarr"
    source = CubeStore(path)
    target = CubeStore.create(
        mixed, task="binary", channel_names=source.channel_names, class_names=source.class_names
    )
    for name, split in ((donor, "train"), (source.names(split="val")[0], "val")):
        target.write_cube(name, source[name].image[...], source[name].label[...], attrs={"split": split})
    target.write_cube("pool", source[donor].image[...][:, ::-1], None, attrs={"split": "train"})

    def module(share: float) -> CubeDataModule:
        return CubeDataModule(str(mixed), crop_size=(6, 32, 32), batch_size=2, samples_per_epoch=200,
                              num_workers=0, augment=False, unlabelled_share=share)  # fmt: skip

    data = module(0.3)
    data.setup("fit")
    assert data.train_names == [donor] and data.unlabelled_names == ["pool"]
    crops = data.train_dataloader().dataset
    items = [crops[i] for i in range(len(crops))]
    pool = [item for item in items if item["cube"] == "pool"]
    assert 0.2 < len(pool) / len(items) < 0.4
    assert all(not item["labelled"].any() and item["target"].sum() == 0 for item in pool)
    assert all(item["labelled"].all() for item in items if item["cube"] != "pool")
    plain = module(0.0)
    plain.setup("fit")
    crops = plain.train_dataloader().dataset
    assert plain.unlabelled_names == [] and {crops[i]["cube"] for i in range(len(crops))} == {donor}

    model = TCuPGAN(1, 1, ["fg"], **SMALL_MODEL)
    none = torch.zeros(2, 6, dtype=torch.bool)
    logits = torch.randn(2, 1, 6, 16, 16, requires_grad=True)
    d_logits = torch.randn(2, 1, 6, 4, 4, requires_grad=True)
    losses = model._seg_loss(logits, torch.zeros_like(logits), none) + model._bce(d_logits, True, none)
    losses.backward()
    assert losses.item() == 0 and logits.grad.abs().sum() == 0 and d_logits.grad.abs().sum() == 0

    fit = module(0.5)
    fit.hparams.samples_per_epoch = 8
    trainer = quiet_trainer(tmp_path)
    trainer.fit(TCuPGAN(1, 1, ["fg"], **SMALL_MODEL), fit)
    assert all(
        torch.isfinite(trainer.callback_metrics[k]) for k in ("train/seg_loss_epoch", "train/d_loss_epoch")
    )
    with pytest.raises(ConfigError, match="unlabelled_share"):
        CubeDataModule(str(mixed), unlabelled_share=1.0)
    with pytest.raises(ConfigError, match="unlabelled_share"):
        CubeDataModule(str(mixed), unlabelled_share=0.5, target="vote_fraction")
