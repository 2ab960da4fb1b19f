"""nnU-Net v2 as a user runs it on serial EM sections, stopped by a wall-clock budget (``real_em``'s
``nnunet_2d``).

The sections become a 2D nnU-Net dataset (one PNG per section, as its natural-image datasets are), planned
and preprocessed with its default planner, trained with its default trainer (SGD with Nesterov momentum,
1e-2, Dice + cross-entropy with deep supervision, its data augmentation in the number of worker processes
it picks for the machine) and predicted with its usual predictor (Gaussian sliding window, half-patch
steps, mirroring). What changes is the run's length: as TCuP-GAN's, its poly learning rate falls over the
budget's seconds instead of over 1000 epochs of 250 steps, which no budget here comes near; and its
per-epoch validation batches and logs, which leave the weights as they are, are skipped. Planning and
preprocessing are outside the budget, as the other models' data preparation is.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

DATASET_ID = 901


def write_dataset(sections: Path, raw: Path, task: str) -> Path:
    """``real_em.build_store``'s section PNGs (``sections/{train,test}/{raw,label}/NN.png``) as an nnU-Net
    raw dataset: ``imagesTr``, ``labelsTr`` (0/1), ``imagesTs``, ``dataset.json``."""
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    dataset = raw / f"Dataset{DATASET_ID}_EM"
    for cube, images in (("train", "imagesTr"), ("test", "imagesTs")):
        (dataset / images).mkdir(parents=True)
        for png in sorted((sections / cube / "raw").glob("*.png")):
            (dataset / images / f"em_{png.stem}_0000.png").symlink_to(png)
    (dataset / "labelsTr").mkdir()
    for png in sorted((sections / "train" / "label").glob("*.png")):
        (dataset / "labelsTr" / f"em_{png.stem}.png").symlink_to(png)
    cases = len(list((dataset / "labelsTr").iterdir()))
    generate_dataset_json(
        str(dataset), {0: "EM"}, {"background": 0, task: 1}, cases, ".png", dataset_name=dataset.name
    )
    return dataset


@contextmanager
def stdout_to_stderr():
    """nnU-Net and its worker processes print to standard output, which carries the worker's JSON."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def budget_trainer(budget: float):
    """nnU-Net's default trainer whose poly learning rate (exponent 0.9) runs over ``budget`` seconds."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    class BudgetTrainer(nnUNetTrainer):
        steps = 0

        def run_training(self) -> None:
            self.on_train_start()
            self.network.train()
            start = time.perf_counter()
            while (elapsed := time.perf_counter() - start) < budget:
                self.optimizer.param_groups[0]["lr"] = self.initial_lr * (1 - elapsed / budget) ** 0.9
                self.train_step(next(self.dataloader_train))
                self.steps += 1
            self.on_train_end()

    return BudgetTrainer


def plan_and_preprocess(store: Path, work: Path) -> tuple[Path, dict, dict]:
    """The section images as an nnU-Net dataset, fingerprinted, planned and preprocessed by its defaults:
    the raw dataset's folder, the plans and the dataset description."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    dataset = write_dataset(store.parent, work / "raw", task=store.stem)
    extract_fingerprints([DATASET_ID], check_dataset_integrity=True)
    plans_name = plan_experiments([DATASET_ID])
    preprocess([DATASET_ID], plans_name, configurations=("2d",), num_processes=(2,))
    preprocessed = work / "preprocessed" / maybe_convert_to_dataset_name(DATASET_ID)
    plans, dataset_json = (
        json.loads((preprocessed / f"{n}.json").read_text()) for n in (plans_name, "dataset")
    )
    return dataset, plans, dataset_json


def predict_sections(trainer, images: Path, out: Path) -> None:
    """nnU-Net's usual predictor on every image of ``images``, given the trained network as nnU-Net's own
    final validation hands it over (loading it back by the trainer's name would search nnunetv2's package
    for this class)."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    trainer.set_deep_supervision_enabled(False)
    predictor = nnUNetPredictor(device=torch.device("cpu"), allow_tqdm=False)
    predictor.manual_initialization(
        trainer.network,
        trainer.plans_manager,
        trainer.configuration_manager,
        [trainer.network.state_dict()],
        trainer.dataset_json,
        type(trainer).__name__,
        trainer.inference_allowed_mirroring_axes,
    )
    out.mkdir()  # the sequential predictor writes into it without making it
    predictor.predict_from_files_sequential(str(images), str(out))


def train_nnunet(store: Path, work: Path, budget: float, seed: int) -> dict:
    """Plan, preprocess, train for ``budget`` seconds and predict the held-out sections of
    ``real_em.build_store``'s store from the section images beside it; their Dice against the store's
    labels, as every model's."""
    import torch
    from PIL import Image

    from tcupgan.data import CubeStore
    from tcupgan.metrics.lesion_wise import mask_dice

    for name in ("raw", "preprocessed", "results"):
        os.environ[f"nnUNet_{name}"] = str(work / name)
    with stdout_to_stderr():
        setup = time.perf_counter()
        dataset, plans, dataset_json = plan_and_preprocess(store, work)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        trainer = budget_trainer(budget)({**plans, "continue_training": False}, "2d", "all", dataset_json,
                                         torch.device("cpu"))  # fmt: skip
        start = time.perf_counter()
        trainer.run_training()
        trained = time.perf_counter()
        predict_sections(trainer, dataset / "imagesTs", work / "predicted")
    predicted = np.stack([np.asarray(Image.open(p)) for p in sorted((work / "predicted").glob("*.png"))])
    patch = trainer.configuration_manager.patch_size
    return {
        "dice": mask_dice(predicted > 0, CubeStore(store)["test"].label[...] > 0),
        "steps": trainer.steps,
        "voxels_per_step": int(trainer.batch_size * np.prod(patch)),
        "patch_size": list(patch),
        "batch_size": trainer.batch_size,
        "setup_seconds": round(start - setup, 1),
        "predict_seconds": round(time.perf_counter() - trained, 1),
        "precision": "32-true",  # nnU-Net's trainer autocasts on CUDA only
    }
