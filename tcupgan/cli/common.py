"""Parser helpers every ``tcupgan`` command shares: one help layout, an example in each description."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["add_command", "formatter"]


def formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def add_command(sub, name: str, help: str, example: str, func: Callable) -> argparse.ArgumentParser:
    """A sub-command whose ``--help`` shows ``help`` and a runnable ``example``."""
    p = sub.add_parser(
        name, help=help, description=f"{help}\n\nexample:\n  {example}", formatter_class=formatter
    )
    p.set_defaults(func=func)
    return p
