"""``tcupgan fit``: LightningCLI over :class:`TCuPGAN` and :class:`CubeDataModule`.

The store decides the model's input and output channels and class names (linked arguments), so a config
names a store and the network's choices, never channel counts that could disagree with the data.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch.cli import LightningCLI

from tcupgan.errors import ConfigError
from tcupgan.training.data import CubeDataModule
from tcupgan.training.module import TCuPGAN

__all__ = ["TCuPGANCLI", "run_fit", "fit_config", "shipped_config"]

SHIPPED = Path(__file__).resolve().parents[1] / "configs"

log = logging.getLogger(__name__)


class TCuPGANCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        for field in ("in_channels", "out_channels", "class_names", "task"):
            parser.link_arguments(f"data.{field}", f"model.{field}", apply_on="instantiate")

    def before_fit(self) -> None:
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") == "last":
            config["ckpt_path"] = latest_checkpoint(self.trainer)
        callbacks = self.trainer.checkpoint_callbacks
        if any(cb.monitor and cb.save_last for cb in callbacks) and all(cb.monitor for cb in callbacks):
            log.warning(
                "a ModelCheckpoint monitors a metric with save_last: since Lightning 2.6 its last.ckpt is a "
                "copy of the best checkpoint, not the last epoch (resuming from it loses epochs). Add an "
                "unmonitored ModelCheckpoint with `filename: last`, as configs/demo.yaml does"
            )


def latest_checkpoint(trainer) -> str | None:
    """The newest ``last.ckpt`` of earlier runs in the same run folder, for ``--ckpt_path last``.

    Lightning looks for "last" only in this run's own checkpoint folder, which the logger has just made
    new (``version_N+1``), so without this it silently starts from scratch. The resumed run logs to its
    new version folder (a CSVLogger reopening the old one would delete its metrics.csv).
    """
    roots = {Path(trainer.default_root_dir)}
    if getattr(trainer.logger, "root_dir", None):
        roots.add(Path(trainer.logger.root_dir))
    found = {p for root in roots for p in root.glob("**/checkpoints/last.ckpt")}
    if not found:
        where = " or ".join(sorted(map(str, roots)))
        log.warning("--ckpt_path last: no last.ckpt under %s yet; training starts from scratch", where)
        return None
    newest = max(found, key=lambda p: p.stat().st_mtime)
    log.info("resuming from %s", newest)
    return str(newest)


def shipped_config(name: str | Path) -> Path:
    """A config shipped with tcupgan by name (``demo``, ``demo.yaml`` or ``configs/demo.yaml``), found in
    the installed package, so the README's commands work from any folder and from a wheel."""
    path = SHIPPED / Path(name).name
    path = path if path.suffix else path.with_suffix(".yaml")
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in SHIPPED.glob("*.yaml")))
        raise ConfigError(f"no config file {name}, and tcupgan ships none by that name (it ships: {shipped})")
    return path


def with_shipped_configs(argv: Sequence[str]) -> list[str]:
    """Every ``--config X`` that is not a file here becomes the shipped config of that name."""
    argv = list(argv)
    for i, arg in enumerate(argv[:-1]):
        if arg == "--config" and not Path(argv[i + 1]).exists():
            argv[i + 1] = str(shipped_config(argv[i + 1]))
    return argv


def run_fit(argv: Sequence[str]) -> TCuPGANCLI:
    """Run ``fit`` with LightningCLI arguments, e.g. ``["--config", "demo"]`` (a file, or a shipped config
    by name)."""
    # `tcupgan fit ...` hands its own command line over; LightningCLI would warn that it also sees sys.argv
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter", category=UserWarning)
    return TCuPGANCLI(
        TCuPGAN,
        CubeDataModule,
        args=["fit", *with_shipped_configs(argv)],
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"fit": {"default_env": False}},
    )


def fit_config(
    config: str | Path,
    store: str | Path,
    run_dir: str | Path,
    *,
    epochs: int,
    seed: int = 0,
    samples: int | None = None,
    validate_every: int | None = None,
    extra: Sequence[str] = (),
) -> str:
    """``tcupgan fit --config CONFIG`` on ``store`` into ``run_dir``, quietly (no progress bar or summary,
    data read in-process): for scripts, notebooks and benchmarks. ``samples`` crops per epoch and
    ``validate_every`` epochs override the config; ``extra`` are further ``fit`` arguments. Returns the
    latest epoch's checkpoint (the config's ``filename: last`` ModelCheckpoint)."""
    args = [
        "--config", str(config), "--data.store", str(store), "--trainer.max_epochs", str(epochs),
        "--trainer.default_root_dir", str(run_dir), "--trainer.logger.init_args.save_dir", str(run_dir),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--data.num_workers", "0", "--seed_everything", str(seed),
    ]  # fmt: skip
    if samples:
        args += ["--data.samples_per_epoch", str(samples)]
    if validate_every:
        args += ["--trainer.check_val_every_n_epoch", str(validate_every)]
    trainer = run_fit([*args, *extra]).trainer
    latest = [cb.best_model_path for cb in trainer.checkpoint_callbacks if cb.monitor is None]
    if not latest:
        raise ConfigError(f"{config} has no unmonitored ModelCheckpoint (filename: last) for the last epoch")
    return latest[0]
