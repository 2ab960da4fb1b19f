"""Transfer to a new project: weights that fit are loaded, the stem adapted, the rest listed fresh."""

from pathlib import Path

import pytest
import torch

from tcupgan.data import synthesize
from tcupgan.errors import ConfigError
from tcupgan.inference.predict import load_model
from tcupgan.training import CubeDataModule, TCuPGAN
from tcupgan.training.module import write_checkpoint
from tcupgan.training.transfer import STEM, transfer_weights
from tests.conftest import SMALL_MODEL, quiet_trainer

SMALL = {k: v for k, v in SMALL_MODEL.items() if k != "val_roi"}


def test_one_channel_3d_model_into_three_band_2d_model(tmp_path):
    source = TCuPGAN(1, 1, ["droplet"], **SMALL)
    ckpt = write_checkpoint(source, tmp_path / "em.ckpt")
    target = TCuPGAN(3, 2, ["kelp", "cloud"], **SMALL)
    report = transfer_weights(target, ckpt)
    assert report.adapted == [f"{STEM} (1 → 3 input channels)"]
    fresh = " ".join(report.fresh)
    assert "generator.head.weight" in fresh and "discriminator.net.0.weight" in fresh
    old, new = source.state_dict(), target.state_dict()
    torch.testing.assert_close(new[STEM].sum(dim=1), old[STEM].sum(dim=1))  # same response to a flat image
    for name in report.loaded:
        assert torch.equal(old[name], new[name])
    assert target(torch.randn(1, 3, 1, 32, 32)).shape == (1, 2, 1, 32, 32)  # 2D: a cube of depth 1


def test_wrong_files_are_refused_and_bare_generators_accepted(tmp_path):
    model = TCuPGAN(1, 1, ["fg"], **SMALL)
    torch.save(model.discriminator.state_dict(), tmp_path / "disc.pt")
    with pytest.raises(ConfigError, match="no TCuP-GAN generator weights"):
        transfer_weights(model, tmp_path / "disc.pt")
    (tmp_path / "notes.txt").write_text("not weights")
    with pytest.raises(ConfigError, match="not a PyTorch checkpoint"):
        transfer_weights(model, tmp_path / "notes.txt")
    torch.save(TCuPGAN(1, 1, ["fg"], **SMALL).generator.state_dict(), tmp_path / "encoder.pt")
    report = transfer_weights(model, tmp_path / "encoder.pt", reset_discriminator=True)
    assert all(n.startswith("generator.") for n in report.loaded)
    assert all(n.startswith("discriminator.") for n in report.fresh)


def test_checkpoints_of_a_torch_compile_wrapped_generator_still_load(tmp_path):
    """Checkpoints written before compile went in place name generator tensors ``generator._orig_mod.*``."""
    model = TCuPGAN(1, 1, ["fg"], **SMALL)
    payload = torch.load(write_checkpoint(model, tmp_path / "plain.ckpt"), weights_only=False)
    payload["state_dict"] = {
        k.replace("generator.", "generator._orig_mod.", 1): v for k, v in payload["state_dict"].items()
    }
    torch.save(payload, tmp_path / "compiled.ckpt")
    loaded = load_model(tmp_path / "compiled.ckpt").state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(loaded[name], value), name
    report = transfer_weights(TCuPGAN(1, 1, ["fg"], **SMALL), tmp_path / "compiled.ckpt")
    assert not report.fresh and not report.adapted


def test_an_older_generator_into_the_default_one_warns_how_to_keep_its_network(tmp_path, caplog):
    paper = write_checkpoint(TCuPGAN(1, 1, ["fg"], **SMALL, level_conv=False), tmp_path / "paper.ckpt")
    report = transfer_weights(TCuPGAN(1, 1, ["fg"], **SMALL), paper)
    assert any(".encoder_convs." in name for name in report.fresh)
    assert "--model.level_conv false" in caplog.text
    caplog.clear()
    report = transfer_weights(TCuPGAN(1, 1, ["fg"], **SMALL, level_conv=False), paper)
    assert not report.fresh and "level_conv" not in caplog.text
    concatenated = TCuPGAN(1, 1, ["fg"], **SMALL, skip_merge="concatenate")
    concatenated = write_checkpoint(concatenated, tmp_path / "concatenated.ckpt")
    report = transfer_weights(TCuPGAN(1, 1, ["fg"], **SMALL), concatenated)
    assert any(".decoders." in name for name in report.fresh)
    assert "add --model.skip_merge concatenate to" in caplog.text and "level_conv" not in caplog.text


@pytest.mark.slow
def test_frozen_encoder_stays_put_while_the_rest_learns(tmp_path):
    store = tmp_path / "fc.zarr"
    synthesize("fatchecker", store, n=4, seed=0, shape=(8, 32, 32))
    ckpt = write_checkpoint(TCuPGAN(1, 1, ["fg"], **SMALL), tmp_path / "src.ckpt")
    data = CubeDataModule(
        str(store), crop_size=(8, 32, 32), samples_per_epoch=4, num_workers=0, label_fraction=0.34
    )
    model = TCuPGAN(1, 1, ["fg"], **SMALL, init_from=str(ckpt), freeze="encoder", pretrained_lr_scale=0.1)
    trainer = quiet_trainer(tmp_path, limit_val_batches=0)
    source = torch.load(ckpt, weights_only=False)["state_dict"]
    trainer.fit(model, data)
    after = model.state_dict()
    encoder = [k for k in after if k.startswith(("generator.encoders.", "generator.encoder_convs."))]
    assert any("encoder_convs" in k for k in encoder)
    assert all(torch.equal(after[k], source[k]) for k in encoder)
    assert not torch.equal(after["generator.head.weight"], source["generator.head.weight"])
    assert len(data.train_names) == 1  # a third of the three train cubes
    lrs = sorted(group["initial_lr"] for group in trainer.optimizers[0].param_groups)  # the schedule's start
    assert lrs == pytest.approx([model.hparams.lr_g * 0.1, model.hparams.lr_g])


class _Payload:
    """What a crafted checkpoint smuggles in: unpickling it would run code."""

    def __reduce__(self):
        return (Path.touch, (Path(_Payload.target),))


def test_a_crafted_checkpoint_is_refused_without_running_its_code(tmp_path):
    """``finetune --from`` and ``model.init_from`` read weights only: an object pickled into a
    checkpoint is refused, not executed."""
    from tcupgan.training.transfer import read_weights

    _Payload.target = str(tmp_path / "ran")
    crafted = tmp_path / "crafted.ckpt"
    state = TCuPGAN(1, 1, ["fg"], **SMALL).state_dict()
    torch.save({"state_dict": state, "hook": _Payload()}, crafted)
    with pytest.raises(ConfigError, match="loads safely"):
        read_weights(crafted)
    assert not (tmp_path / "ran").exists()
    plain = write_checkpoint(TCuPGAN(1, 1, ["fg"], **SMALL), tmp_path / "plain.ckpt")
    assert any(k.startswith("generator.") for k in read_weights(plain))  # real checkpoints still load
