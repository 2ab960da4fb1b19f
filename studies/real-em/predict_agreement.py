"""How far ``predict``'s choices move a real model's prediction: blocks, bf16, window size.

Trains TCuP-GAN through the benchmark's path (``tools/bench/real_em.py``: ingest, plan, fit) for
``--steps`` generator steps (a step count, not a budget, so other work on the machine does not change the
model), then predicts the held-out sections with the plan's windows in one block (the reference), in
blocks of two windows across (``BLOCK_VOXELS`` = 2^18), in bf16, and with each ``--rois`` window; prints
one JSON line of per-voxel differences (1/255 units), changed labels and Dice.

    python studies/real-em/predict_agreement.py --task membranes --steps 35     # ~5 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tcupgan.data import CubeStore  # noqa: E402
from tcupgan.inference import predict  # noqa: E402
from tcupgan.metrics.lesion_wise import mask_dice  # noqa: E402
from tools.bench import real_em  # noqa: E402


def predicted(ckpt: Path, store: Path, precision: str = "32", **options) -> tuple[np.ndarray, np.ndarray]:
    """The held-out cube's stored probabilities (0-255) and its label mask after one ``predict``
    (float32 unless told: ``auto`` is bf16 on CPUs with bf16 instructions)."""
    predict.predict_store(ckpt, store, cubes=["test"], overwrite=True, precision=precision, **options)
    cube = CubeStore(store)["test"]
    return cube["probability"][0].astype(np.int16), cube.label[...] > 0


def compare(probability: np.ndarray, reference: np.ndarray, label: np.ndarray) -> dict:
    difference = np.abs(probability - reference)
    return {
        "mean": round(float(difference.mean()), 3), "max": int(difference.max()),
        "labels_changed": round(float(((probability > 127) != (reference > 127)).mean()), 5),
        "dice": round(mask_dice(probability > 127, label), 4),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", choices=real_em.TASKS, default="membranes")
    parser.add_argument("--steps", type=int, default=35, help="generator steps of the planned fit")
    parser.add_argument("--rois", type=int, nargs="*", default=[256, 384], help="other window sizes (px)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        store = real_em.build_store(work / "data", args.task)
        # Lightning counts the generator's and the discriminator's optimiser steps: two per batch
        real_em.train_tcupgan(store, work, 10**6, 0, ["--trainer.max_steps", str(2 * args.steps)])
        ckpt = work / "final.ckpt"
        reference, label = predicted(ckpt, store)
        roi = CubeStore(store)["test"]["prediction"].attrs["roi"]
        result = {"task": args.task, "steps": args.steps, "roi": roi,
                  "dice": round(mask_dice(reference > 127, label), 4)}  # fmt: skip
        default_blocks, predict.BLOCK_VOXELS = predict.BLOCK_VOXELS, 2**18
        result["small_blocks"] = compare(predicted(ckpt, store)[0], reference, label)
        predict.BLOCK_VOXELS = default_blocks
        result["bf16"] = compare(predicted(ckpt, store, precision="bf16")[0], reference, label)
        for size in args.rois:
            result[f"roi_{size}"] = compare(predicted(ckpt, store, roi=(1, size, size))[0], reference, label)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
