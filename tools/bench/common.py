"""What every benchmark shares: the command line (``--tiny`` for the test suite) and JSON output."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from tcupgan.training import TCuPGAN
from tcupgan.training.module import write_checkpoint


def bench_cli(
    doc: str | None,
    argv: Sequence[str] | None,
    run: Callable[[argparse.Namespace], dict],
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> dict:
    """Parse ``argv`` (``--tiny`` plus the benchmark's own options), run, print and return the JSON."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes for a smoke test")
    if add_arguments:
        add_arguments(parser)
    result = run(parser.parse_args(argv))
    print(json.dumps(result, indent=2))
    return result


def save_checkpoint(path: Path, widths: tuple[int, ...]) -> Path:
    """A Lightning-format checkpoint of an untrained 1-channel model: speed and memory do not depend on
    the weights, and benchmarks must not need a training run first."""
    return write_checkpoint(TCuPGAN(1, 1, ["fg"], widths=widths, disc_width=4, disc_layers=2), path)
