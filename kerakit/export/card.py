"""What an export leaves to read: `RUN/export/report.md` (the parity table) and
`RUN/model_card.md` (what the model is for, its data, metrics per class with confidence
intervals, the parity table, the environment). Plain text from plain values: no TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kerakit.report.metrics import confusion_matrix

PRESETS = {
    "multiclass": "classification: one class of several per sample",
    "multiclass_onehot": "classification: one class of several per sample (one-hot labels)",
    "binary": "binary classification",
    "multilabel": "multi-label classification: any number of labels per sample",
    "regression": "regression: numbers out",
}


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default); (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def per_class(y_true: Any, y_pred: Any, class_names: Sequence[str]) -> list[dict]:
    """Per class: precision and recall with their Wilson 95% intervals, and the support."""
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    rows = []
    for i, name in enumerate(class_names):
        tp, predicted, support = int(cm[i, i]), int(cm[:, i].sum()), int(cm[i].sum())
        rows.append({"class": str(name), "support": support,
                     "precision": tp / predicted if predicted else 0.0,
                     "precision_ci": wilson(tp, predicted),
                     "recall": tp / support if support else 0.0,
                     "recall_ci": wilson(tp, support)})  # fmt: skip
    return rows


def _ms(t: Mapping | None) -> str:
    return "-" if not t else f"{t['median_ms']:.3f} / {t['p95_ms']:.3f}"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _metric(m: Sequence | None) -> str:
    if not m or all(v is None for v in m):
        return "-"
    parts = []
    for v in m:
        if v is None:
            parts.append("-")
        elif "accuracy" in v:
            parts.append(f"{v['accuracy']:.2f}%")
        else:
            parts.append(f"MAE {v['mae']:.4g}")
    return ", ".join(parts)


def parity_table(report: Mapping) -> str:
    """The Markdown table: one row for the Keras model, one per artifact."""
    head = ("| artifact | file | size | max abs diff | top-1 agreement | test metric | "
            "1 sample ms (median / p95) | batch ms (median / p95) | gate |")  # fmt: skip
    lines = [head, "|" + "---|" * 9]
    keras = report.get("keras") or {}
    lat = keras.get("latency") or {}
    lines.append(f"| keras (`predict`) | {keras.get('file', '-')} | {_size(keras.get('bytes'))} "
                 f"| 0 | - | {_metric(keras.get('metrics'))} | {_ms(lat.get('sample'))} | "
                 f"{_ms(lat.get('batch'))} | reference |")  # fmt: skip
    if keras.get("call_latency"):
        call = keras["call_latency"]
        lines.append(f"| keras (`model(x)`) | | | 0 | - | | {_ms(call.get('sample'))} | "
                     f"{_ms(call.get('batch'))} | reference |")  # fmt: skip
    for name, row in report.get("artifacts", {}).items():
        if row.get("refused"):
            lines.append(f"| {name} | - | - | - | - | - | - | - | refused: {row['refused']} |")
            continue
        lat = row.get("latency") or {}
        diff = "-" if row.get("max_abs_diff") is None else f"{row['max_abs_diff']:.2e}"
        agree = row.get("top1_agreement")
        gate = row.get("gate", "-")
        lines.append(
            f"| {name} | {row['file']} | {_size(row.get('bytes'))} | {diff} | "
            f"{'-' if agree is None else f'{agree:.2f}%'} | {_metric(row.get('metrics'))} | "
            f"{_ms(lat.get('sample'))} | {_ms(lat.get('batch'))} | {gate} |"
        )
    return "\n".join(lines)


def export_markdown(report: Mapping) -> str:
    """RUN/export/report.md."""
    lines = [f"# Export of {report.get('name') or report.get('source')}", ""]
    if not report.get("verified"):
        lines += ["**The parity gate was skipped (`--no-verify`)**: the artifacts were written "
                  "but not compared with the Keras model.", ""]  # fmt: skip
    data = report.get("data") or {}
    if data:
        lines += [f"Checked on {data.get('examples', 0):,} samples of the {data.get('split')} "
                  f"split of `{data.get('source')}`; latency on {report.get('cpu', 'this CPU')} "
                  f"(one sample, and a batch of {report.get('batch', 32)}).", ""]  # fmt: skip
    lines += [f"Tolerance: {report.get('tolerance'):g} absolute for float artifacts; a test "
              f"metric drop of at most {report.get('metric_drop'):g} points for quantized ones.",
              "", parity_table(report), ""]  # fmt: skip
    if report.get("failures"):
        lines += ["## Failed", ""] + [f"- {f}" for f in report["failures"]] + [""]
    sig = report.get("signature") or {}
    if sig:
        lines += ["## Inputs and outputs", "", "| | name | shape | dtype |", "|---|---|---|---|"]
        for part in ("inputs", "outputs"):
            for t in sig.get(part, []):
                lines.append(f"| {part[:-1]} | {t['name']} | {t['shape']} | {t['dtype']} |")
        lines.append("")
    return "\n".join(lines)


def model_card(report: Mapping, *, recipe: Mapping | None, classes: Sequence[str] | None,
               metrics: Mapping | None, sizes: Mapping | None, y_true: Any = None,
               probs: Any = None, environment: Mapping | None = None) -> str:  # fmt: skip
    """RUN/model_card.md."""
    name = report.get("name") or "model"
    preset = ((recipe or {}).get("compile") or {}).get("preset")
    data = (recipe or {}).get("data") or {}
    lines = [f"# Model card: {name}", "", "## What it is for", ""]
    lines.append(f"- Task: {PRESETS.get(preset, preset or 'see the recipe')}.")
    if classes:
        shown = ", ".join(str(c) for c in classes[:30])
        lines.append(f"- Classes ({len(classes)}): {shown}{' ...' if len(classes) > 30 else ''}.")
    sig = report.get("signature") or {}
    for t in sig.get("inputs", []):
        lines.append(f"- Input `{t['name']}`: shape {t['shape']}, {t['dtype']}"
                     f"{_range(report.get('value_range'))}.")  # fmt: skip
    lines += ["- Intended use: the predictions of the recipe's task on data like its training "
              "data; not checked on any other population.", "", "## Data", ""]  # fmt: skip
    lines.append(f"- Source: `{data.get('source', '?')}`.")
    if sizes:
        lines.append(
            "- Sizes: " + ", ".join(f"{k} {int(v):,}" for k, v in sizes.items() if v) + "."
        )
    lines += ["", "## Test metrics", ""]
    if metrics:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in metrics.items() if isinstance(v, (int, float))]
    else:
        lines.append("No test metrics recorded (the run has no test split).")
    if classes and y_true is not None and probs is not None and np.ndim(probs) == 2:
        rows = per_class(y_true, probs, classes)
        lines += ["", "Per class, with Wilson 95% confidence intervals:", "",
                  "| class | support | precision | 95% CI | recall | 95% CI |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for r in rows:
            lines.append(f"| {r['class']} | {r['support']} | {r['precision']:.3f} | "
                         f"{r['precision_ci'][0]:.3f}-{r['precision_ci'][1]:.3f} | "
                         f"{r['recall']:.3f} | {r['recall_ci'][0]:.3f}-{r['recall_ci'][1]:.3f} |")  # fmt: skip
    lines += ["", "## Exported artifacts (the parity gate)", ""]
    if not report.get("verified"):
        lines.append("The gate was skipped (`--no-verify`).")
    lines += [parity_table(report), "", "## Environment", ""]
    for k, v in (environment or {}).items():
        lines.append(f"- {k}: {v}")
    return "\n".join(lines) + "\n"


def _range(value_range: Sequence | None) -> str:
    if not value_range:
        return ""
    return (f" (the raw training inputs spanned [{value_range[0]:g}, {value_range[1]:g}]; the "
            "artifact takes what the run's model.keras takes)")  # fmt: skip
