"""`kerakit runs`: the runs under an output folder, as a table.

    kerakit runs [DIR] [--name PATTERN] [--status STATUS] [--sort METRIC]
                 [--plot METRIC [--output FILE.png]]

Newest first, or best first by a metric; `--plot` overlays the learning curves of the
listed runs in one picture. Reads files only: no TensorFlow starts.
"""

from __future__ import annotations

import argparse

NAME = "runs"
HELP = "list the runs under an output folder: status, epochs, test metrics, duration"


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", nargs="?", default="runs", metavar="DIR",
                        help="the output folder (output.dir; default: runs)")  # fmt: skip
    parser.add_argument("--name", metavar="PATTERN",
                        help="only runs of recipes whose name matches (digits, 'digits-*')")  # fmt: skip
    parser.add_argument("--status", metavar="STATUS",
                        help="only runs with this status: complete, interrupted, diverged, "
                        "failed, killed, running")  # fmt: skip
    parser.add_argument("--sort", metavar="METRIC",
                        help="best first by this metric (test value, else the last epoch's; "
                        "lower is better for losses and errors)")  # fmt: skip
    parser.add_argument("--plot", metavar="METRIC",
                        help="overlay the listed runs' learning curves of METRIC (loss, val_accuracy, ...)")  # fmt: skip
    parser.add_argument("--output", metavar="PNG",
                        help="where --plot writes its picture (default: DIR/runs-METRIC.png)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kerakit.errors import KerakitError
    from kerakit.runs.table import STATUSES, format_table, list_runs, plot_rows

    root = Path(args.dir)
    if not root.is_dir():
        raise KerakitError(
            f"{root}: no such folder; pass the output folder (output.dir) of your runs"
        )
    if args.status and args.status not in STATUSES:
        from kerakit.errors import did_you_mean

        raise KerakitError(f"unknown status {args.status!r}{did_you_mean(args.status, STATUSES)}; "
                           f"statuses: {', '.join(STATUSES)}")  # fmt: skip
    rows = list_runs(root, name=args.name, sort=args.sort, status=args.status)
    print(format_table(rows, root, sort=args.sort))
    if args.plot:
        from kerakit.report.plots import save_figure

        if not rows:
            raise KerakitError(f"--plot {args.plot}: no runs to draw")
        output = Path(args.output) if args.output else root / f"runs-{args.plot}.png"
        save_figure(plot_rows(rows, args.plot, root), output)
        print(f"wrote {output}")
    return 0
