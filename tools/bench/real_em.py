"""TCuP-GAN on real labelled EM against MONAI's usual U-Nets and nnU-Net, at the same wall-clock budget.

Data: the ssTEM stack of *Drosophila* larva nerve cord in ``../shared/data/vnc-em-sample/`` (15 sections
of 1024 x 1024 px at 4.6 nm, 50 nm apart). Fixed split by sections: 0-11 train, 12-14 held out. Two
tasks, mitochondria and membranes. Per model and budget: held-out Dice, optimiser steps, training
voxels/s and peak memory, each model trained in a process of its own.

- ``tcupgan``: the product's own path as a user takes it: ``ingest_tiff`` of the section folders into a
  store, ``tcupgan plan`` and ``tcupgan fit --plan plan.yaml`` with no other setting (on 2 cores: 8
  single-section crops of 256 x 256 per step), stopped by ``--trainer.max_time``, then ``predict_store``
  and the Dice of the stored prediction.
- ``monai_basicunet_2d``: MONAI ``BasicUNet`` on sections, the usual 2D recipe: DiceCE, Adam 1e-3,
  8 crops of 256 x 256 per step, half of them centred on foreground, random flips and 90° rotations.
- ``monai_segresnet_2d``: MONAI ``SegResNet`` (its BraTS tutorial's blocks) on sections, the same crops
  and augmentation; its tutorial's weight decay (1e-5) and cosine annealing, here over the wall-clock
  budget, at BasicUNet's 1e-3 (the tutorial's 1e-4 is sized for 300 epochs) and without its dropout.
- ``nnunet_2d``: nnU-Net v2 with its default plan, trainer and predictor on the same section images, its
  poly learning rate run over the budget (``tools/bench/nnunet_baseline.py``). Runs where ``nnunetv2`` is
  installed; on a CPU-only machine put the CPU build of torch back afterwards and remove the torchvision
  that its timm dependency brings (a CUDA build; nnU-Net's trainer and predictor do not import it).

Both MONAI models read the same store and the same normalised images as TCuP-GAN, train and predict in bf16
autocast where TCuP-GAN's plan does (a CPU with bf16 instructions; their tutorials' mixed precision), and
predict the held-out sections with MONAI's sliding window (overlap 0.25, Gaussian blending), as ``predict``
does.

    python -m tools.bench.real_em                        # both tasks, 240 and 900 s: ~3 h on 2 cores
    python -m tools.bench.real_em --task mitochondria --budget 240   # ~20 minutes
    python -m tools.bench.real_em --tiny                 # the tests' smoke run
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from lightning.pytorch import Callback

from tcupgan.metrics.lesion_wise import mask_dice
from tools.bench.common import bench_cli

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "vnc-em-sample"
TASKS = ("mitochondria", "membranes")
MODELS = ("tcupgan", "monai_basicunet_2d", "monai_segresnet_2d", "nnunet_2d")
# nnU-Net is an optional extra (`pip install nnunetv2`): by default it runs where it is installed
DEFAULT_MODELS = MODELS if importlib.util.find_spec("nnunetv2") else MODELS[:-1]
TRAIN, HELD_OUT = range(0, 12), range(12, 15)
SPACING = (50.0, 4.6, 4.6)  # nm: sections 50 nm apart, 4.6 nm pixels
FIGURE = "images/real_em.png"  # under docs/


def build_store(out: Path, task: str, size: int | None = None, train: Sequence[int] = TRAIN) -> Path:
    """The sample as a user ingests it: one folder of section images per cube (``train`` sections,
    test), read by ``ingest_tiff``. ``size``: crop every section to its top-left ``size`` px (the tiny
    run)."""
    from PIL import Image

    from tcupgan.data import CubeStore, ingest_tiff

    folders = []
    for cube, sections in (("train", train), ("test", HELD_OUT)):
        for kind, source in (("raw", "raw/{:02d}.tif"), ("label", f"{task}/{{:02d}}.png")):
            folder = out / cube / kind
            folder.mkdir(parents=True)
            for z in sections:
                plane = np.asarray(Image.open(DATA / source.format(z)))
                plane = (plane > 127 if plane.dtype != bool else plane) if kind == "label" else plane
                Image.fromarray(plane[:size, :size].astype(np.uint8)).save(folder / f"{z:02d}.png")
            folders.append(folder)
    store = out / f"{task}.zarr"
    ingest_tiff(folders[0::2], store, labels=folders[1::2], spacing=SPACING, unit="nm",
                names=["train", "test"], class_names=[task])  # fmt: skip
    cubes = CubeStore(store, mode="r+")
    cubes.update_attrs("train", split="train")
    # fit needs a val split; validation is switched off (limit_val_batches 0), so no model sees the
    # held-out sections before the final Dice, and every model is scored on its last weights
    cubes.update_attrs("test", split="val")
    return store


class StepTimer(Callback):
    """Where a TCuP-GAN training step's time goes: waiting for data, the generator's and the
    discriminator's forward passes, and each network's backward pass and optimiser step. Written to
    ``path`` as seconds per step when training ends."""

    def __init__(self, path: str) -> None:
        self.path, self.seconds = Path(path), dict.fromkeys(
            ("data", "generator_forward", "discriminator_forward", "generator_backward_step",
             "discriminator_backward_step", "step_total"), 0.0)  # fmt: skip
        self.steps, self._batch_end, self._batch_start = 0, None, 0.0

    def _timed(self, key: Callable[..., str], fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            self.seconds[key(*args)] += time.perf_counter() - start
            return out

        return wrapper

    def on_fit_start(self, trainer, module) -> None:
        module.generator.forward = self._timed(lambda *a: "generator_forward", module.generator.forward)
        module.discriminator.forward = self._timed(
            lambda *a: "discriminator_forward", module.discriminator.forward
        )
        generator_optimiser = trainer.optimizers[0]

        def network(optimiser, loss) -> str:
            is_generator = getattr(optimiser, "optimizer", optimiser) is generator_optimiser
            return f"{'generator' if is_generator else 'discriminator'}_backward_step"

        module._step_optimizer = self._timed(network, module._step_optimizer)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self._batch_start = time.perf_counter()
        if self._batch_end is not None:
            self.seconds["data"] += self._batch_start - self._batch_end

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self._batch_end = time.perf_counter()
        self.seconds["step_total"] += self._batch_end - self._batch_start
        self.steps += 1

    def on_train_end(self, trainer, module) -> None:
        per_step = {k: round(v / max(self.steps, 1), 4) for k, v in self.seconds.items()}
        self.path.write_text(json.dumps({**per_step, "steps": self.steps}))


def _duration(seconds: float) -> str:
    """Lightning's ``max_time`` as DD:HH:MM:SS (whole seconds)."""
    seconds = max(1, round(seconds))
    return f"{seconds // 86400:02d}:{seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def train_tcupgan(store: Path, work: Path, budget: float, seed: int, extra: Sequence[str] = ()) -> dict:
    """The user's path: ``tcupgan plan``, then ``tcupgan fit --plan plan.yaml --seed_everything SEED``
    (and ``extra`` fit arguments) stopped by the budget; then ``predict`` and Dice."""
    from tcupgan.data import CubeStore
    from tcupgan.inference import predict_store
    from tcupgan.training.cli import run_fit
    from tcupgan.training.plan import write_plan

    settings, _ = write_plan(store, work / "plan.yaml")
    timer = work / "split.json"
    cli = run_fit([
        "--config", str(work / "plan.yaml"), "--trainer.default_root_dir", str(work),
        "--trainer.max_time", _duration(budget), "--trainer.limit_val_batches", "0",
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--data.num_workers", "0",
        "--trainer.callbacks+=tools.bench.real_em.StepTimer",
        f"--trainer.callbacks.path={timer}", "--seed_everything", str(seed), *extra,
    ])  # fmt: skip
    trained = time.perf_counter()
    ckpt = work / "final.ckpt"
    cli.trainer.save_checkpoint(ckpt)
    data = cli.datamodule
    split = json.loads(timer.read_text())
    predict_store(ckpt, store, cubes=["test"])
    cube = CubeStore(store)["test"]
    return {
        "dice": mask_dice(cube["prediction"][...] > 0, cube.label[...] > 0),
        "steps": split.pop("steps"),
        "voxels_per_step": int(data.hparams.batch_size * np.prod(data.hparams.crop_size)),
        "predict_seconds": round(time.perf_counter() - trained, 1),
        "seconds_per_step": split,
        "plan": settings["data"],
        "precision": cli.trainer.precision,
    }


