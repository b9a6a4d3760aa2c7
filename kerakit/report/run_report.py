"""A run's `report.md` and pictures, written in one call at the end of a run."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kerakit._files import write_text
from kerakit.report.interpret import (
    format_most_confused_table,
    most_confused,
    top_losses,
    true_class_probability,
)
from kerakit.report.kinds import (
    INTERPRET_PICTURES,
    TEST_PICTURES,
    example_spec,
    input_kind,
    interpretation_for,
    pictures_for,
    task_kind,
    why_not,
)
from kerakit.report.metrics import (
    classification_report,
    confident_errors,
    predicted_with_confidence,
    regression_report,
    to_labels,
    to_probabilities,
)

# The pictures a run folder may hold, in the order report.md shows them (which ones a run
# gets: `kinds.PICTURES`, by task and input kind).
RUN_IMAGES = ("history.png", *TEST_PICTURES, *INTERPRET_PICTURES)


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
    sections: Sequence[tuple[str, str]] = (),
    not_drawn: Mapping[str, str] | None = None,
) -> Path:
    """Write `report.md` in a run folder: pictures, test metrics, per-class table.

    Args:
        run_dir: the run folder; the pictures are linked relative to it.
        metrics: test metrics, e.g. `model.evaluate(..., return_dict=True)`.
        report: a `classification_report`, or None to leave the table out.
        images: file names of pictures in `run_dir` to link; by default
            whichever of `RUN_IMAGES` exist.
        title: the page's heading (the recipe or run name reads well).
        sections: more `(heading, Markdown)` sections, after the tables (the most
            confidently wrong texts, a regression's numbers).
        not_drawn: `{picture: why}`, one line each under "Pictures not drawn".

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
        "predictions.png": "Predicted vs true, and the residuals (test set)",
        "forecast.png": "Forecasts vs the truth (test windows)",
        "samples.png": "Input, target and output (test set)",
        "top_losses.png": "Top losses: the test samples with the highest loss",
        "gradcam.png": "Grad-CAM of the top losses: where the model looked",
    }
    out = [f"# {title}", ""]
    out += ["## Test metrics", "", "| metric | value |", "|---|---:|"]
    out += [f"| {_md(str(k))} | {_fmt(v)} |" for k, v in metrics.items()]
    if not metrics:
        out.append("| (none recorded) | |")
    out.append("")
    if report is not None:
        out += ["## Per-class report (test set)", "", format_report_table(report)]
    for heading, text in sections:
        out += [f"## {heading}", "", text.rstrip(), ""]
    for name in images:
        caption = captions.get(name, Path(name).stem)
        out += [f"## {caption}", "", f"![{caption}]({Path(name).as_posix()})", ""]
    if not_drawn:
        out += ["## Pictures not drawn", ""]
        out += [f"- `{name}`: {why}" for name, why in not_drawn.items()]
        out.append("")
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
    task: str | None = None,
    inputs: str | None = None,
    interpret: bool = False,
    gradcam: tuple[Any, Any] | str | None = None,
    k_top: int = 9,
) -> dict[str, Path]:
    """Save a run's pictures as PNG and write its `report.md`, in one call.

    Draws `history.png` when a history is given, and the test-set pictures that fit the
    run's task and input kind (`kinds.PICTURES`): `confusion.png` and `errors.png` for a
    classifier (its errors as line plots for series, as a table in report.md for text
    and table rows), `predictions.png` (and `forecast.png` on series) for a regression,
    `samples.png` for a model whose output has its input's shape. report.md links what
    was drawn and says in one line why each other picture is not there.

    Args:
        run_dir: the run folder.
        history: a Keras `History`, its `.history` dict, or a `history.csv` path.
        y_true: test labels (a regression's targets).
        probs: the model's outputs on the same test samples, same order.
        x: the test inputs (for the errors and samples pictures).
        class_names: one name per class.
        metrics: test metrics for the report.
        title: the report's heading.
        n_errors: how many wrong samples to show.
        from_logits: whether `probs` are logits (the loss's `from_logits`): they are
            thresholded at 0 and shown through a sigmoid/softmax; None (the default):
            decided from the values (`kerakit.report.metrics.to_probabilities`).
        task: `"classification"`, `"multilabel"`, `"regression"`, `"same_shape"` or
            `"other"` (`kinds.task_kind`); None: a classifier, unless `probs` has the
            shape of `x`.
        inputs: the input kind (`kinds.input_kind`); None: decided from `x`.
        interpret: also a classifier's interpretation (`kinds.INTERPRETATION`): the `k_top`
            samples with the highest loss (`top_losses.png`, or a table for text and table
            rows), the most-confused pairs table and, given `gradcam`, `gradcam.png`.
        gradcam: `(indices, heat maps)`: Grad-CAM heat maps of the test images at those
            indices (`kerakit.training.interpret.gradcam` of the top losses), or the
            reason there are none (a model with no convolution).
        k_top: how many top losses to show.

    Returns:
        `{file name: path}` of everything written.

    Example:
        >>> write_run_pictures("runs/x", history="runs/x/history.csv")  # doctest: +SKIP
    """
    from kerakit.report import plots, samples  # matplotlib only when pictures are asked for
    from kerakit.report.interpret import plot_top_losses

    run_dir = Path(run_dir)
    tested = y_true is not None and probs is not None
    known = task is not None or tested
    if task is None:
        shape = np.shape(probs)[1:] if probs is not None else ()
        task = task_kind(None, example_spec(x)[0] if x is not None else None, shape)
    if inputs is None:
        inputs = input_kind(*example_spec(x)) if x is not None else "none"
    if tested and task in ("classification", "multilabel"):  # probabilities from here on
        probs = to_probabilities(probs, from_logits, multilabel=task == "multilabel")
    draw = {
        "confusion.png": lambda: plots.plot_confusion(y_true, probs, class_names),
        "errors.png": lambda: plots.show_errors(x, y_true, probs, class_names, n=n_errors),
        "predictions.png": lambda: samples.plot_predictions(y_true, probs),
        "forecast.png": lambda: samples.show_forecasts(x, y_true, probs),
        "samples.png": lambda: samples.show_samples(x, y_true, probs),
    }
    wanted = pictures_for(task, inputs)
    if interpret:
        wanted += interpretation_for(task, inputs)
        draw["top_losses.png"] = lambda: plot_top_losses(x, y_true, probs, class_names, k=k_top)
        draw["gradcam.png"] = lambda: _gradcam_figure(x, y_true, probs, gradcam, class_names)
    figures = {"history.png": lambda: plots.plot_history(history)} if history is not None else {}
    not_drawn: dict[str, str] = {}
    extra = INTERPRET_PICTURES if interpret and task == "classification" else ()
    for name in (*TEST_PICTURES, *extra):
        if name == "gradcam.png" and name in wanted and tested and not isinstance(gradcam, tuple):
            not_drawn[name] = gradcam or "no heat maps were given (Grad-CAM needs the model)"
        elif known and name not in wanted:
            not_drawn[name] = why_not(name, task, inputs)
        elif not tested:
            not_drawn[name] = "no test split (no test labels and predictions to draw it from)"
        elif x is None and name in ("errors.png", "forecast.png", "samples.png"):
            not_drawn[name] = "the test inputs were not given"
        else:
            figures[name] = draw[name]
    written = {name: plots.save_figure(make(), run_dir / name) for name, make in figures.items()}
    report, sections = None, []
    if tested and task == "classification":
        report = classification_report(
            y_true, probs, class_names, num_classes=_num_classes(probs, class_names)
        )
        if "errors table" in wanted and x is not None:
            table = format_errors_table(x, y_true, probs, class_names, n=n_errors)
            sections.append(("Most confidently wrong test samples", table))
        if "top losses table" in wanted and x is not None:
            table = format_top_losses_table(x, y_true, probs, class_names, k=k_top)
            sections.append(("Top losses: the test samples with the highest loss", table))
        if "most confused table" in wanted:
            pairs = most_confused(y_true, probs, class_names, from_logits=False)
            sections.append(("Most confused classes (true, predicted, count)",
                             format_most_confused_table(pairs)))  # fmt: skip
    if tested and task in ("regression", "same_shape"):
        what = "every output value" if task == "same_shape" else "the targets"
        table = format_regression_table(regression_report(y_true, probs))
        sections.append((f"Regression (test set, {what})", table))
    written["report.md"] = write_run_report(
        run_dir, metrics=dict(metrics or {}), report=report, images=list(figures), title=title,
        sections=sections, not_drawn=not_drawn,
    )  # fmt: skip
    return written


