from pathlib import Path

import lightning as L
import pytest
import torch

from tcupgan.data import synthesize
from tcupgan.demo import DEMO_CONFIG
from tcupgan.errors import ConfigError
from tcupgan.training import CubeDataModule, TCuPGAN
from tcupgan.training.averaging import TailAveraging
from tcupgan.training.cli import fit_config
from tests.conftest import SMALL_CROPS, quiet_trainer


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("avg") / "fc.zarr"
    synthesize("fatchecker", path, n=3, seed=0, shape=(8, 48, 48))
    return path


class StepWeights(L.Callback):
    """The generator's weights after every training step, per epoch."""

    def __init__(self) -> None:
        self.seen: dict[int, list[dict[str, torch.Tensor]]] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        weights = {k: v.detach().clone() for k, v in pl_module.generator.state_dict().items()}
        self.seen.setdefault(trainer.current_epoch, []).append(weights)


def generator(state: dict) -> dict:
    return {k.removeprefix("generator."): v for k, v in state.items() if k.startswith("generator.")}


@pytest.mark.slow
def test_the_last_epochs_are_averaged_and_checkpoints_before_them_hold_the_trained_weights(store, tmp_path):
    data = CubeDataModule(str(store), crop_size=(8, 32, 32), batch_size=2, samples_per_epoch=6, num_workers=0)
    model = TCuPGAN(data.in_channels, data.out_channels, widths=(4, 8), disc_width=4, disc_layers=2)
    steps = StepWeights()
    every = L.pytorch.callbacks.ModelCheckpoint(tmp_path, "{epoch}", save_top_k=-1)
    trainer = quiet_trainer(
        tmp_path, max_epochs=4, limit_val_batches=0, callbacks=[TailAveraging(tail=0.5), steps, every]
    )
    trainer.fit(model, data)

    tail = steps.seen[2] + steps.seen[3]  # epochs 2 and 3 of 4, three steps each
    assert len(tail) == 6
    mean = {k: torch.stack([w[k] for w in tail]).float().mean(0) for k in tail[0]}
    for k, v in model.generator.state_dict().items():  # what training hands on: the average
        assert torch.allclose(v, mean[k], atol=1e-6), k
    final = torch.load(tmp_path / "epoch=3.ckpt", weights_only=False)
    assert all(torch.allclose(v, mean[k], atol=1e-6) for k, v in generator(final["state_dict"]).items())
    current = generator(final["current_model_state"])  # what a resumed fit goes on from: the last step
    assert all(torch.equal(v, tail[-1][k]) for k, v in current.items())
    assert any(not torch.allclose(current[k], mean[k]) for k in mean)

    # before the tail nothing is averaged: the checkpoint holds that epoch's trained weights, not the
    # untouched start that Lightning's callback would put there
    early = torch.load(tmp_path / "epoch=1.ckpt", weights_only=False)
    assert "current_model_state" not in early
    assert all(torch.equal(v, steps.seen[1][-1][k]) for k, v in generator(early["state_dict"]).items())


@pytest.mark.slow
def test_fit_takes_it_from_the_command_line(store, tmp_path):
    plain = fit_config(DEMO_CONFIG, store, tmp_path / "plain", epochs=2, samples=4, extra=SMALL_CROPS)
    append = ["--trainer.callbacks+=tcupgan.training.averaging.TailAveraging", "--trainer.callbacks.tail=1"]
    averaged = fit_config(
        DEMO_CONFIG, store, tmp_path / "avg", epochs=2, samples=4, extra=[*SMALL_CROPS, *append]
    )
    assert "current_model_state" not in torch.load(plain, weights_only=False)
    ckpt = torch.load(averaged, weights_only=False)
    assert ckpt["epoch"] == 1 and "current_model_state" in ckpt
    assert sorted(p.name for p in Path(averaged).parent.glob("*.ckpt")) == ["best-epoch=01.ckpt", "last.ckpt"]


@pytest.mark.parametrize("tail", [0, 1.5])
def test_a_tail_outside_0_1_is_refused(tail):
    with pytest.raises(ConfigError, match="share of epochs"):
        TailAveraging(tail=tail)
