import os
import shutil
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml

from tcupgan.data import CubeStore, synthesize
from tcupgan.data.transforms import label_to_target
from tcupgan.demo import DEMO_CONFIG
from tcupgan.errors import ConfigError, TrainingDivergedError
from tcupgan.inference import predict_store
from tcupgan.training import CubeDataModule, TCuPGAN
from tcupgan.training.cli import fit_config
from tcupgan.training.module import make_seg_loss
from tests.conftest import SMALL_CROPS, quiet_trainer
from tests.conftest import SMALL_MODEL as SMALL

SMALL_MODEL = {**SMALL, "widths": (4, 8, 16)}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("train") / "fc.zarr"
    synthesize("fatchecker", path, n=4, seed=0, shape=(8, 48, 48))
    return path


def _setup(store, **data_kwargs):
    data = CubeDataModule(
        str(store), crop_size=(8, 32, 32), batch_size=2, samples_per_epoch=8, num_workers=0, **data_kwargs
    )
    model = TCuPGAN(data.in_channels, data.out_channels, data.class_names, **SMALL_MODEL)
    return data, model


_trainer = quiet_trainer


def test_targets_from_labels():
    label = np.array([[[0, 1, 2, 3]]], np.uint8)
    brats = label_to_target(label, "brats", 3)
    np.testing.assert_array_equal(brats[:, 0, 0], [[0, 0, 0, 1], [0, 1, 0, 1], [0, 1, 1, 1]])  # ET, TC, WT
    multi = label_to_target(label, "multilabel", 2)
    np.testing.assert_array_equal(multi[:, 0, 0], [[0, 1, 0, 1], [0, 0, 1, 1]])


@pytest.mark.parametrize("name", ["dicece", "dicefocal", "focal_tversky", "l1", "bce"])
def test_seg_losses_accept_soft_targets(name):
    loss = make_seg_loss(name)
    logits = torch.zeros(1, 2, 1, 8, 8, requires_grad=True)
    fractions = torch.rand(1, 2, 1, 8, 8)  # vote fractions, not 0/1
    value = loss(logits, fractions)
    value.backward()
    assert torch.isfinite(value) and logits.grad.abs().sum() > 0


