"""`kerakit search RECIPE [--workers N] [--trials N] [--join STORAGE]`: the recipe's
`search:` section on Optuna (kerakit.search)."""

from __future__ import annotations

import argparse
import sys

NAME = "search"
HELP = "search the values of a recipe's search: section (Optuna; resumable, several workers)"


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="a recipe YAML file with a search: section")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="worker processes on this machine (default: search.workers, 1)")  # fmt: skip
    parser.add_argument("--trials", type=int, metavar="N", help="override search.trials")
    parser.add_argument("--join", metavar="STORAGE",
                        help="add a worker to the study in this database URL (another machine)")  # fmt: skip
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a recipe value (typed like YAML)")  # fmt: skip
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)


def run(args) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # trial lines as they happen, even in a pipe
    if args.workers is not None and args.workers < 1:
        from kerakit.errors import KerakitError

        raise KerakitError("--workers must be at least 1")
    if args.worker:  # one of the processes `--workers N` starts
        from kerakit.search import worker_main

        overrides = [*args.overrides, *([f"search.trials={args.trials}"] if args.trials else [])]
        return worker_main(
            args.recipe, overrides, args.imports, args.join, args.deadline, args.worker_index
        )
    from kerakit.search import search

    search(args.recipe, trials=args.trials, workers=args.workers, join=args.join,
           overrides=args.overrides, imports=args.imports, print_fn=print)  # fmt: skip
    return 0
