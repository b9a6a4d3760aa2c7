"""Pictures of a run: learning curves, confusion matrix, wrong samples, batch grids.

Every function returns a `matplotlib.figure.Figure` built directly (not through
`pyplot`), so it draws headless with the Agg canvas, never switches the user's
backend, never piles up in pyplot's open-figure list during long runs, and
still shows inline when it is the last value of a notebook cell.

    run = kk.train("configs/digits_cnn.yaml", epochs=5)
    kk.plot_history(run.history)          # or "runs/digits/history.csv"
    kk.plot_confusion(y_test, probs, class_names=names)
    kk.show_errors(x_test, y_test, probs, class_names=names, n=16)
    kk.show_batch(train_ds)
    kk.save_figure(fig, "runs/digits/history.png")
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from kerakit._files import atomic_write
from kerakit.errors import DataError
from kerakit.report.figures import (
    displayable,
    figure,
    image_grid,
    is_image_batch,
    message_figure,
    table_figure,
)
from kerakit.report.history import history_values
from kerakit.report.kinds import input_kind
from kerakit.report.metrics import (
    confusion_matrix,
    predicted_with_confidence,
    to_labels,
    to_probabilities,
)

_NOT_CURVES = {"epoch", "stage"}
_LOG_SCALE = {"learning_rate", "lr"}


def plot_history(history: Any) -> Figure:
    """Learning curves: loss and every metric, train vs validation, one figure.

    One panel per quantity (`loss` first), the training curve solid and the
    validation curve (`val_<name>`) dashed on the same axes; the best
    validation loss is marked. A `stage` column (the head and fine-tuning
    stages of a transfer run) draws a dotted line where the stage changes.

    Args:
        history: a Keras `History`, its `.history` dict of lists, the path
            of a `history.csv` (columns `epoch`, `loss`, `val_loss`, ...,
            optionally `stage`), or a run folder holding one.

    Returns:
        A `matplotlib.figure.Figure`.

    Example:
        >>> fig = plot_history({"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]})
    """
    columns = history_values(history)
    stage = [str(s) for s in columns.pop("stage", [])]
    for key in _NOT_CURVES:
        columns.pop(key, None)
    names = [k for k in columns if not k.startswith("val_")]
    names += [k[4:] for k in columns if k.startswith("val_") and k[4:] not in columns]
    names.sort(key=lambda k: (k != "loss", k in _LOG_SCALE))  # loss first, lr last
    epochs = max((len(v) for v in columns.values()), default=0)
    if not names or epochs == 0:
        return message_figure("No epochs recorded in this history.")

    ncols = min(len(names), 3)
    nrows = math.ceil(len(names) / ncols)
    fig = figure(4.2 * ncols, 3.2 * nrows)
    x = np.arange(1, epochs + 1)
    for i, name in enumerate(names):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        # the learning rate: the optimizer's at each epoch's end, not a training curve
        train = "at the epoch's end" if name in _LOG_SCALE else "train"
        for key, label, style in ((name, train, "o-"), (f"val_{name}", "validation", "s--")):
            if key in columns:
                y = columns[key]
                ax.plot(x[: len(y)], y, style, label=label, markersize=3)
        if name == "loss" and "val_loss" in columns:
            _mark_best(ax, x, columns["val_loss"])
        if name in _LOG_SCALE and np.nanmin(columns[name]) > 0:
            ax.set_yscale("log")
        _mark_stages(ax, stage)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    return fig


def plot_confusion(
    y_true: Any,
    y_pred: Any,
    class_names: Sequence[str] | None = None,
    normalize: bool = False,
    *,
    from_logits: bool | None = None,
) -> Figure:
    """Confusion matrix with class names and counts (true classes as rows).

    Args:
        y_true: true labels (class ids or one-hot).
        y_pred: predicted class ids, or the model's probabilities.
        class_names: one name per class; defaults to the class ids.
        normalize: color and label each row as a fraction of its true
            class (the counts stay in the cells); defaults to False.
        from_logits: whether `y_pred` are logits (a loss `from_logits=True`), thresholded
            at 0 then; None (the default): decided from the values (`to_probabilities`).

    Returns:
        A `matplotlib.figure.Figure`.

    Example:
        >>> fig = plot_confusion([0, 1, 1], [[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]], ["a", "b"])
    """
    y_pred = to_probabilities(y_pred, from_logits)
    num = len(class_names) if class_names is not None else None
    if num is None:
        p = np.asarray(y_pred)
        num = p.shape[1] if p.ndim == 2 and p.shape[1] > 1 else None
    cm = confusion_matrix(y_true, y_pred, num)
    k = cm.shape[0]
    names = _names(class_names, k)
    rows = cm.sum(axis=1, keepdims=True)
    shown = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0) if normalize else cm

    side = min(max(3.5, 0.5 * k + 2.0), 16.0)
    fig = figure(side + 1.0, side)
    ax = fig.add_subplot()
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1.0 if normalize else max(cm.max(), 1))
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(k), names, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    total = int(cm.sum())
    correct = int(np.trace(cm))
    accuracy = correct / total if total else 0.0
    ax.set_title(f"{correct}/{total} correct (accuracy {accuracy:.3f})")
    if k <= 30:  # beyond that the numbers are unreadable anyway
        threshold = (1.0 if normalize else max(cm.max(), 1)) / 2
        size = "small" if k > 10 else "medium"
        for i in range(k):
            for j in range(k):
                text = str(cm[i, j])
                if normalize and cm[i, j]:  # an empty cell stays a plain 0: less clutter
                    text = f"{shown[i, j]:.2f}\n({cm[i, j]})"
                color = "white" if shown[i, j] > threshold else "black"
                ax.text(j, i, text, ha="center", va="center", color=color, fontsize=size)
    return fig


def show_errors(
    x: Any,
    y_true: Any,
    probs: Any,
    class_names: Sequence[str] | None = None,
    n: int = 16,
    *,
    from_logits: bool | None = None,
) -> Figure:
    """The `n` test samples the model got wrong most confidently.

    Each image is titled with its true class, the predicted class and the
    probability the model gave that prediction. Series (steps x features, or long
    rows of floats) are drawn as small line plots; samples that are neither
    (rows of a table) are listed in a table instead.

    Args:
        x: the inputs, in the same order as `y_true` and `probs`.
        y_true: true labels (class ids or one-hot).
        probs: the model's output on `x` (softmax rows or sigmoid scores).
        class_names: one name per class; defaults to the class ids.
        n: how many samples to show at most; defaults to 16.
        from_logits: whether `probs` are logits (a loss `from_logits=True`): the
            probabilities shown are their sigmoid or softmax; None (the default):
            decided from the values (`to_probabilities`).

    Returns:
        A `matplotlib.figure.Figure`.

    Example:
        >>> fig = show_errors(x_test, y_test, model.predict(x_test), n=9)  # doctest: +SKIP
    """
    from kerakit.report.metrics import confident_errors

    x = np.asarray(x)
    probs = to_probabilities(probs, from_logits)
    pred, conf = predicted_with_confidence(probs, from_logits=False)
    true = to_labels(y_true)
    if not len(x) == len(true) == len(pred):
        raise DataError(
            f"x, y_true and probs must hold the same samples; got {len(x)}, "
            f"{len(true)} and {len(pred)}"
        )
    idx = confident_errors(true, probs, n, from_logits=False)
    if len(idx) == 0:
        return message_figure(f"No misclassified samples among {len(x)}.")
    names = _names(class_names, int(max(true.max(), pred.max())) + 1)
    titles = [f"true: {names[true[i]]}\npred: {names[pred[i]]} ({conf[i]:.2f})" for i in idx]
    if input_kind(x.shape[1:], x.dtype) == "series":  # (500, 1) is a line, not a blank image
        from kerakit.report.samples import series_grid

        return series_grid(x[idx], titles, title_color="tab:red")
    if not is_image_batch(x):
        rows = [[int(i), names[true[i]], names[pred[i]], f"{conf[i]:.3f}"] for i in idx]
        return table_figure(["sample", "true", "predicted", "probability"], rows, x[idx])
    return image_grid(x[idx], titles, title_color="tab:red")


def show_batch(
    ds_or_arrays: Any,
    class_names: Sequence[str] | None = None,
    n: int = 16,
) -> Figure:
    """A grid of samples with their labels, from a dataset or arrays.

    Takes the first `n` samples of a `tf.data.Dataset` of `(x, y)` (batched
    or not) or of a pair of arrays `(x, y)`. Images may be grayscale (with
    or without a channel axis) or RGB, floats in [0, 1] or [-1, 1], or
    0-255; anything else is min-max scaled over the shown samples. Labels may
    be class ids or one-hot.

    Args:
        ds_or_arrays: a `tf.data.Dataset` of `(x, y)` or `x`, or `(x, y)` arrays.
        class_names: one name per class; defaults to the class ids.
        n: how many samples to show at most; defaults to 16.

    Returns:
        A `matplotlib.figure.Figure`.

    Example:
        >>> fig = show_batch(bundle.train, class_names=bundle.class_names)  # doctest: +SKIP
    """
    x, y = _take(ds_or_arrays, n)
    if len(x) == 0:
        return message_figure("The dataset is empty.")
    labels = to_labels(y) if y is not None else None
    if labels is not None:
        names = _names(class_names, int(labels.max()) + 1)
        titles = [names[v] for v in labels]
    else:
        titles = [""] * len(x)
    if not is_image_batch(x):
        rows = [[i, titles[i]] for i in range(len(x))]
        return table_figure(["sample", "label"], rows, x)
    return image_grid(x, titles)


def show_augmented(originals: np.ndarray, augmented: np.ndarray) -> Figure:
    """Rows of original images, each above its augmented copy (`Augmentation.preview`).

    Args:
        originals: images `(count, height, width, channels)`.
        augmented: the same images augmented, same shape.
    """
    both, cmap = displayable(np.concatenate([originals.astype("float32"), augmented]))
    count = len(originals)
    ncols = min(count, 8)
    nrows = math.ceil(count / ncols)
    fig = figure(1.3 * ncols, 2.7 * nrows)
    for i in range(count):
        r, c = divmod(i, ncols)
        for k, title in ((0, "original"), (1, "augmented")):
            ax = fig.add_subplot(2 * nrows, ncols, (2 * r + k) * ncols + c + 1)
            ax.imshow(both[i + k * count], cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            if c == 0:
                ax.set_title(title, fontsize="small", loc="left")
            ax.set_axis_off()
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Save a figure as PNG, atomically (a reader never sees half a file).

    Args:
        fig: the figure.
        path: where to write; missing parent folders are created.
        dpi: resolution; defaults to 100.

    Returns:
        The path written.

    Example:
        >>> save_figure(plot_history("runs/x/history.csv"), "runs/x/history.png")  # doctest: +SKIP
    """
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi, facecolor="white")
    return Path(path)


# --- helpers ---------------------------------------------------------------


def _mark_best(ax, x: np.ndarray, val_loss: list) -> None:
    values = np.asarray(val_loss, dtype=float)
    if np.all(np.isnan(values)):
        return
    best = int(np.nanargmin(values))
    ax.plot(x[best], values[best], "*", color="gold", markersize=12, markeredgecolor="black")
    ax.annotate(
        f"best {values[best]:.3g}",
        (x[best], values[best]),
        fontsize="small",
        xytext=(4, 8),
        textcoords="offset points",
    )


def _mark_stages(ax, stage: list) -> None:
    # history.csv numbers read back as floats: show 1.0 as "stage 1"
    stage = [
        f"stage {int(v)}" if isinstance(v, float) and v.is_integer() else str(v) for v in stage
    ]
    if len(set(stage)) < 2:
        return
    starts = [0] + [i for i in range(1, len(stage)) if stage[i] != stage[i - 1]]
    for i in starts[1:]:
        ax.axvline(i + 0.5, color="gray", linestyle=":", linewidth=1.5)
    for i in starts:  # the stage's name at the top of its span
        ax.text(
            i + 0.6 if i else 1.0,
            0.98,
            stage[i],
            transform=ax.get_xaxis_transform(),
            va="top",
            fontsize="x-small",
            color="gray",
        )


def _names(class_names: Sequence[str] | None, k: int) -> list[str]:
    names = [str(c) for c in class_names] if class_names is not None else []
    return names + [str(i) for i in range(len(names), k)]


def _take(data: Any, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The first `n` samples of a tf.data dataset or an `(x, y)` pair, as arrays."""
    if not hasattr(data, "element_spec"):  # arrays (no TensorFlow needed)
        if isinstance(data, (tuple, list)) and len(data) in (1, 2, 3):
            x = np.asarray(data[0])[:n]
            y = np.asarray(data[1])[:n] if len(data) > 1 else None
            return x, y
        return np.asarray(data)[:n], None
    xs, ys = [], []
    count = 0
    batched = _is_batched(data.element_spec)
    for element in data.as_numpy_iterator():
        if isinstance(element, dict):
            raise DataError("show_batch needs a dataset of (x, y) or x; got a dataset of dicts")
        x, y = (element[0], element[1]) if isinstance(element, tuple) else (element, None)
        if not batched:
            x, y = x[None], (None if y is None else np.asarray(y)[None])
        xs.append(x)
        if y is not None:
            ys.append(np.asarray(y))
        count += len(x)
        if count >= n:
            break
    if not xs:
        return np.zeros((0,)), None
    x = np.concatenate(xs)[:n]
    y = np.concatenate(ys)[:n] if ys else None
    return x, y


def _is_batched(spec: Any) -> bool:
    # `.batch()` leaves the batch axis unknown unless drop_remainder=True; an
    # unbatched scalar label is the other sure sign. Else the first axes agree.
    x_spec, y_spec = (spec[0], spec[1]) if isinstance(spec, tuple) else (spec, None)
    x_shape = list(getattr(x_spec, "shape", []))
    if x_shape and x_shape[0] is None:
        return True
    if y_spec is not None:
        y_shape = list(y_spec.shape)
        if not y_shape:
            return False
        return bool(x_shape) and y_shape[0] == x_shape[0]
    return len(x_shape) == 4