def format_regression_table(report: Mapping) -> str:
    """A `regression_report` as a Markdown table."""
    lines = ["| metric | value |", "|---|---:|"]
    names = {"mae": "MAE", "rmse": "RMSE", "r2": "R²", "support": "samples"}
    lines += [f"| {label} | {_fmt(report[key])} |" for key, label in names.items()]
    return "\n".join(lines) + "\n"


def format_errors_table(
    x: Any, y_true: Any, probs: Any, class_names: Sequence[str] | None = None, n: int = 16,
    width: int = 80,
) -> str:  # fmt: skip
    """The `n` most confidently wrong samples as a Markdown table: the input (a text, or a
    row's values, shortened to `width` characters), the true and predicted classes and the
    probability of the prediction. `probs` are probabilities (`to_probabilities`)."""
    idx = confident_errors(y_true, probs, n, from_logits=False)
    pred, conf = predicted_with_confidence(probs, from_logits=False)
    true = to_labels(y_true)
    if len(idx) == 0:
        return f"No misclassified samples among {len(true)}.\n"
    names = [str(c) for c in class_names] if class_names is not None else []

    def name(k: int) -> str:
        return _md(names[k] if k < len(names) else str(k))

    lines = ["| sample | input | true | predicted | probability |", "|---:|---|---|---|---:|"]
    for i in idx:
        text = _md(_shorten(_describe(x, int(i)), width)).replace("<", "&lt;")
        lines.append(f"| {i} | {text} | {name(true[i])} | {name(pred[i])} | {conf[i]:.3f} |")
    return "\n".join(lines) + "\n"


