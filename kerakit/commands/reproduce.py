"""`kerakit reproduce RUN`: train a run again from its resolved recipe and compare.

    kerakit reproduce RUN [--tolerance X] [--output-dir DIR]

Warns first when the run's provenance cannot match (its data, a version or the imported
code changed), trains into a new run folder, and prints each metric's original and new
value and whether they agree; with `deterministic: true`, whether the final weights are
identical bit for bit. Exit status 0: it reproduces; 1: it does not.
"""

from __future__ import annotations

import argparse

NAME = "reproduce"
HELP = "train a run again from its recipe and check that its metrics (and weights) match"


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="a finished run folder")
    parser.add_argument("--tolerance", type=float, metavar="X",
                        help="how far a metric may move: |new - old| <= X * max(1, |old|) "
                        "(default 1e-6 with deterministic: true, else 0.02)")  # fmt: skip
    parser.add_argument("--output-dir", metavar="DIR",
                        help="where the new run folder goes (default: beside the original's)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from kerakit.runs.reproduce import format_reproduction, reproduce

    result = reproduce(args.run_dir, tolerance=args.tolerance, output_dir=args.output_dir)
    print(format_reproduction(result))
    return 0 if result.ok else 1