def monai_net(model: str):
    from monai.networks.nets import BasicUNet, SegResNet

    if model == "monai_basicunet_2d":
        return BasicUNet(spatial_dims=2, in_channels=1, out_channels=1)
    return SegResNet(spatial_dims=2, in_channels=1, out_channels=1, init_filters=16, blocks_down=(1, 2, 2, 4),
                     blocks_up=(1, 1, 1))  # fmt: skip


def crop_sampler(image: np.ndarray, label: np.ndarray, crop: int, batch: int,
                 rng: np.random.Generator) -> Callable[[], tuple]:  # fmt: skip
    """Batches of (image, label) section crops of ``crop`` x ``crop`` px from (C, D, H, W) and (D, H, W),
    half of them centred on a foreground pixel, flipped and rotated by 90° at random."""
    import torch

    foreground = np.argwhere(label)

    def one() -> tuple[np.ndarray, np.ndarray]:
        if rng.random() < 0.5 and len(foreground):
            z, y, x = foreground[rng.integers(len(foreground))]
        else:
            z, y, x = (rng.integers(s) for s in label.shape)
        y0, x0 = (
            int(np.clip(c - crop // 2, 0, n - crop)) for c, n in ((y, label.shape[1]), (x, label.shape[2]))
        )
        im, lb = image[:, z, y0 : y0 + crop, x0 : x0 + crop], label[None, z, y0 : y0 + crop, x0 : x0 + crop]
        k = int(rng.integers(4))
        im, lb = np.rot90(im, k, axes=(1, 2)), np.rot90(lb, k, axes=(1, 2))
        for axis in (-1, -2):
            if rng.random() < 0.5:
                im, lb = np.flip(im, axis), np.flip(lb, axis)
        return im, lb

    def sample() -> tuple:
        pairs = [one() for _ in range(batch)]
        return tuple(torch.from_numpy(np.stack([p[i] for p in pairs]).astype(np.float32)) for i in (0, 1))

    return sample


def train_monai(store: Path, model: str, budget: float, crop: int, batch: int, seed: int) -> dict:
    """A MONAI network trained on section crops with its usual recipe until the budget runs out; Dice on
    the held-out sections."""
    import torch
    from monai.inferers import sliding_window_inference
    from monai.losses import DiceCELoss

    from tcupgan.data import CubeStore
    from tcupgan.data.transforms import normalise
    from tcupgan.training.plan import machine, training_precision

    precision = training_precision(machine())  # what TCuP-GAN's plan chooses here
    autocast = functools.partial(torch.autocast, "cpu", torch.bfloat16, enabled=precision == "bf16-mixed")
    cubes = CubeStore(store)
    train, test = cubes["train"], cubes["test"]
    sample = crop_sampler(normalise(train.image[...], train.attrs), train.label[...] > 0, crop, batch,
                          np.random.default_rng(seed))  # fmt: skip
    torch.manual_seed(seed)
    net, loss = monai_net(model), DiceCELoss(sigmoid=True)
    anneal = model == "monai_segresnet_2d"  # its tutorial's recipe; BasicUNet's keeps a constant rate
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-5 if anneal else 0)
    start, steps = time.perf_counter(), 0
    net.train()
    while (elapsed := time.perf_counter() - start) < budget:
        if anneal:  # cosine over the wall-clock budget, as the tutorial's over its epochs
            optimiser.param_groups[0]["lr"] = 0.5e-3 * (1 + math.cos(math.pi * elapsed / budget))
        image, label = sample()
        optimiser.zero_grad(set_to_none=True)
        with autocast():
            logits = net(image)
        loss(logits.float(), label).backward()
        optimiser.step()
        steps += 1
    trained = time.perf_counter()
    net.eval()
    sections = torch.from_numpy(normalise(test.image[...], test.attrs)).transpose(0, 1)  # (D, 1, H, W)
    with torch.no_grad(), autocast():
        logits = sliding_window_inference(sections, [crop, crop], 4, net, overlap=0.25, mode="gaussian")[:, 0]
    pred = logits.float().numpy() > 0  # sigmoid > 0.5
    return {
        "dice": mask_dice(pred, test.label[...] > 0),
        "steps": steps,
        "voxels_per_step": batch * crop * crop,
        "predict_seconds": round(time.perf_counter() - trained, 1),
        "precision": precision,
    }


def worker(args: argparse.Namespace) -> dict:
    """One model, one task, one budget, in this process (its peak memory is this process's)."""
    import torch

    torch.set_num_threads(args.threads)
    store, budget = Path(args.store), args.budget[0]
    start = time.perf_counter()
    if args.worker == "tcupgan":
        result = train_tcupgan(store, Path(args.work), budget, args.seed, shlex.split(args.fit_args))
    elif args.worker == "nnunet_2d":
        from tools.bench.nnunet_baseline import train_nnunet

        result = train_nnunet(store, Path(args.work), budget, args.seed)
    else:
        result = train_monai(store, args.worker, budget, args.crop, batch=8, seed=args.seed)
    seconds = time.perf_counter() - start - result["predict_seconds"] - result.get("setup_seconds", 0)
    result["train_seconds"] = round(seconds, 1)
    result["train_voxels_per_s"] = round(result["steps"] * result["voxels_per_step"] / seconds)
    result["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result


def run_one(model: str, store: Path, work: Path, budget: float, args: argparse.Namespace) -> dict:
    command = [sys.executable, "-m", "tools.bench.real_em", "--worker", model, "--store", str(store),
               "--work", str(work), "--budget", str(budget), "--crop", str(args.crop), "--threads",
               str(args.threads), "--seed", str(args.seed), f"--fit-args={args.fit_args}"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{model} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout[done.stdout.index("{") :])


def run(args: argparse.Namespace) -> dict:
    if args.worker:
        return worker(args)
    if not DATA.is_dir():
        return {"skipped": f"the real EM sample {DATA} is absent"}
    if args.tiny:
        args.task, args.budget, args.crop = ["mitochondria"], [5.0], 64
    if "nnunet_2d" in args.models and "nnunet_2d" not in DEFAULT_MODELS:
        raise SystemExit("nnunet_2d needs nnU-Net: pip install nnunetv2 (on CPUs see this module's --help)")
    results: dict = {"baseline": "BasicUNet, SegResNet on sections (usual recipes), nnU-Net defaults",
                     "split": {"train": list(TRAIN), "held_out": list(HELD_OUT)}, "fit_args": args.fit_args,
                     "seed": args.seed,
                     "tasks": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.task:
            store = build_store(Path(tmp) / task, task, size=128 if args.tiny else None)
            results["tasks"][task] = {
                str(int(budget)): {
                    model: run_one(model, store, Path(tmp) / f"{task}-{model}-{budget}", budget, args)
                    for model in args.models
                }
                for budget in args.budget
            }
    if args.figure:
        figure(results, Path(args.figure))
    return results


def figure(results: dict, path: Path) -> None:
    """Held-out Dice against training seconds, one panel per task."""
    import matplotlib.pyplot as plt

    tasks = results["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, (task, by_budget) in zip(axes[0], tasks.items(), strict=True):
        models = list(dict.fromkeys(m for r in by_budget.values() for m in r))  # a budget may run fewer
        for i, model in enumerate(models):
            points = sorted((float(b), r[model]["dice"]) for b, r in by_budget.items() if model in r)
            ax.plot(*zip(*points, strict=True), marker="o", color=f"C{i}", label=model)
        ax.set(title=f"{task} (held-out sections 12-14)", xlabel="training seconds (2 CPU cores)",
               ylabel="Dice", ylim=(0, 1))  # fmt: skip
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section(s: dict) -> list[str]:
    """This benchmark's section of docs/benchmarks.md."""
    if "skipped" in s:
        return ["## Real EM", "", f"Not run: {s['skipped']}."]
    lines = [
        "## Real EM: TCuP-GAN against MONAI and nnU-Net at the same training budget",
        "",
        "`python -m tools.bench.real_em`: ssTEM of *Drosophila* nerve cord, sections 0-11 train, 12-14 held "
        "out; each model trained in its own process for the same wall-clock budget on this machine. "
        "TCuP-GAN through `tcupgan ingest` → `plan` → `fit --plan plan.yaml` → `predict`, nothing set "
        f"by hand. Seed {s.get('seed', 'unset')} for every model (weights and crops; `--seed`).",
        "",
        "| task | budget (s) | model | precision | held-out Dice | steps | training voxels/s | peak memory "
        "(MB) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for task, by_budget in s["tasks"].items():
        for budget, models in by_budget.items():
            for model, r in models.items():
                lines.append(
                    f"| {task} | {budget} | {model} | {r.get('precision', '32-true')} | {r['dice']:.3f} | "
                    f"{r['steps']} | {r['train_voxels_per_s']:,} | {r['peak_memory_mb']:,} |"
                )
    why = "What moved TCuP-GAN's Dice per step: [studies/real-em](../studies/real-em/README.md)."
    runs = ["", f"Runs: {s['note']}."] if s.get("note") else []  # where cells come from different runs
    image = f"![held-out Dice against training seconds]({FIGURE})"
    return [*lines, *runs, *_step_split(s), "", why, "", image]


def _step_split(s: dict) -> list[str]:
    """Where TCuP-GAN's training step went, per task and budget."""
    lines = []
    for task, by_budget in s["tasks"].items():
        for budget, models in by_budget.items():
            tcupgan = models.get("tcupgan", {})
            split = tcupgan.get("seconds_per_step")
            if not split:
                continue
            precision = f", {tcupgan['precision']}" if "precision" in tcupgan else ""
            generator = split["generator_forward"] + split["generator_backward_step"]
            critic = split["discriminator_forward"] + split["discriminator_backward_step"]
            lines += [
                "",
                f"TCuP-GAN's training step ({task}, {budget} s{precision}): {split['step_total']:.2f} s, of "
                f"which the generator {generator:.2f} s (forward {split['generator_forward']:.2f} s), the "
                f"discriminator {critic:.2f} s and waiting for data {split['data']:.2f} s; `predict` of the "
                f"held-out sections (saving and loading the checkpoint and writing the store included) "
                f"{tcupgan['predict_seconds']:.1f} s.",
            ]
    return lines


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", nargs="+", choices=TASKS, default=list(TASKS), help="tasks (both)")
    p.add_argument("--budget", nargs="+", type=float, default=[240.0, 900.0],
                   help="training seconds per model (240 900)")  # fmt: skip
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(DEFAULT_MODELS),
                   help="models (all; nnunet_2d where nnunetv2 is installed)")  # fmt: skip
    p.add_argument("--crop", type=int, default=256, help="in-plane crop size of every model (256)")
    p.add_argument("--threads", type=int, default=2, help="torch threads per model (2)")
    p.add_argument("--seed", type=int, default=0, help="every model's seed: weights and crops (0)")
    p.add_argument("--figure", help="PNG of held-out Dice against training seconds")
    p.add_argument("--fit-args", default="", help='further `tcupgan fit` arguments for TCuP-GAN, e.g. '
                   '"--model.seg_loss dicece" (none: the shipped config as it is)')  # fmt: skip
    p.add_argument("--worker", choices=MODELS, help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)


def main(argv: Sequence[str] | None = None) -> dict:
    return bench_cli(__doc__, argv, run, add_arguments)


if __name__ == "__main__":
    main()
