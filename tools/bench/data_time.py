"""Share of training time spent waiting for data, in the demo config (target: under 10%).

A callback records, for every training batch, the wait from the end of the previous batch to the start
of this one (the loader producing crops from the Zarr store) and the batch's own time (generator and
discriminator forward, backward and steps). Share = wait / (wait + step). Runs the demo config's data
and model settings with its own ``num_workers`` and, as the baseline, with crops read in the training
process (``num_workers=0``). The first batches of an epoch (worker start-up) are counted too.

    python -m tools.bench.data_time            # 3 epochs x 64 crops of 16 x 64 x 64, ~1 min on 2 cores
    python -m tools.bench.data_time --tiny
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import yaml

from tcupgan.data import synthesize
from tcupgan.demo import DEMO_CONFIG
from tcupgan.training import CubeDataModule, TCuPGAN
from tools.bench.common import bench_cli


class DataWait(L.Callback):
    """Seconds waiting for each batch and seconds computing it."""

    def __init__(self) -> None:
        self.wait: list[float] = []
        self.step: list[float] = []
        self._mark: float | None = None

    def on_train_epoch_start(self, trainer, module) -> None:
        self._mark = time.perf_counter()

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        now = time.perf_counter()
        self.wait.append(now - self._mark)
        self._mark = now

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        self.step.append(now - self._mark)
        self._mark = now


def measure(store: Path, workers: int, epochs: int, samples: int, config: dict) -> dict:
    data_args = {k: v for k, v in config["data"].items() if k != "store"}
    data = CubeDataModule(str(store), **{**data_args, "num_workers": workers, "samples_per_epoch": samples})
    model = TCuPGAN(data.in_channels, data.out_channels, data.class_names, task=data.task, **config["model"])
    timer = DataWait()
    trainer = L.Trainer(
        accelerator="auto", devices=1, max_epochs=epochs, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[timer],
    )  # fmt: skip
    trainer.fit(model, data)
    wait, step = sum(timer.wait), sum(timer.step)
    return {
        "num_workers": workers,
        "batches": len(timer.step),
        "wait_seconds": round(wait, 2),
        "step_seconds": round(step, 2),
        "data_share": round(wait / (wait + step), 4),
    }


def run(args: argparse.Namespace) -> dict:
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    if args.tiny:
        args.epochs, args.samples, args.cubes = 1, 4, 3
        config["model"].update(widths=[4, 8], disc_width=4, disc_layers=2)
        config["data"].update(crop_size=[4, 32, 32])
    logging.getLogger("lightning").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "demo.zarr"
        shape = (8, 48, 48) if args.tiny else None
        synthesize("fatchecker", store, n=args.cubes, shape=shape)
        workers = config["data"]["num_workers"]
        ours = measure(store, workers, args.epochs, args.samples, config)
        base = measure(store, 0, args.epochs, args.samples, config)
    return {
        "baseline": "the same training with crops read in the training process (num_workers=0)",
        "config": str(DEMO_CONFIG.name),
        "settings": {"epochs": args.epochs, "samples": args.samples, "cubes": args.cubes},
        "configured": ours,
        "in_process": base,
        "target_share": 0.10,
        "meets_target": ours["data_share"] < 0.10,
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, default=3, help="epochs per setting (3)")
    p.add_argument("--samples", type=int, default=64, help="crops per epoch (64, the demo config's)")
    p.add_argument("--cubes", type=int, default=10, help="synthetic Fat Checker cubes (10)")


def rows(s: dict) -> list[tuple]:
    """This benchmark's row of docs/benchmarks.md: (what, tcupgan, baseline, ratio)."""
    ours, base = s["configured"], s["in_process"]
    return [
        (f"time waiting for data, share of training ({s['config']}, target < 10%)",
         f"{ours['data_share']:.1%} ({ours['num_workers']} worker)", f"{base['data_share']:.1%} (in process)",
         f"{ours['wait_seconds'] + ours['step_seconds']:.0f} s vs "
         f"{base['wait_seconds'] + base['step_seconds']:.0f} s"),
    ]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> dict:
    return bench_cli(__doc__, argv, run, add_arguments)


if __name__ == "__main__":
    main()