def format_top_losses_table(
    x: Any, y_true: Any, probs: Any, class_names: Sequence[str] | None = None, k: int = 9,
    width: int = 80,
) -> str:  # fmt: skip
    """The `k` samples with the highest loss as a Markdown table: the input (a text, or a
    row's values, shortened to `width` characters), the true and predicted classes, the
    loss and the probability of the true class. `probs` are probabilities."""
    true, pred, p_true = true_class_probability(y_true, probs, from_logits=False)
    idx, losses = top_losses(y_true, probs, k, from_logits=False)
    names = [str(c) for c in class_names] if class_names is not None else []

    def name(c: int) -> str:
        return _md(names[c] if c < len(names) else str(c))

    lines = ["| sample | input | true | predicted | loss | p(true) |",
             "|---:|---|---|---|---:|---:|"]  # fmt: skip
    for i, loss in zip(idx, losses):
        text = _md(_shorten(_describe(x, int(i)), width)).replace("<", "&lt;")
        lines.append(f"| {i} | {text} | {name(true[i])} | {name(pred[i])} | {loss:.3f} | "
                     f"{p_true[i]:.3f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _gradcam_figure(x: Any, y_true: Any, probs: Any, gradcam: tuple, class_names):
    from kerakit.report.interpret import plot_gradcam

    idx, heat = gradcam
    idx = np.asarray(idx, dtype=np.int64)
    true, pred, p_true = true_class_probability(y_true, probs, from_logits=False)
    names = [str(c) for c in class_names] if class_names is not None else []

    def name(c: int) -> str:
        return names[c] if c < len(names) else str(c)

    titles = [f"{name(pred[i])} / {name(true[i])} ({p_true[i]:.2f})" for i in idx]
    return plot_gradcam(np.asarray(x)[idx], heat, titles)


def _describe(x: Any, i: int) -> str:
    """Sample `i` of the inputs as one line: a text, `name=value` pairs, or its values."""
    if isinstance(x, Mapping):
        return ", ".join(f"{k}={_value(np.asarray(v)[i])}" for k, v in x.items())
    row = np.asarray(np.asarray(x)[i])
    if row.dtype.kind in "OSU":
        return " ".join(_value(v) for v in row.reshape(-1))
    values = row.reshape(-1)
    return ", ".join(f"{v:.3g}" for v in values[:8]) + (", ..." if values.size > 8 else "")


def _value(v: Any) -> str:
    v = np.asarray(v).reshape(-1)
    v = v[0] if v.size == 1 else v
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}"
    return str(v)


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


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