def test_optimisation_steps_lower_generator_loss(store):
    data, model = _setup(store)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].shape == (2, 1, 8, 32, 32) and batch["target"].shape == (2, 1, 8, 32, 32)
    opt = torch.optim.Adam(model.generator.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = model.seg_loss(model.generator(batch["image"]), batch["target"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


class _LearningRates(L.Callback):
    """The (generator, discriminator) learning rates each training step used."""

    def __init__(self) -> None:
        self.used: list[tuple[float, ...]] = []

    def on_train_batch_start(self, trainer, *args) -> None:
        self.used.append(tuple(o.param_groups[0]["lr"] for o in trainer.optimizers))


@pytest.mark.parametrize("limits", [{"max_epochs": 2}, {"max_epochs": -1, "max_time": {"seconds": 3}}])
def test_learning_rates_anneal_to_zero_over_whichever_limit_ends_the_run(store, tmp_path, limits):
    """The default ``lr_schedule=poly``: each step's learning rates are the start's x (1 - share of the run
    done) ** 0.9, the run counted in epochs or, under a wall-clock budget, in seconds; 0 as it ends."""
    with pytest.raises(ConfigError, match="lr_schedule"):
        TCuPGAN(1, 1, lr_schedule="cosine")
    data, model = _setup(store)
    rates = _LearningRates()
    trainer = _trainer(tmp_path, callbacks=[rates], **limits)
    trainer.fit(model, data)
    generator, discriminator = (np.array(r) for r in zip(*rates.used, strict=True))
    assert (generator[0], discriminator[0]) == (model.hparams.lr_g, model.hparams.lr_d)
    assert np.all(np.diff(generator) < 0) and np.allclose(discriminator / generator, 0.1)
    if "max_time" not in limits:  # 2 epochs of 4 steps
        assert np.allclose(generator, 1e-3 * (1 - np.arange(8) / 8) ** 0.9)
    assert [o.param_groups[0]["lr"] for o in trainer.optimizers] == [0.0, 0.0]


def test_the_papers_step_decay_multiplies_the_learning_rates_every_few_epochs(store, tmp_path):
    data = CubeDataModule(str(store), crop_size=(8, 32, 32), batch_size=2, samples_per_epoch=8, num_workers=0)
    model = TCuPGAN(1, 1, **SMALL_MODEL, lr_schedule="step", lr_decay=0.5, lr_decay_every=1)
    rates = _LearningRates()
    _trainer(tmp_path, callbacks=[rates], max_epochs=2).fit(model, data)
    assert [g for g, _d in rates.used] == [1e-3] * 4 + [5e-4] * 4


@pytest.mark.slow
def test_fit_logs_metrics_figures_and_resumes_from_checkpoint(store, tmp_path):
    data, model = _setup(store)
    logger = L.pytorch.loggers.CSVLogger(tmp_path)
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = _trainer(tmp_path, max_epochs=2, logger=logger, callbacks=[ckpt])
    before = {k: v.clone() for k, v in model.generator.state_dict().items()}
    trainer.fit(model, data)
    after = model.generator.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    metrics = trainer.callback_metrics
    for key in ("val/dice", "val/dice_lipid_droplet", "val/d_real", "val/d_fake", "train/d_loss_epoch"):
        assert key in metrics and torch.isfinite(metrics[key]), key
    assert sorted(p.name for p in (tmp_path / "lightning_logs" / "version_0" / "val_figures").iterdir()) == [
        "epoch000.png",
        "epoch001.png",
    ]
    steps = trainer.global_step
    assert steps == 2 * 4 * 2  # 2 epochs x 4 batches x (generator + discriminator step)

    data2, model2 = _setup(store)
    resumed = _trainer(tmp_path, max_epochs=3)
    resumed.fit(model2, data2, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert resumed.current_epoch == 3 and resumed.global_step == steps + 8
    sched = resumed.lr_scheduler_configs[0].scheduler
    assert sched.last_epoch == 3 * 4  # the learning-rate schedule resumed too, stepped after every batch


@pytest.mark.slow
def test_critic_calibration_trains_the_discriminator_alone_and_last_ckpt_is_the_last_epoch(
    store, tmp_path, caplog
):
    """``--model.freeze generator`` from a finished run: the generator (and so val/dice) stays put while
    the discriminator learns. With val/dice flat the best checkpoint is the first epoch: last.ckpt must
    still be the last one (Lightning 2.6's ``save_last`` copied the best), and predict scores with it."""
    with pytest.raises(ConfigError, match="init_from"):
        TCuPGAN(1, 1, freeze="generator")
    run = {"samples": 4, "validate_every": 1}
    base = fit_config(DEMO_CONFIG, store, tmp_path / "base", epochs=1, **run, extra=SMALL_CROPS)
    calibrate = ["--model.init_from", base, "--model.freeze", "generator"]
    critic = fit_config(
        DEMO_CONFIG, store, tmp_path / "critic", epochs=3, **run, extra=[*SMALL_CROPS, *calibrate]
    )
    ckpts = {p.name: torch.load(p, weights_only=False) for p in Path(critic).parent.glob("*.ckpt")}
    assert sorted(ckpts) == ["best-epoch=00.ckpt", "last.ckpt"]
    assert "copy of the best checkpoint" not in caplog.text  # the configs' last.ckpt is the last epoch
    assert ckpts["last.ckpt"]["epoch"] == 2 and ckpts["best-epoch=00.ckpt"]["epoch"] == 0
    first = torch.load(base, weights_only=False)["state_dict"]
    last = ckpts["last.ckpt"]["state_dict"]
    assert all(torch.equal(first[k], last[k]) for k in first if k.startswith("generator."))
    disc = [k for k in first if k.startswith("discriminator.") and k.endswith("weight")]
    assert all(not torch.equal(first[k], last[k]) for k in disc)
    best = ckpts["best-epoch=00.ckpt"]["state_dict"]
    assert any(not torch.equal(best[k], last[k]) for k in disc)
    # resumed (--ckpt_path last: the README's command) it goes on at epoch 3 with its one optimizer, in a
    # new version folder; the generator stays unchanged
    resume = [*SMALL_CROPS, *calibrate, "--ckpt_path", "last"]
    resumed_path = fit_config(DEMO_CONFIG, store, tmp_path / "critic", epochs=4, **run, extra=resume)
    version = Path(resumed_path).parent.parent
    assert version.name == "version_1"
    epochs = np.loadtxt(version / "metrics.csv", delimiter=",", skiprows=1, usecols=0)
    assert set(epochs.tolist()) == {3}  # only the one new epoch was trained, not a fresh start at 0
    resumed = torch.load(resumed_path, weights_only=False)
    assert resumed["epoch"] == 3 and len(resumed["optimizer_states"]) == 1
    assert all(torch.equal(first[k], resumed["state_dict"][k]) for k in first if k.startswith("generator."))
    assert all(not torch.equal(last[k], resumed["state_dict"][k]) for k in disc)

    cube = "fatchecker-s0-0000"
    for name, ckpt in (("before.zarr", base), ("after.zarr", critic)):
        shutil.copytree(store, tmp_path / name)
        predict_store(ckpt, tmp_path / name, cubes=[cube])
    before, after = CubeStore(tmp_path / "before.zarr")[cube], CubeStore(tmp_path / "after.zarr")[cube]
    assert np.array_equal(before["prediction"][...], after["prediction"][...])
    assert not np.allclose(before["slice_realness"][...], after["slice_realness"][...])


@pytest.mark.slow
def test_a_config_whose_last_ckpt_would_be_the_best_is_warned_about(store, tmp_path, caplog):
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    best, _last = config["trainer"]["callbacks"]
    best["init_args"]["save_last"] = True  # the configs before 2026-11-24
    config["trainer"]["callbacks"] = [best]
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="filename: last"):
        fit_config(tmp_path / "old.yaml", store, tmp_path / "run", epochs=1, samples=2, extra=SMALL_CROPS)
    assert "copy of the best checkpoint" in caplog.text


@pytest.mark.slow
def test_gpu_switches_run_on_cpu_and_keep_checkpoints_portable(store, tmp_path, monkeypatch):
    """bf16-mixed and compile are for GPUs; here they must at least train, and a compiled run's checkpoint
    must load into predict (and finetune) like any other: same keys, no compile on load."""
    from tcupgan.inference.predict import load_model

    monkeypatch.setattr(torch._dynamo.config, "disable", True)  # inductor on 2 cores takes minutes
    data = CubeDataModule(str(store), crop_size=(8, 32, 32), batch_size=2, samples_per_epoch=8, num_workers=0)
    model = TCuPGAN(1, 1, compile=True, **SMALL_MODEL)
    before = {k: v.clone() for k, v in model.generator.state_dict().items()}
    trainer = _trainer(tmp_path, precision="bf16-mixed", limit_val_batches=1)
    trainer.fit(model, data)
    assert model.generator._compiled_call_impl is not None  # the switch really compiled ...
    assert model.state_dict().keys() == TCuPGAN(1, 1, **SMALL_MODEL).state_dict().keys()  # ... in place
    after = model.generator.state_dict()
    assert all(v.dtype == torch.float32 for v in after.values())  # mixed: weights stay float32
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(
        torch.isfinite(trainer.callback_metrics[k]) for k in ("train/g_loss", "train/d_loss", "val/dice")
    )
    trainer.save_checkpoint(tmp_path / "compiled.ckpt")
    loaded = load_model(tmp_path / "compiled.ckpt")
    assert loaded.generator._compiled_call_impl is None and not loaded.hparams.compile
    torch.testing.assert_close(loaded.generator.state_dict(), after)


@pytest.mark.parametrize(
    "missing, generator",
    [
        (["level_conv", "skip_merge"], {"level_conv": False, "skip_merge": "concatenate"}),  # the paper's
        (["skip_merge"], {"level_conv": True, "skip_merge": "concatenate"}),
    ],
)
def test_a_checkpoint_from_before_a_default_changed_predicts_as_it_was_trained(tmp_path, missing, generator):
    """Checkpoints written before ``level_conv`` or ``skip_merge`` existed hold the generator of their
    day: they load as such."""
    from tcupgan.inference.predict import load_model
    from tcupgan.training.module import write_checkpoint

    torch.manual_seed(0)
    old = TCuPGAN(1, 1, **generator, **SMALL_MODEL).eval()
    path = write_checkpoint(old, tmp_path / "old.ckpt")
    checkpoint = torch.load(path, weights_only=False)
    for name in missing:  # as an older tcupgan wrote it
        del checkpoint["hyper_parameters"][name]
    torch.save(checkpoint, path)
    loaded = load_model(path, "cpu")
    x = torch.randn(1, 1, 2, 32, 32)
    assert {name: loaded.hparams[name] for name in generator} == generator
    torch.testing.assert_close(loaded(x), old(x))
    current = write_checkpoint(TCuPGAN(1, 1, **SMALL_MODEL), tmp_path / "new.ckpt")
    assert load_model(current, "cpu").generator.skip_merge == "add"
    # `fit --ckpt_path old.ckpt --model.compile true`: the rebuilt generator is compiled as the first was
    resumed = TCuPGAN(1, 1, compile=True, **SMALL_MODEL)
    resumed.configure_model()
    resumed.on_load_checkpoint(checkpoint)
    assert resumed.generator.skip_merge == "concatenate" and resumed.generator._compiled_call_impl is not None


def test_nan_in_batch_is_caught(store, tmp_path):
    data, model = _setup(store)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    batch["image"][0, 0, 2, 3, 3] = float("nan")
    trainer = _trainer(tmp_path)
    trainer.strategy.connect(model)
    model.trainer = trainer
    trainer.strategy._lightning_optimizers = None
    model.optimizers = lambda: [
        torch.optim.SGD(model.generator.parameters(), lr=0.1),
        torch.optim.SGD(model.discriminator.parameters(), lr=0.1),
    ]
    with pytest.raises(TrainingDivergedError, match="input batch") as info:
        model.training_step(batch, 0)
    assert f"(cubes: {', '.join(sorted(set(batch['cube'])))})" in str(info.value)  # the batch's cubes, named


@pytest.mark.slow
def test_diverging_loss_stops_training(store, tmp_path):
    data, model = _setup(store)
    model.hparams.seg_weight = float("inf")
    trainer = _trainer(
        tmp_path,
        enable_checkpointing=True,
        callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ck")],
    )
    with pytest.raises(TrainingDivergedError, match="generator loss"):
        trainer.fit(model, data)
    assert not (tmp_path / "ck").exists() or not any((tmp_path / "ck").iterdir())


@pytest.mark.slow
def test_ddp_two_cpu_processes(store, tmp_path):
    """`tcupgan fit` under DDP with 2 CPU processes (gloo) runs a few steps and writes a checkpoint."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "tcupgan.cli.main",
        "fit",
        f"--data.store={store}",
        "--data.num_workers=0",
        "--data.crop_size=[8,32,32]",
        "--data.samples_per_epoch=8",
        "--data.batch_size=1",
        "--model.widths=[4,8]",
        "--model.disc_width=4",
        "--model.disc_layers=2",
        "--model.val_roi=[8,32,32]",
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.strategy=ddp_find_unused_parameters_true",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.logger=false",
        "--verbose",  # Lightning's INFO line that names the backend
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "distributed_backend=gloo" in proc.stderr + proc.stdout
    assert list(tmp_path.rglob("*.ckpt"))
