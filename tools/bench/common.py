"""What every benchmark shares: the command line (``--tiny`` for the test suite) and JSON output."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from tcupgan.allocator import reuse_freed_memory


def bench_cli(
    doc: str | None,
    argv: Sequence[str] | None,
    run: Callable[[argparse.Namespace], dict],
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> dict:
    """Parse ``argv`` (``--tiny`` plus the benchmark's own options), run, print and return the JSON.

    Every benchmark process, baselines included, keeps freed memory for reuse as tcupgan's training and
    ``predict`` do (:func:`tcupgan.allocator.reuse_freed_memory`): a ratio then compares the networks
    and their recipes, not two allocator settings."""
    reused = reuse_freed_memory()
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes for a smoke test")
    if add_arguments:
        add_arguments(parser)
    result = run(parser.parse_args(argv))
    result["freed_memory_reused"] = reused
    print(json.dumps(result, indent=2))
    return result


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). ``ru_maxrss`` is no use in a child process: Linux
    carries the forking parent's peak into it."""
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024


def save_checkpoint(path: Path, widths: tuple[int, ...]) -> Path:
    """A Lightning-format checkpoint of an untrained 1-channel model: speed and memory do not depend on
    the weights, and benchmarks must not need a training run first."""
    from tcupgan.training import TCuPGAN  # here, so that timing a light process does not load torch
    from tcupgan.training.module import write_checkpoint

    return write_checkpoint(TCuPGAN(1, 1, ["fg"], widths=widths, disc_width=4, disc_layers=2), path)


def at_least(low: int, message: str = "") -> Callable[[str], int]:
    """An argparse type for integers of ``low`` or more (``message``: why, when the plain bound is not)."""

    def integer(text: str) -> int:  # argparse names it in "invalid integer value: 'x'"
        if int(text) < low:
            raise argparse.ArgumentTypeError(message or f"must be {low} or more")
        return int(text)

    return integer


def share(text: str) -> float:
    """An argparse type for a share, 0-1."""
    if not 0 <= float(text) <= 1:  # refused here, not after the base model has trained
        raise argparse.ArgumentTypeError("must be a share, 0-1")
    return float(text)


def crop_share(text: str) -> float:
    """An argparse type for a share of training crops: 0 up to, not including, 1."""
    if share(text) == 1:  # as data.corrections_share: some crops must come from the labelled cubes
        raise argparse.ArgumentTypeError("must be below 1: some crops come from the labelled cubes")
    return float(text)
