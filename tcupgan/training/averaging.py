"""Weight averaging over the last part of training, for models that must be compared run against run.

A GAN's weights do not settle: the generator and discriminator keep pushing each other, so the weights at
the last step are one draw from an orbit, and two short fine-tunes on nearly the same data can end far
apart: in the volunteer-effort benchmark (seed 0, mixed pool), 12-epoch fine-tunes on the same
corrections with three seeds spread 0.592-0.635 in held-out Dice, more than half of the 0.078 that
correcting the whole pool gained. The equal average of the weights over the last epochs sits near the
middle of that orbit (Yazici et al. 2019, "The unusual effectiveness of averaging in GAN training"):
averaged over the second half, the same three fine-tunes gave 0.610-0.614 and a gain of 0.105 (with 16
slices corrected the spread fell from 0.040 to 0.016; with nothing corrected it stayed 0.011).

``TailAveraging`` is Lightning's :class:`~lightning.pytorch.callbacks.WeightAveraging` (an equal-weight
:class:`torch.optim.swa_utils.AveragedModel`, updated after every step) started ``tail`` of the way from
the end. Until its first update it stays out of the way: validation and checkpoints see the trained
weights, not the untouched copy Lightning's callback would swap in. Add it to a config's
``trainer.callbacks`` (``class_path: tcupgan.training.averaging.TailAveraging``) or on the command line::

    tcupgan fit --config configs/demo.yaml --trainer.callbacks+=tcupgan.training.averaging.TailAveraging

Checkpoints saved once averaging has begun hold the averaged weights (what predict loads) and the trained
ones under ``current_model_state`` (what a resumed fit continues from).
"""

from __future__ import annotations

import warnings
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import WeightAveraging

from tcupgan.errors import ConfigError

__all__ = ["TailAveraging"]


class TailAveraging(WeightAveraging):
    """Equal average of the weights after every training step of the last ``tail`` share of the epochs
    (0.5: the second half; 1: all of training)."""

    def __init__(self, tail: float = 0.5) -> None:
        if not 0 < tail <= 1:
            raise ConfigError(f"TailAveraging: tail is the share of epochs to average, in (0, 1]; got {tail}")
        super().__init__()
        self.tail = tail
        self.first_epoch = self.epoch = 0

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            if trainer.max_epochs is None or trainer.max_epochs < 1:
                raise ConfigError("TailAveraging counts its tail in epochs: set trainer.max_epochs")
            self.first_epoch = min(int(trainer.max_epochs * (1 - self.tail)), trainer.max_epochs - 1)
        with warnings.catch_warnings():  # TCuPGAN.configure_model only compiles; it shards nothing
            warnings.filterwarnings("ignore", message=".*doesn't support sharding model layers")
            super().setup(trainer, pl_module, stage)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epoch = trainer.current_epoch  # should_update is told steps, not epochs

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None and self.epoch >= self.first_epoch

    @property
    def averaging(self) -> bool:
        """Whether any weights have been averaged yet (before that there is nothing to swap in or save)."""
        return self._average_model is not None and int(self._average_model.n_averaged) > 0

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.averaging:
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.averaging:
            super().on_validation_epoch_end(trainer, pl_module)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self.averaging:
            super().on_save_checkpoint(trainer, pl_module, checkpoint)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.averaging:
            super().on_train_end(trainer, pl_module)
