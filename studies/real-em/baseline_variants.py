"""MONAI BasicUNet's usual 2D recipe with what TCuP-GAN's defaults have and that recipe lacks: bf16
autocast in training (``--bf16``, as ``tcupgan plan`` chooses on a CPU with bf16 instructions) and a
learning rate annealed over the budget (``--poly``, TCuP-GAN's ``lr_schedule=poly``): what the baseline
would reach if its user did the same.

The benchmark's own baseline (``tools/bench/real_em.py``) keeps MONAI's usual recipe: float32 (MONAI's
mixed precision is for CUDA) and Adam at a constant 1e-3. This runs the same ``train_monai`` with
``--bf16``: the network's forward pass under ``torch.autocast("cpu", torch.bfloat16)`` while training
(logits cast back to float32 for the loss; predict stays float32); ``--poly``: before every step Adam's
learning rate is 1e-3 x (1 - share of the budget spent) ** 0.9. Prints one JSON line per task.

    python studies/real-em/baseline_variants.py --bf16 --poly --task mitochondria --budget 900 --seed 0
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
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


def poly_by_time(budget: float) -> type[torch.optim.Adam]:
    """Adam whose learning rate falls as (1 - share of ``budget`` seconds spent) ** 0.9 before every step,
    the clock starting when it is built (``train_monai`` builds it just before its loop)."""

    class PolyByTimeAdam(torch.optim.Adam):
        def __init__(self, params, lr: float, **options) -> None:
            super().__init__(params, lr=lr, **options)
            self.start, self.base_lr = time.perf_counter(), lr

        def step(self, closure=None):
            spent = min(1.0, (time.perf_counter() - self.start) / budget)
            for group in self.param_groups:
                group["lr"] = self.base_lr * (1.0 - spent) ** 0.9
            return super().step(closure)

    return PolyByTimeAdam


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", nargs="+", default=["membranes"], choices=real_em.TASKS)
    parser.add_argument("--budget", type=float, default=240)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bf16", action="store_true", help="train under bf16 autocast")
    parser.add_argument("--poly", action="store_true", help="anneal the learning rate over the budget")
    args = parser.parse_args()
    reuse_freed_memory()  # as every benchmark process does
    torch.set_num_threads(2)
    if args.bf16:
        plain = real_em.monai_net
        real_em.monai_net = lambda model: TrainingAutocast(plain(model))
    if args.poly:
        torch.optim.Adam = poly_by_time(args.budget)  # train_monai looks it up when it builds its optimiser
    for task in args.task:
        with tempfile.TemporaryDirectory() as tmp:
            store = real_em.build_store(Path(tmp), task)
            crop, batch = (0, 256, 256), 8  # the benchmark's BasicUNet recipe
            result = real_em.train_monai(store, "monai_basicunet_2d", args.budget, crop, batch, args.seed)
        variant = {"bf16": args.bf16, "poly": args.poly}
        print(json.dumps({"task": task, "budget": args.budget, "seed": args.seed, **variant, **result}))


if __name__ == "__main__":
    main()
