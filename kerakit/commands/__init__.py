"""Subcommands of `kerakit` that live outside cli.py, one module each.

Each module defines `NAME`, `HELP`, `add(parser)` (its arguments, on the
subparser cli.py made for it) and `run(args) -> int` (the exit status). A
module imports nothing heavy at the top: `kerakit --help` and a refused
recipe never start TensorFlow. cli.py adds them all to its parser and
dispatches to `run`; errors are cli.py's to report (KerakitError -> 2).
"""

from __future__ import annotations

import importlib
from types import ModuleType

# The modules, in the order `kerakit --help` lists them.
MODULES: tuple[str, ...] = ("weights", "lr_find", "search", "export", "serve",
                            "runs", "diff", "reproduce")  # fmt: skip


def commands() -> dict[str, ModuleType]:
    """The subcommand name -> its module."""
    out = {}
    for name in MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        out[module.NAME] = module
    return out
