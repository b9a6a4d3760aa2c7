"""Exported artifacts' latency against the Keras model's own `predict` and a direct call.

Trains the digits CNN (configs/digits_cnn.yaml, a few epochs, in a temporary folder),
exports it with `kerakit.export.export` (savedmodel, onnx, litert and an int8 LiteRT file,
the parity gate on), and prints, per artifact, the latency of one sample and of a batch
of 32 (median and 95th percentile, ms) and the ratio to the Keras model's `predict` on one
sample (it carries milliseconds of overhead per call: a data adapter, callbacks) and to a
direct `model(x)` call. Target: LiteRT or ONNX answers one sample in at most 0.3x the time
of `predict`, with the gate's equal answers.

    python benchmarks/export.py            # ~1 minute
    python benchmarks/export.py --quick    # fewer epochs and repeats
    python benchmarks/export.py --json results.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
TARGET = 0.3  # an artifact's one-sample time / Keras predict's


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 epoch, fewer repeats")
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args(argv)

    import kerakit as kk
    from kerakit.export import export

    repeats = (30, 10) if args.quick else (300, 100)
    with tempfile.TemporaryDirectory(prefix="kerakit-bench-export-") as out:
        run = kk.train(REPO / "configs" / "digits_cnn.yaml", epochs=1 if args.quick else 5,
                       overrides=[f"output.dir={out}"], verbose=0, print_fn=lambda *a: None)  # fmt: skip
        report = export(run.path, quantize="int8", repeats=repeats, print_fn=lambda *a: None)
    rows = _rows(report)
    print(f"# Export latency: the digits CNN ({report['cpu']})\n")
    print("| artifact | max abs diff | 1 sample ms (median / p95) | batch 32 ms (median / p95) "
          "| 1 sample / Keras predict | 1 sample / model(x) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['diff']} | {r['sample']:.3f} / {r['sample_p95']:.3f} | "
              f"{r['batch']:.3f} / {r['batch_p95']:.3f} | {r['vs_predict']:.4f}x | "
              f"{r['vs_call']:.3f}x |")  # fmt: skip
    fast = [r for r in rows if r["name"] in ("onnx", "litert")]
    best = min(fast, key=lambda r: r["vs_predict"])
    ok = best["vs_predict"] <= TARGET and report["passed"]
    print(f"\nbest of onnx/litert: {best['name']} at {best['vs_predict']:.4f}x Keras predict on "
          f"one sample (target <= {TARGET}x), parity gate "
          f"{'passed' if report['passed'] else 'FAILED'}: {'ok' if ok else 'MISSED'}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "passed": report["passed"],
                                               "cpu": report["cpu"]}, indent=2))  # fmt: skip
    return 0 if ok else 1


def _rows(report: dict) -> list[dict]:
    predict = report["keras"]["latency"]
    call = report["keras"]["call_latency"]
    base, direct = predict["sample"]["median_ms"], call["sample"]["median_ms"]

    def row(name, lat, diff):
        return {"name": name, "diff": diff,
                "sample": lat["sample"]["median_ms"], "sample_p95": lat["sample"]["p95_ms"],
                "batch": lat["batch"]["median_ms"], "batch_p95": lat["batch"]["p95_ms"],
                "vs_predict": lat["sample"]["median_ms"] / base,
                "vs_call": lat["sample"]["median_ms"] / direct}  # fmt: skip

    rows = [row("keras predict", predict, "0"), row("keras model(x)", call, "0")]
    for name, a in report["artifacts"].items():
        if not a.get("refused"):
            rows.append(row(name, a["latency"], f"{a['max_abs_diff']:.1e}"))
    return rows


if __name__ == "__main__":
    sys.exit(main())
