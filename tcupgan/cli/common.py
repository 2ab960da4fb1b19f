"""Parser helpers every ``tcupgan`` command shares: one help layout, an example in each description."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["add_command", "add_ingest_options", "add_store_argument", "formatter"]


def formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def add_command(sub, name: str, help: str, example: str, func: Callable) -> argparse.ArgumentParser:
    """A sub-command whose ``--help`` shows ``help`` and a runnable ``example``."""
    p = sub.add_parser(
        name, help=help, description=f"{help}\n\nexample:\n  {example}", formatter_class=formatter
    )
    p.set_defaults(func=func)
    return p


def add_store_argument(p: argparse.ArgumentParser, cube: bool = False) -> None:
    """The store as the first argument (``--store`` works too, see ``store_spelling``), then a cube."""
    p.add_argument("store", help="path of the cube store (or --store STORE)")
    if cube:
        p.add_argument("cube", help="cube name (see `tcupgan info`)")


def add_ingest_options(p: argparse.ArgumentParser, names: bool = False, label_mode: bool = False) -> None:
    """The options every ``ingest`` command shares (store, split, overwrite), and optionally cube and class
    names and how to read label values."""
    p.add_argument("--store", required=True, help="store to create or extend")
    p.add_argument("--split", choices=["train", "val", "test"], help="put every cube in this split")
    p.add_argument("--overwrite", action="store_true", help="replace cubes that already exist")
    if names:
        p.add_argument("--names", nargs="+", help="cube names (default: file names)")
        p.add_argument(
            "--class-names",
            nargs="+",
            help="what the labels mark, e.g. kelp (default: the store's, or foreground)",
        )
    if label_mode:
        p.add_argument(
            "--label-mode", choices=["binary", "values"], default="binary",
            help="binary: non-zero is foreground; values: keep integer classes",
        )  # fmt: skip
