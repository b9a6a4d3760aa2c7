"""`kerakit export`: a run's model as SavedModel / ONNX / LiteRT files, each checked.

    kerakit export runs/digits-cnn/RUN --format savedmodel,onnx,litert
    kerakit export RUN --format litert --quantize int8 --metric-drop 0.5
    kerakit export RUN --format onnx --data npz:holdout.npz --tolerance 1e-5
    kerakit export RUN --format onnx --no-verify
    kerakit export RUN --format onnx --existing        # check RUN/export/model.onnx as it is

Writes RUN/export/ (the artifacts, report.md, export.json, signature.json) and
RUN/model_card.md. Exit status: 0 every artifact passed the parity gate, 1 one failed
(the message says which and by how much), 2 a bad argument or run folder.
"""

from __future__ import annotations

import argparse
import sys

NAME = "export"
HELP = "export a run's model to savedmodel/onnx/litert and check each against the Keras model"


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a run folder (or a .keras file, with --data)")
    parser.add_argument("--format", default="savedmodel,onnx,litert",
                        help="comma-separated: savedmodel, onnx, litert (default: all three)")  # fmt: skip
    parser.add_argument("--quantize", choices=("dynamic", "float16", "int8"),
                        help="also a quantized LiteRT file (int8: calibrated on training samples)")  # fmt: skip
    parser.add_argument("--data", help="check on this data source instead of the run's test split")
    parser.add_argument("--no-verify", action="store_true",
                        help="write the artifacts without the parity gate")  # fmt: skip
    parser.add_argument("--existing", action="store_true",
                        help="check the artifacts already in RUN/export/ instead of writing them")  # fmt: skip
    parser.add_argument("--tolerance", type=float, default=None,
                        help="largest absolute difference of a float artifact (default 1e-4)")  # fmt: skip
    parser.add_argument("--metric-drop", type=float, default=None, metavar="POINTS",
                        help="test-metric points a quantized artifact may lose (default 1)")  # fmt: skip
    parser.add_argument("--unsafe", action="store_true",
                        help="trust the model file (allows code in it; see docs/security.md)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from kerakit.errors import KerakitError
    from kerakit.export import METRIC_DROP, TOLERANCE, export, parse_formats

    formats = parse_formats(args.format)  # exit 2 before TensorFlow starts
    for flag, value in (("--tolerance", args.tolerance), ("--metric-drop", args.metric_drop)):
        if value is not None and not value >= 0:
            raise KerakitError(f"{flag} {value}: expected a number >= 0")
    report = export(
        args.run,
        formats,
        quantize=args.quantize,
        data=args.data,
        verify=not args.no_verify,
        tolerance=TOLERANCE if args.tolerance is None else args.tolerance,
        metric_drop=METRIC_DROP if args.metric_drop is None else args.metric_drop,
        trusted=args.unsafe,
        existing=args.existing,
        print_fn=print,
    )
    print(f"report: {args.run}/export/report.md, model card: {args.run}/model_card.md")
    if report["failures"]:
        for failure in report["failures"]:
            print(f"error: {failure}", file=sys.stderr)
        print("error: the export parity gate failed", file=sys.stderr)
        return 1
    print("parity gate: passed" if report["verified"] else "parity gate: skipped (--no-verify)")
    return 0
