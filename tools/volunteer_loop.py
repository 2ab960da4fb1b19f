"""The whole volunteer loop, end to end, against the loopback Panoptes sandbox (what `tcupgan demo` runs).

    python -m tools.volunteer_loop --out loop-run            # ~8 minutes on 2 CPU cores
    python -m tools.volunteer_loop --out loop-run --quick    # under a minute: the tests' smoke run

Prints the report as JSON (also ``OUT/report.json``). See :mod:`tcupgan.demo` for the steps.
"""

from __future__ import annotations

import argparse
import json

from tcupgan.demo import run_demo


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, help="a new folder for stores, runs, subjects and the report")
    parser.add_argument("--quick", action="store_true", help="tiny cubes and few steps")
    parser.add_argument("--epochs", type=int, help="epochs of the first fit (default 18, quick 2)")
    parser.add_argument("--budget", type=int, help="slices sent to volunteers (default 24, quick 8)")
    parser.add_argument("--fail-rate", type=float, default=0.2, help="sandbox fault rate on writes (0.2)")
    args = parser.parse_args()
    report = run_demo(
        args.out, quick=args.quick, fail_rate=args.fail_rate, budget=args.budget, epochs=args.epochs
    )
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
