"""The generator's seconds per call in one checkout, to compare two commits' code on the same machine.

Imports ``tcupgan`` from ``--root`` (a worktree of another commit: ``git worktree add /tmp/before HEAD~1``),
times ``TCuPGenerator`` at BraTS widths (random weights, median of five calls after a warm-up, freed
memory kept as predict and training do) and prints one JSON line. Run each checkout in its own process,
alternating, a few rounds:

    python studies/cpu-inference/checkout_times.py --root /tmp/before
    python studies/cpu-inference/checkout_times.py --root .
    python studies/cpu-inference/checkout_times.py --root . --train   # training steps instead

Inference: 4 x 4 x 32 x 128² cubes and one 1024² EM section, float32 and bf16 weights, no gradients.
Training: forward and backward of the mean logit on the EM crops (8 x 256²) and on 3D crops
(2 x 4 x 16 x 96²), float32 and under bf16 autocast.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch


def median_of_five(call: Callable[[], object]) -> float:
    call()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return round(sorted(times)[2], 3)


def inference(generator_class: type) -> dict[str, float]:
    result = {}
    for shape in [(4, 4, 32, 128, 128), (1, 1, 1, 1024, 1024)]:
        net = generator_class(shape[1], 3, widths=(16, 32, 48, 64, 128), batched_input=False).eval()
        for dtype in (torch.float32, torch.bfloat16):
            call = partial(net.to(dtype), torch.randn(*shape, dtype=dtype))
            with torch.inference_mode():
                result[f"{'x'.join(map(str, shape))} {dtype}"] = median_of_five(call)
    return result


def training_step(net: torch.nn.Module, x: torch.Tensor, bf16: bool) -> None:
    net.zero_grad(set_to_none=True)
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        logits = net(x)
    logits.float().mean().backward()


def training(generator_class: type) -> dict[str, float]:
    result = {}
    for shape in [(8, 1, 1, 256, 256), (2, 4, 16, 96, 96)]:
        net = generator_class(shape[1], 3, widths=(16, 32, 48, 64, 128), batched_input=False)
        x = torch.randn(*shape)
        for bf16 in (False, True):
            name = f"{'x'.join(map(str, shape))} {'bf16 autocast' if bf16 else 'float32'}"
            result[name] = median_of_five(partial(training_step, net, x, bf16))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, required=True, help="the checkout whose tcupgan to time")
    parser.add_argument("--train", action="store_true", help="time training steps instead")
    args = parser.parse_args()
    sys.path.insert(0, str(args.root.resolve()))
    from tcupgan.allocator import reuse_freed_memory
    from tcupgan.models.generator import TCuPGenerator

    reuse_freed_memory()
    torch.manual_seed(0)
    seconds = (training if args.train else inference)(TCuPGenerator)
    print(json.dumps({"root": str(args.root), "threads": torch.get_num_threads(), "seconds": seconds}))


if __name__ == "__main__":
    main()
