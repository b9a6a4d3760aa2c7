"""A run's `report.md` and pictures, written in one call at the end of a run."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kerakit._files import write_text
from kerakit.report.metrics import classification_report, to_probabilities

# The pictures a run folder may hold, in the order report.md shows them.
RUN_IMAGES = ("history.png", "confusion.png", "errors.png")


def format_report_table(report: Mapping) -> str:
    """A `classification_report` as a Markdown table, one row per class.

    Example:
        >>> print(format_report_table(classification_report([0, 1], [0, 1])))  # doctest: +SKIP
        | class | precision | recall | F1 | support |
        ...
    """
    lines = [
        "| class | precision | recall | F1 | support |",
        "|---|---:|---:|---:|---:|",
    ]

    def row(name: str, r: Mapping) -> str:
        cells = [f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}"]
        return f"| {_md(name)} | " + " | ".join(cells) + f" | {r['support']} |"

    for name, r in report["per_class"].items():
        lines.append(row(name, r))
    lines.append(row("**macro avg**", report["macro_avg"]))
    lines.append(row("**weighted avg**", report["weighted_avg"]))
    lines.append(f"| **accuracy** | | | {report['accuracy']:.3f} | {report['support']} |")
    return "\n".join(lines) + "\n"


def write_run_report(
    run_dir: str | os.PathLike,
    *,
    metrics: Mapping[str, Any],
    report: Mapping | None = None,
    images: Sequence[str] | None = None,
    title: str = "kerakit run",
) -> Path:
    """Write `report.md` in a run folder: pictures, test metrics, per-class table.

    Args:
        run_dir: the run folder; the pictures are linked relative to it.
        metrics: test metrics, e.g. `model.evaluate(..., return_dict=True)`.
        report: a `classification_report`, or None to leave the table out.
        images: file names of pictures in `run_dir` to link; by default
            whichever of `history.png`, `confusion.png`, `errors.png` exist.
        title: the page's heading (the recipe or run name reads well).

    Returns:
        The path of the written `report.md` (written atomically).

    Example:
        >>> write_run_report("runs/digits", metrics={"loss": 0.1, "accuracy": 0.97})  # doctest: +SKIP
    """
    run_dir = Path(run_dir)
    if images is None:
        images = [name for name in RUN_IMAGES if (run_dir / name).is_file()]
    captions = {
        "history.png": "Learning curves",
        "confusion.png": "Confusion matrix (test set)",
        "errors.png": "Most confidently wrong test samples",
    }
    out = [f"# {title}", ""]
    out += ["## Test metrics", "", "| metric | value |", "|---|---:|"]
    out += [f"| {_md(str(k))} | {_fmt(v)} |" for k, v in metrics.items()]
    if not metrics:
        out.append("| (none recorded) | |")
    out.append("")
    if report is not None:
        out += ["## Per-class report (test set)", "", format_report_table(report)]
    for name in images:
        caption = captions.get(name, Path(name).stem)
        out += [f"## {caption}", "", f"![{caption}]({Path(name).as_posix()})", ""]
    return write_text(run_dir / "report.md", "\n".join(out).rstrip() + "\n")


def write_run_pictures(
    run_dir: str | os.PathLike,
    *,
    history: Any = None,
    y_true: Any = None,
    probs: Any = None,
    x: Any = None,
    class_names: Sequence[str] | None = None,
    metrics: Mapping[str, Any] | None = None,
    title: str = "kerakit run",
    n_errors: int = 16,
    from_logits: bool | None = None,
) -> dict[str, Path]:
    """Save a run's pictures as PNG and write its `report.md`, in one call.

    Draws `history.png` when a history is given, `confusion.png` when test
    labels and predictions are given, and `errors.png` when the test inputs
    are given too; then writes `report.md` linking whatever was drawn.

    Args:
        run_dir: the run folder.
        history: a Keras `History`, its `.history` dict, or a `history.csv` path.
        y_true: test labels.
        probs: the model's predictions on the same test samples, same order.
        x: the test inputs (for the errors picture).
        class_names: one name per class.
        metrics: test metrics for the report.
        title: the report's heading.
        n_errors: how many wrong samples to show.
        from_logits: whether `probs` are logits (the loss's `from_logits`): they are
            thresholded at 0 and shown through a sigmoid/softmax; None (the default):
            decided from the values (`kerakit.report.metrics.to_probabilities`).

    Returns:
        `{file name: path}` of everything written.

    Example:
        >>> write_run_pictures("runs/x", history="runs/x/history.csv")  # doctest: +SKIP
    """
    from kerakit.report import plots  # matplotlib only when pictures are asked for

    run_dir = Path(run_dir)
    if probs is not None:  # probabilities from here on, whatever the output layer gives
        probs = to_probabilities(probs, from_logits)
    written: dict[str, Path] = {}
    figures = {}
    if history is not None:
        figures["history.png"] = lambda: plots.plot_history(history)
    if y_true is not None and probs is not None:
        figures["confusion.png"] = lambda: plots.plot_confusion(y_true, probs, class_names)
        if x is not None:
            figures["errors.png"] = lambda: plots.show_errors(
                x, y_true, probs, class_names, n=n_errors
            )
    for name, draw in figures.items():
        written[name] = plots.save_figure(draw(), run_dir / name)
    report = None
    if y_true is not None and probs is not None:
        report = classification_report(
            y_true, probs, class_names, num_classes=_num_classes(probs, class_names)
        )
    written["report.md"] = write_run_report(
        run_dir, metrics=dict(metrics or {}), report=report, images=list(figures), title=title
    )
    return written


def _num_classes(probs: Any, class_names: Sequence[str] | None) -> int | None:
    if class_names is not None:
        return len(class_names)
    p = np.asarray(probs)
    if p.ndim == 2 and p.shape[1] > 1:
        return int(p.shape[1])
    return None


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return _md(str(value))
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value == int(value) and abs(value) < 1e12:
        return str(int(value))
    return f"{value:.4g}"
