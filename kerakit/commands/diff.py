"""`kerakit diff RUN_A RUN_B`: what differs between two runs.

The resolved recipes key path by key path, the data and imported-code hashes, the
versions, the git commits, and the metrics side by side with their difference.
Reads files only: no TensorFlow starts.
"""

from __future__ import annotations

import argparse

NAME = "diff"
HELP = "compare two runs: recipe keys, data, versions, metrics side by side"


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", metavar="RUN_A", help="a run folder")
    parser.add_argument("run_b", metavar="RUN_B", help="another run folder")


def run(args: argparse.Namespace) -> int:
    from kerakit.runs.diff import diff_runs, format_diff

    print(format_diff(diff_runs(args.run_a, args.run_b)))
    return 0
