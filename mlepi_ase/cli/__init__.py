"""The ``mlepi`` command line.

Each subcommand lives in its own module of this package and exposes
``register(subparsers) -> None``, which adds an ``argparse`` sub-parser whose ``func`` default is
called with the parsed arguments.  To add a subcommand, add its module name to :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from .. import __version__
from ..allocator import enabled_by_environment, retain_freed_memory

COMMANDS: list[str] = [
    "demo",
    "run",
    "compare",
    "phonons",
    "sample",
    "make_dataset",
    "train_phonon",
    "train_electron",
]
"""Modules of :mod:`mlepi_ase.cli` that register a subcommand, in the order shown by ``--help``."""


def build_parser() -> argparse.ArgumentParser:
    """The ``mlepi`` argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="mlepi",
        description="Machine-learned electron-phonon interactions for layered materials.",
    )
    parser.add_argument("--version", action="version", version=f"mlepi_ase {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mlepi`` console script; returns the exit status.

    Keeps freed memory in the process first (:func:`mlepi_ase.allocator.retain_freed_memory`; faster
    PyTorch on a CPU) unless ``MLEPI_RETAIN_FREED_MEMORY=0``.
    """
    if enabled_by_environment():
        retain_freed_memory()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        result = args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"mlepi {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
