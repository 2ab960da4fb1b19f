"""TCuP-GAN training: generator and PatchGAN discriminator under manual optimisation.

Generator loss = ``seg_weight`` x segmentation loss + BCE(D(image, sigmoid(logits)), real).
Discriminator loss = ½ [BCE(D(image, target), real) + BCE(D(image, sigmoid(logits)), fake)].
``freeze="generator"`` with ``init_from`` trains the discriminator alone against a finished generator.
Two optimisers (NAdam, the paper's learning rates), learning rates annealed over the run (or the paper's
step decay), gradient clipping, and a guard that stops on NaN/Inf instead of writing a broken checkpoint.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss, DiceFocalLoss, TverskyLoss
from monai.metrics import DiceMetric

from tcupgan.allocator import reuse_freed_memory
from tcupgan.errors import ConfigError, TrainingDivergedError
from tcupgan.models import PatchDiscriminator, TCuPGenerator
from tcupgan.training.transfer import freeze, transfer_weights, uncompiled

__all__ = [
    "TCuPGAN",
    "run_progress",
    "FocalTverskyLoss",
    "SoftL1Loss",
    "make_seg_loss",
    "write_checkpoint",
]

log = logging.getLogger(__name__)


def run_progress(trainer: L.Trainer) -> float:
    """Share of the training run done, in [0, 1], by whichever of ``max_steps``, ``max_epochs`` and
    ``max_time`` (the wall-clock budget, from Lightning's :class:`~lightning.pytorch.callbacks.Timer`)
    ends it first."""
    shares = []
    if trainer.max_steps and trainer.max_steps > 0:
        shares.append(trainer.global_step / trainer.max_steps)
    if trainer.max_epochs and trainer.max_epochs > 0:
        batches = trainer.num_training_batches
        done = trainer.fit_loop.epoch_loop.batch_progress.current.ready
        within = done / batches if 0 < batches < float("inf") else 0.0
        shares.append((trainer.current_epoch + within) / trainer.max_epochs)
    timer = next((c for c in trainer.callbacks if isinstance(c, L.pytorch.callbacks.Timer)), None)
    remaining = timer.time_remaining("train") if timer is not None else None
    if remaining is not None:
        elapsed = timer.time_elapsed("train")  # rank 0's clock, so that every process anneals alike
        elapsed, remaining = trainer.strategy.broadcast((elapsed, remaining))
        shares.append(elapsed / max(elapsed + remaining, 1e-9))
    return min(1.0, max(shares, default=0.0))


class FocalTverskyLoss(torch.nn.Module):
    """(1 - Tversky index) ** gamma on sigmoid outputs; the paper's choice (beta 0.7, gamma 0.75)."""

    def __init__(self, beta: float = 0.7, gamma: float = 0.75) -> None:
        super().__init__()
        self.gamma = gamma
        self.tversky = TverskyLoss(sigmoid=True, alpha=1 - beta, beta=beta, reduction="none")

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.tversky(logits, target).clamp_min(0).pow(self.gamma).mean()


class SoftL1Loss(torch.nn.Module):
    """Mean |sigmoid(logits) - target|: for vote-fraction targets, whose outputs should be calibrated
    fractions rather than sharpened masks (the loss Walmsley & Spindler found best for Galaxy Zoo 3D)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(torch.sigmoid(logits), target)


def make_seg_loss(name: str) -> torch.nn.Module:
    """Segmentation loss on logits by name: ``dicece``, ``dicefocal``, ``focal_tversky``, ``l1`` or ``bce``.

    All take soft targets (vote fractions) as well as 0/1 masks. ``bce`` and ``l1`` keep the outputs
    calibrated fractions (cross-entropy is minimised where the output equals the fraction); ``bce`` keeps
    its gradient where the sigmoid saturates, so rare thin structures (bars) are not lost early.
    """
    losses = {
        "dicece": lambda: DiceCELoss(sigmoid=True, squared_pred=True),
        "dicefocal": lambda: DiceFocalLoss(sigmoid=True, squared_pred=True),
        "focal_tversky": FocalTverskyLoss,
        "l1": SoftL1Loss,
        "bce": torch.nn.BCEWithLogitsLoss,
    }
    if name not in losses:
        raise ConfigError(f"unknown seg_loss '{name}'; choose one of {sorted(losses)}")
    return losses[name]()


# generator settings whose default changed, as checkpoints written before they existed hold them
# (level convolutions from 2026-12-06, added skips from 2026-12-07)
_OLDER_GENERATOR = {"level_conv": False, "skip_merge": "concatenate"}


class TCuPGAN(L.LightningModule):
    """The TCuP-GAN model for training, validation and checkpoints.

    Args:
        in_channels: image channels (linked from the data module's store).
        out_channels: label channels (linked from the store's task).
        class_names: names of the output channels, for logs.
        task: the store's task (binary, brats, multilabel); prediction turns probabilities into labels by it.
        widths: generator ConvLSTM widths per level (paper: 16, 32, 48, 64, 128).
        bidirectional: ConvLSTMs walk the slices both ways.
        dropout: generator dropout after encoder levels.
        level_conv: a per-slice convolution after every generator level (see :class:`TCuPGenerator`;
            false is the paper's generator).
        skip_merge: how generator decoder levels take the encoder's skip: ``add`` or ``concatenate``
            (the paper; see :class:`TCuPGenerator`).
        norm: generator/discriminator normalisation (instance per slice, batch, none).
        disc_width: discriminator first-layer filters.
        disc_layers: discriminator strided blocks.
        depth_kernel: discriminator depth kernel (1 = per slice as in the paper, 3 = cubic).
        seg_loss: ``dicece``, ``dicefocal``, ``focal_tversky``, or ``l1`` / ``bce`` (calibrated soft
            vote-fraction targets).
        seg_weight: weight of the segmentation loss against the adversarial loss (paper: 100-200).
        adversarial: train against the discriminator (False trains the generator alone, as an ablation).
        lr_g: generator learning rate (paper 1e-3).
        lr_d: discriminator learning rate (paper 1e-4).
        lr_schedule: ``poly``: both learning rates fall as (1 - share of the run done) ** 0.9 after every
            step, nnU-Net's schedule, the run ending at whichever of ``trainer.max_steps``, ``max_epochs``
            and ``max_time`` comes first (so a wall-clock budget anneals too); ``step``: the paper's,
            multiplied by ``lr_decay`` every ``lr_decay_every`` epochs.
        lr_decay: with ``lr_schedule=step``, the factor (paper 0.95).
        lr_decay_every: with ``lr_schedule=step``, epochs between decays (paper 5).
        grad_clip: clip gradient norms to this (0 disables).
        val_roi: sliding-window size (D, H, W) for validation; None uses the whole cube.
        compile: ``torch.compile`` the generator (GPUs; off by default).
        init_from: checkpoint (or a ``TCuPGenerator`` state dict) whose weights start training: the next
            volunteer round, or transfer to a new project (see :mod:`tcupgan.training.transfer`: the input
            stem is adapted to new channel counts, unmatched tensors stay fresh and are logged).
            Resuming with ``--ckpt_path`` still restores everything.
        freeze: with ``init_from``, the generator parameters to freeze: ``none``, ``encoder``,
            ``all-but-head`` or ``generator`` (all: the discriminator then trains alone against it).
        pretrained_lr_scale: learning-rate factor for loaded generator layers (e.g. 0.1).
        reset_discriminator: with ``init_from``: start the discriminator fresh instead of reusing it.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        class_names: list[str] | None = None,
        task: str = "binary",
        widths: tuple[int, ...] = (16, 32, 48, 64, 128),
        bidirectional: bool = False,
        dropout: float = 0.0,
        level_conv: bool = True,
        skip_merge: str = "add",
        norm: str = "instance",
        disc_width: int = 16,
        disc_layers: int = 4,
        depth_kernel: int = 1,
        seg_loss: str = "dicece",
        seg_weight: float = 100.0,
        adversarial: bool = True,
        lr_g: float = 1e-3,
        lr_d: float = 1e-4,
        lr_schedule: str = "poly",
        lr_decay: float = 0.95,
        lr_decay_every: int = 5,
        grad_clip: float = 1.0,
        val_roi: tuple[int, int, int] | None = None,
        compile: bool = False,
        init_from: str | None = None,
        freeze: str = "none",
        pretrained_lr_scale: float = 1.0,
        reset_discriminator: bool = False,
    ) -> None:
        super().__init__()
        if lr_schedule not in ("poly", "step"):
            raise ConfigError(f"lr_schedule must be 'poly' or 'step', got {lr_schedule!r}")
        if freeze == "generator" and not (adversarial and init_from):
            raise ConfigError(
                "freeze=generator trains the discriminator alone: it needs adversarial=true and init_from "
                "(the checkpoint whose generator it learns to judge)"
            )
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.generator = self._build_generator()
        self.discriminator = PatchDiscriminator(
            in_channels,
            out_channels,
            width=disc_width,
            n_layers=disc_layers,
            depth_kernel=depth_kernel,
            norm=norm,
        )
        self.seg_loss = make_seg_loss(seg_loss)
        self.class_names = list(class_names or [f"class{i}" for i in range(out_channels)])
        self.dice = DiceMetric(include_background=True, reduction="mean_batch", ignore_empty=False)
        self._val_scores: list[torch.Tensor] = []
        self._val_example: dict | None = None
        self._pretrained: set[str] = set()
        self._poly_factor = 1.0  # of the learning rates, with lr_schedule=poly; set after every step

    def setup(self, stage: str) -> None:
        if stage == "fit":  # a CPU step would otherwise fault its activations' pages in afresh each time
            reuse_freed_memory()
        # before Lightning restores a --ckpt_path (which then wins); never on load_from_checkpoint
        if stage == "fit" and self.hparams.init_from and not self._pretrained:
            report = transfer_weights(
                self, self.hparams.init_from, reset_discriminator=self.hparams.reset_discriminator
            )
            log.info("initialised from %s: %s", self.hparams.init_from, report)
            self._pretrained = {n for n in report.loaded if n.startswith("generator.")}
            frozen = freeze(self, self.hparams.freeze)
            if frozen:
                log.info("frozen (%s): %d generator tensors", self.hparams.freeze, len(frozen))

    def configure_model(self) -> None:
        # Module.compile() compiles in place: ``torch.compile(module)`` would wrap the generator and
        # rename every checkpoint key to ``generator._orig_mod.*``, which predict and finetune then miss.
        if self.hparams.compile:
            self.generator.compile()

    def _build_generator(self) -> TCuPGenerator:
        hp = self.hparams
        return TCuPGenerator(
            hp.in_channels,
            hp.out_channels,
            widths=hp.widths,
            bidirectional=hp.bidirectional,
            dropout=hp.dropout,
            norm=hp.norm,
            level_conv=hp.level_conv,
            skip_merge=hp.skip_merge,
        )

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = uncompiled(checkpoint["state_dict"])  # old compiled checkpoints
        saved = checkpoint.get("hyper_parameters")
        older = {} if saved is None else {k: v for k, v in _OLDER_GENERATOR.items() if k not in saved}
        if older:
            self.hparams.update(older)
            self.generator = self._build_generator().to(self.device)
            self.configure_model()  # resuming with --model.compile true: Lightning compiled the one replaced

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) normalised image → logits (B, K, D, H, W)."""
        return self.generator(image)

    @property
    def generator_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.generator.parameters())

    def on_train_epoch_start(self) -> None:
        if self.generator_frozen:  # its fakes must be the ones predict will score (no dropout)
            self.generator.eval()

    # ------------------------------------------------------------------------------------ training
    def _check_finite(self, name: str, value: torch.Tensor, batch: dict) -> None:
        if not torch.isfinite(value).all():
            cubes = ", ".join(sorted(set(batch.get("cube", []))))
            raise TrainingDivergedError(
                f"{name} is NaN/Inf at epoch {self.current_epoch}, step {self.global_step} (cubes: {cubes}). "
                "If the batch holds NaN, fix those cubes; if the losses diverged, lower lr_g/lr_d or "
                "raise seg_weight, then resume from the last good checkpoint"
            )

    def _bce(self, logits: torch.Tensor, real: bool, slices: torch.Tensor | None = None) -> torch.Tensor:
        """Adversarial BCE over the discriminator's patches; ``slices`` (B, D) keeps labelled slices only
        (the discriminator keeps depth, one score map per slice)."""
        target = torch.ones_like(logits) if real else torch.zeros_like(logits)
        if slices is None:
            return F.binary_cross_entropy_with_logits(logits, target)
        weight = slices[:, None, :, None, None].to(logits.dtype).expand_as(logits)
        return (  # a batch of unlabelled crops (data.unlabelled_share) weighs nothing: loss 0
            F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="sum")
            / weight.sum().clamp_min(1)
        )

    def _seg_loss(
        self, logits: torch.Tensor, target: torch.Tensor, slices: torch.Tensor | None
    ) -> torch.Tensor:
        """Segmentation loss; for crops with unlabelled slices (corrections only) on labelled slices alone,
        so the generator still sees the whole crop as context but learns only from what volunteers drew."""
        if slices is None:
            return self.seg_loss(logits, target)
        losses = [
            self.seg_loss(logits[b : b + 1, :, m], target[b : b + 1, :, m])
            for b, m in enumerate(slices)
            if m.any()
        ]
        return torch.stack(losses).mean() if losses else logits.sum() * 0  # all unlabelled: no loss

    def _step_optimizer(self, optimizer, loss: torch.Tensor) -> None:
        self.toggle_optimizer(optimizer)
        self.manual_backward(loss)
        if self.hparams.grad_clip:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm"
            )
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self.untoggle_optimizer(optimizer)

    def training_step(self, batch: dict, batch_idx: int) -> None:
        image, target = batch["image"], batch["target"]
        slices = batch.get("labelled")
        slices = None if slices is None or bool(slices.all()) else slices.bool()
        self._check_finite("the input batch", image, batch)
        optimizers = self.optimizers()  # one, not a list, when the generator is frozen
        opt_g, opt_d = optimizers if isinstance(optimizers, list) else (None, optimizers)
        logits = self.generator(image)
        seg = self._seg_loss(logits, target, slices)
        fake = torch.sigmoid(logits)
        logs = {"train/seg_loss": seg.detach()}
        if opt_g is not None:
            if self.hparams.adversarial:
                self.toggle_optimizer(opt_g)  # discriminator frozen while the generator learns to fool it
                adv = self._bce(self.discriminator(image, fake), real=True)
                self.untoggle_optimizer(opt_g)
            else:
                adv = seg.new_zeros(())
            g_loss = self.hparams.seg_weight * seg + adv
            self._check_finite("the generator loss", g_loss, batch)
            self._step_optimizer(opt_g, g_loss)
            logs |= {"train/adv_loss": adv.detach(), "train/g_loss": g_loss.detach()}
        if self.hparams.adversarial:
            d_loss = 0.5 * (
                self._bce(self.discriminator(image, target), real=True, slices=slices)
                + self._bce(self.discriminator(image, fake.detach()), real=False)
            )
            self._check_finite("the discriminator loss", d_loss, batch)
            self._step_optimizer(opt_d, d_loss)
            logs["train/d_loss"] = d_loss.detach()
        self.log_dict(
            logs, prog_bar=True, on_step=True, on_epoch=True, batch_size=image.shape[0], sync_dist=True
        )

    def on_train_batch_end(self, *args) -> None:
        if self.hparams.lr_schedule == "poly":  # nnU-Net's decay, one reading of the run's clock per step
            self._poly_factor = (1.0 - run_progress(self.trainer)) ** 0.9
            self._step_schedulers()

    def on_train_epoch_end(self) -> None:
        if self.hparams.lr_schedule == "step":
            self._step_schedulers()

    def _step_schedulers(self) -> None:
        schedulers = self.lr_schedulers()  # one, not a list, when the generator is frozen
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            scheduler.step()

    def configure_optimizers(self):
        hp = self.hparams
        trainable = [(f"generator.{n}", p) for n, p in self.generator.named_parameters() if p.requires_grad]
        pretrained = [p for n, p in trainable if n in self._pretrained]
        groups = [{"params": [p for n, p in trainable if n not in self._pretrained]}]
        if pretrained:  # loaded layers may learn slower than fresh ones
            groups.append({"params": pretrained, "lr": hp.lr_g * hp.pretrained_lr_scale})
        opt_d = torch.optim.NAdam(self.discriminator.parameters(), lr=hp.lr_d, betas=(0.9, 0.99))
        optimizers = [opt_d]
        if trainable:
            optimizers.insert(0, torch.optim.NAdam(groups, lr=hp.lr_g, betas=(0.9, 0.99)))
        schedules = [
            torch.optim.lr_scheduler.LambdaLR(o, lambda _: self._poly_factor)
            if hp.lr_schedule == "poly"
            else torch.optim.lr_scheduler.StepLR(o, hp.lr_decay_every, hp.lr_decay)
            for o in optimizers
        ]
        return optimizers, schedules

    # ---------------------------------------------------------------------------------- validation
    def predict_logits(self, image: torch.Tensor) -> torch.Tensor:
        """Logits for whole cubes: sliding windows of ``val_roi`` with Gaussian blending (MONAI)."""
        roi = self.hparams.val_roi
        if roi is None:
            return self.generator(image)
        roi = [min(r, s) for r, s in zip(roi, image.shape[2:], strict=True)]
        return sliding_window_inference(image, roi, 2, self.generator, overlap=0.25, mode="gaussian")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        image, target = batch["image"], batch["target"]
        logits = self.predict_logits(image)
        prob = torch.sigmoid(logits)
        self.dice(y_pred=(prob > 0.5).float(), y=(target > 0.5).float())
        scores = torch.stack(
            [
                self.discriminator.slice_scores(image, target).mean(),
                self.discriminator.slice_scores(image, prob).mean(),
            ]
        )
        self._val_scores.append(scores)
        if batch_idx == 0:
            self._val_example = {
                k: v[0].detach().cpu().numpy()
                for k, v in (("image", image), ("target", target), ("prob", prob))
            }

    def on_validation_epoch_end(self) -> None:
        per_class = self.dice.aggregate()
        self.dice.reset()
        logs = {f"val/dice_{name.replace(' ', '_')}": per_class[i] for i, name in enumerate(self.class_names)}
        logs["val/dice"] = per_class.nanmean()
        if self._val_scores:
            scores = torch.stack(self._val_scores).mean(0)
            logs["val/d_real"], logs["val/d_fake"] = scores[0], scores[1]
        self._val_scores.clear()
        self.log_dict(logs, prog_bar=True, sync_dist=True)
        log_dir = self.trainer.log_dir  # a collective under DDP: every rank must ask
        if self._val_example is not None and not self.trainer.sanity_checking and self.trainer.is_global_zero:
            self._save_val_figure(Path(log_dir or self.trainer.default_root_dir))

    def _save_val_figure(self, log_dir: Path) -> None:
        """A PNG per epoch: a few slices of the first validation cube with truth and prediction."""
        from tcupgan.viz import display_image, overlay, save_panels

        ex = self._val_example
        depth = ex["image"].shape[1]
        rows = []
        for z in sorted({depth // 4, depth // 2, (3 * depth) // 4}):
            truth = (ex["target"][:, z] > 0.5).astype(np.uint8)
            pred = (ex["prob"][:, z] > 0.5).astype(np.uint8)
            rows.append(
                [
                    (f"image z={z}", display_image(ex["image"][:, z])),
                    ("truth", overlay(ex["image"][:, z], _bit_labels(truth))),
                    (
                        f"prediction (epoch {self.current_epoch})",
                        overlay(ex["image"][:, z], _bit_labels(pred)),
                    ),
                ]
            )
        save_panels(rows, log_dir / "val_figures" / f"epoch{self.current_epoch:03d}.png")


def _bit_labels(channels: np.ndarray) -> np.ndarray:
    """(K, H, W) 0/1 channels → one (H, W) map whose values tell the channel combinations apart."""
    return sum(channels[k].astype(np.uint8) << k for k in range(len(channels)))


def write_checkpoint(model: TCuPGAN, path: str | Path) -> Path:
    """Save a model built outside a Trainer as a checkpoint ``predict``, ``finetune`` and
    ``load_from_checkpoint`` accept (benchmarks, whose speed does not depend on training; hand-built
    models)."""
    path = Path(path)
    payload = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": L.__version__,
    }
    torch.save(payload, path)
    return path
