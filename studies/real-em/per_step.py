"""Learning per step: networks trained by one plain loop (MONAI BasicUNet's usual recipe) on the same crops.

Separates what the network learns per optimiser step from everything else the product's training path
adds (the discriminator, the loss weighting, the optimiser, the data pipeline): each network sees the
same 8 single-section crops of 256 x 256 per step from ``tools/bench/real_em.py``'s sampler, DiceCE
(``--loss dicece_squared``: with MONAI's ``squared_pred``, the product's), Adam 1e-3 (``--optimiser
product``: NAdam betas 0.9/0.99, the loss x 100 and gradient norms clipped to 1, as ``TCuPGAN`` trains;
``nadam``: NAdam alone),
then held-out Dice of sections 12-14 after ``--steps`` steps. Prints one JSON line.
``tcupgan`` is the product's generator; ``tcupgan_concatenated_skips`` the same with decoder levels that
concatenate the skip (``skip_merge="concatenate"``, the default until 2026-12-07); ``tcupgan_paper_levels``
the paper's levels: no per-level convolutions, concatenated skips. ``original_wide_last``: the original's
layout with its last decoder level 16 channels wide instead of one per class.

    python studies/real-em/per_step.py --network tcupgan --task mitochondria --steps 50
    python studies/real-em/per_step.py --network original --task membranes --steps 50
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from monai.inferers import sliding_window_inference  # noqa: E402
from monai.losses import DiceCELoss  # noqa: E402

from tcupgan.data import CubeStore  # noqa: E402
from tcupgan.data.transforms import normalise  # noqa: E402
from tcupgan.metrics.lesion_wise import mask_dice  # noqa: E402
from tcupgan.models import TCuPGenerator  # noqa: E402
from tools.bench.original_layout import OriginalLayoutUNet  # noqa: E402
from tools.bench.real_em import build_store, crop_sampler, monai_net  # noqa: E402


class Sections(torch.nn.Module):
    """A cube network applied to a batch of 2D sections (depth 1)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x[:, :, None])[:, :, 0]


def network(name: str) -> torch.nn.Module:
    if name == "tcupgan_concatenated_skips":
        return Sections(TCuPGenerator(1, 1, skip_merge="concatenate"))
    if name == "tcupgan_paper_levels":
        return Sections(TCuPGenerator(1, 1, level_conv=False, skip_merge="concatenate"))
    if name == "basicunet":
        return monai_net("monai_basicunet_2d")
    if name == "original":
        return Sections(OriginalLayoutUNet(1, 1))
    if name == "original_wide_last":  # the original's last decoder level 16 channels wide, not 1
        net = OriginalLayoutUNet(1, 16)
        net.head = torch.nn.Conv3d(16, 1, (1, 3, 3), padding=(0, 1, 1))
        return Sections(net)
    return Sections(TCuPGenerator(1, 1))


def train(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    store = CubeStore(build_store(Path(tempfile.mkdtemp()), args.task))
    train_cube, test = store["train"], store["test"]
    sample = crop_sampler(normalise(train_cube.image[...], train_cube.attrs), train_cube.label[...] > 0,
                          (0, 256, 256), 8, np.random.default_rng(args.seed))  # fmt: skip
    torch.manual_seed(args.seed)
    net = network(args.network)
    loss = DiceCELoss(sigmoid=True, squared_pred=args.loss == "dicece_squared")
    if args.optimiser == "adam":
        optimiser, scale = torch.optim.Adam(net.parameters(), lr=1e-3), 1.0
    elif args.optimiser == "nadam":  # the paper's optimiser alone: no loss scale, no clipping
        optimiser, scale = torch.optim.NAdam(net.parameters(), lr=1e-3, betas=(0.9, 0.99)), 1.0
    else:
        optimiser, scale = torch.optim.NAdam(net.parameters(), lr=1e-3, betas=(0.9, 0.99)), 100.0
    start, losses = time.perf_counter(), []
    for _ in range(args.steps):
        image, label = sample()
        optimiser.zero_grad()
        value = loss(net(image), label)
        (scale * value).backward()
        if args.optimiser == "product":
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimiser.step()
        losses.append(value.item())
    seconds = time.perf_counter() - start
    net.eval()
    with torch.no_grad():
        planes = torch.from_numpy(normalise(test.image[...], test.attrs)).permute(1, 0, 2, 3)
        prob = sliding_window_inference(planes, [256, 256], 4, net, overlap=0.25, mode="gaussian")[:, 0]
    return {**vars(args), "seconds_per_step": round(seconds / args.steps, 2),
            "dice": round(mask_dice(torch.sigmoid(prob).numpy() > 0.5, test.label[...] > 0), 3),
            "loss_first_10": round(float(np.mean(losses[:10])), 3),
            "loss_last_10": round(float(np.mean(losses[-10:])), 3)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--network",
        default="tcupgan",
        choices=[
            "tcupgan",
            "tcupgan_paper_levels",
            "tcupgan_concatenated_skips",
            "original",
            "original_wide_last",
            "basicunet",
        ],
    )
    parser.add_argument("--task", choices=["mitochondria", "membranes"], default="mitochondria")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--loss", choices=["dicece", "dicece_squared"], default="dicece")
    parser.add_argument("--optimiser", choices=["adam", "nadam", "product"], default="adam")
    parser.add_argument("--seed", type=int, default=0, help="seed of the crops and the weights")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: two runs side by side)")
    print(json.dumps(train(parser.parse_args())))


if __name__ == "__main__":
    main()
