"""MONAI BasicUNet's usual 2D recipe with one change, bf16 autocast in training: what the baseline would
reach if its user also trained in bf16 on a CPU with bf16 instructions, as ``tcupgan plan`` now has
TCuP-GAN do there.

The benchmark's own baseline (``tools/bench/real_em.py``) stays float32, as MONAI's recipes train on CPUs
(their mixed precision is for CUDA). This runs the same ``train_monai`` with the network's forward pass
under ``torch.autocast("cpu", torch.bfloat16)`` while training (logits cast back to float32 for the loss);
predict stays float32. Prints one JSON line per task.

    python studies/real-em/baseline_bf16.py --task membranes --budget 240 --seed 0
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tcupgan.allocator import reuse_freed_memory  # noqa: E402
from tools.bench import real_em  # noqa: E402


class TrainingAutocast(torch.nn.Module):
    """The network's forward pass under bf16 autocast in training mode, float32 logits out."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", torch.bfloat16, enabled=self.training):
            return self.net(x).float()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", nargs="+", default=["membranes"], choices=real_em.TASKS)
    parser.add_argument("--budget", type=float, default=240)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    reuse_freed_memory()  # as every benchmark process does
    torch.set_num_threads(2)
    plain = real_em.monai_net
    real_em.monai_net = lambda model: TrainingAutocast(plain(model))
    for task in args.task:
        with tempfile.TemporaryDirectory() as tmp:
            store = real_em.build_store(Path(tmp), task)
            crop, batch = (0, 256, 256), 8  # the benchmark's BasicUNet recipe
            result = real_em.train_monai(store, "monai_basicunet_2d", args.budget, crop, batch, args.seed)
        print(json.dumps({"task": task, "budget": args.budget, "seed": args.seed, "bf16": True, **result}))


if __name__ == "__main__":
    main()
