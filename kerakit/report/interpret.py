"""Interpreting a classifier, fastai's way under Keras names: top losses, most-confused
pairs and Grad-CAM heat maps drawn over the images (NumPy and matplotlib; the heat maps
themselves are computed with TensorFlow in `kerakit.training.interpret`).

    idx, losses = top_losses(y_test, probs, k=9)
    plot_top_losses(x_test, y_test, probs, class_names=names, k=9)
    most_confused(y_test, probs, class_names=names)      # [("3", "8", 4), ("7", "1", 2)]
    plot_gradcam(x_test[idx], heatmaps)                   # heat maps from run.gradcam(x)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from kerakit.errors import DataError
from kerakit.report.kinds import input_kind
from kerakit.report.metrics import confusion_matrix, to_labels, to_probabilities

if TYPE_CHECKING:  # matplotlib is imported when a picture is drawn, not with report.md
    from matplotlib.figure import Figure

_EPS = 1e-7  # Keras's epsilon: the probability a cross-entropy clips to


def true_class_probability(y_true: Any, probs: Any, *, from_logits: bool | None = None
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """(true class ids, predicted class ids, probability given to the true class) per sample.

    `probs` are softmax rows `(n, classes)` or the sigmoid scores `(n,)` / `(n, 1)` of a
    binary model (logits go through a softmax or sigmoid, see `to_probabilities`).
    """
    p = np.asarray(to_probabilities(probs, from_logits), dtype=np.float64)
    true = to_labels(y_true)
    if len(true) != len(p):
        raise DataError(
            f"y_true and probs must hold the same samples; got {len(true)} and {len(p)}"
        )
    if p.ndim == 2 and p.shape[1] > 1:
        if len(true) and true.max() >= p.shape[1]:
            raise DataError(f"class id {true.max()} is out of range for {p.shape[1]} classes")
        return true, p.argmax(axis=1), p[np.arange(len(p)), true]
    score = p.reshape(len(p))
    pred = (score >= 0.5).astype(np.int64)
    return true, pred, np.where(true == 1, score, 1 - score)


def top_losses(y_true: Any, probs: Any, k: int = 9, *, from_logits: bool | None = None
               ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The `k` samples with the highest cross-entropy loss, highest first (fastai's
    `top_losses`).

    Args:
        y_true: true labels (class ids or one-hot).
        probs: the model's outputs on the same samples.
        k: how many to return at most.
        from_logits: whether `probs` are logits (None: decided from the values).

    Returns:
        (indices, losses): `int64` sample indices and their losses, `-log p(true class)`.

    Example:
        >>> top_losses([0, 1], [[0.9, 0.1], [0.8, 0.2]], k=1)[0].tolist()
        [1]
    """
    _, _, p_true = true_class_probability(y_true, probs, from_logits=from_logits)
    losses = -np.log(np.clip(p_true, _EPS, 1.0))
    order = np.argsort(-losses, kind="stable")[: max(int(k), 0)]
    return order.astype(np.int64), losses[order]


def most_confused(
    y_true: Any, probs: Any, class_names: Sequence[str] | None = None, min_count: int = 1,
    *, from_logits: bool | None = None,
) -> list[tuple[Any, Any, int]]:  # fmt: skip
    """The class pairs the model mixes up most: `(true, predicted, count)`, most first
    (fastai's `most_confused`).

    Args:
        y_true: true labels (class ids or one-hot).
        probs: the model's outputs (probabilities, logits or class ids).
        class_names: one name per class; without them the pairs hold class ids.
        min_count: leave out pairs seen fewer times.
        from_logits: whether `probs` are logits (None: decided from the values).

    Example:
        >>> most_confused([0, 0, 1, 2], [1, 1, 0, 2])
        [(0, 1, 2), (1, 0, 1)]
    """
    true, pred, _ = _labels_and_predictions(y_true, probs, from_logits)
    k = max(int(true.max(initial=0)), int(pred.max(initial=0))) + 1
    cm = confusion_matrix(true, pred, num_classes=max(k, len(class_names or ())))
    pairs = [(int(i), int(j), int(cm[i, j])) for i, j in zip(*np.nonzero(cm)) if i != j]
    pairs = [p for p in pairs if p[2] >= max(int(min_count), 1)]
    pairs.sort(key=lambda p: (-p[2], p[0], p[1]))
    if class_names is None:
        return pairs
    names = [str(c) for c in class_names]
    return [(_name(names, i), _name(names, j), n) for i, j, n in pairs]


def plot_top_losses(
    x: Any, y_true: Any, probs: Any, class_names: Sequence[str] | None = None, k: int = 9,
    *, from_logits: bool | None = None,
) -> Figure:  # fmt: skip
    """A grid of the `k` samples with the highest loss (fastai's `plot_top_losses`).

    Each is titled `predicted / true`, then its loss and the probability the model gave
    its true class. Series are line plots; rows of a table are listed in a table.

    Args:
        x: the inputs, in the order of `y_true` and `probs`.
        y_true: true labels (class ids or one-hot).
        probs: the model's outputs on `x`.
        class_names: one name per class; defaults to the class ids.
        k: how many samples to show.
        from_logits: whether `probs` are logits (None: decided from the values).

    Example:
        >>> fig = plot_top_losses(x_test, y_test, model.predict(x_test), k=9)  # doctest: +SKIP
    """
    from kerakit.report.figures import image_grid, is_image_batch, message_figure, table_figure

    x = np.asarray(x)
    true, pred, p_true = true_class_probability(y_true, probs, from_logits=from_logits)
    if len(x) != len(true):
        raise DataError(f"x and y_true must hold the same samples; got {len(x)} and {len(true)}")
    idx, losses = top_losses(y_true, probs, k, from_logits=from_logits)
    if len(idx) == 0:
        return message_figure("No samples to show.")
    names = [str(c) for c in class_names] if class_names is not None else []
    titles = [
        f"{_name(names, pred[i])} / {_name(names, true[i])}\n{loss:.2f} / {p_true[i]:.2f}"
        for i, loss in zip(idx, losses)
    ]
    if input_kind(x.shape[1:], x.dtype) == "series":
        from kerakit.report.samples import series_grid

        return series_grid(x[idx], titles)
    if not is_image_batch(x):
        rows = [
            [int(i), _name(names, true[i]), _name(names, pred[i]), f"{loss:.3f}",
             f"{p_true[i]:.3f}"]
            for i, loss in zip(idx, losses)
        ]  # fmt: skip
        header = ["sample", "true", "predicted", "loss", "p(true)"]
        return table_figure(header, rows, x[idx])
    fig = image_grid(x[idx], titles)
    fig.suptitle("predicted / true, loss / probability of the true class", fontsize="small")
    return fig


def plot_gradcam(x: Any, heatmaps: Any, titles: Sequence[str] | None = None,
                 alpha: float = 0.45) -> Figure:  # fmt: skip
    """Grad-CAM heat maps over their images: each image, then the image with its heat map.

    Args:
        x: images `(n, h, w)` or `(n, h, w, channels)`.
        heatmaps: `(n, h', w')` values in [0, 1] (any size: stretched over the image), as
            `kerakit.training.interpret.gradcam` gives them.
        titles: one title per image (e.g. `true / predicted`).
        alpha: the heat map's opacity.

    Example:
        >>> fig = plot_gradcam(x_test[:4], run.gradcam(x_test[:4]))  # doctest: +SKIP
    """
    from kerakit.report.figures import displayable, figure, is_image_batch, message_figure

    x, heat = np.asarray(x), np.asarray(heatmaps, dtype=np.float32)
    if not is_image_batch(x) or heat.ndim != 3 or len(heat) != len(x):
        raise DataError(
            f"Grad-CAM draws n heat maps (n, h, w) over n images; got images of shape "
            f"{x.shape} and heat maps of shape {heat.shape}"
        )
    if len(x) == 0:
        return message_figure("No images to show.")
    images, cmap = displayable(x)
    count = len(images)
    ncols = min(count, 3)
    nrows = math.ceil(count / ncols)
    fig = figure(3.6 * ncols, 2.0 * nrows, layout=None)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.88, wspace=0.05, hspace=0.4)
    h, w = images.shape[1:3]
    for i in range(count):
        r, c = divmod(i, ncols)
        plain = fig.add_subplot(nrows, 2 * ncols, 2 * (r * ncols + c) + 1)
        plain.imshow(images[i], cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        over = fig.add_subplot(nrows, 2 * ncols, 2 * (r * ncols + c) + 2)
        over.imshow(images[i], cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        over.imshow(np.clip(heat[i], 0, 1), cmap="jet", alpha=alpha, vmin=0, vmax=1,
                    extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="bilinear")  # fmt: skip
        if titles is not None:
            plain.set_title(titles[i], fontsize="small", loc="left")
        for ax in (plain, over):
            ax.set_axis_off()
    fig.suptitle("Grad-CAM: where the model looked for its prediction", fontsize="small")
    return fig


def format_most_confused_table(pairs: Sequence[tuple[Any, Any, int]]) -> str:
    """`most_confused`'s pairs as a Markdown table (true, predicted, count)."""
    if not pairs:
        return "No class was mistaken for another.\n"
    lines = ["| true | predicted | count |", "|---|---|---:|"]
    lines += [f"| {_md(str(t))} | {_md(str(p))} | {n} |" for t, p, n in pairs]
    return "\n".join(lines) + "\n"


def _labels_and_predictions(y_true: Any, probs: Any, from_logits: bool | None):
    p = np.asarray(probs)
    if p.ndim == 1 and p.dtype.kind in "iub":  # class ids already
        return to_labels(y_true), p.astype(np.int64), None
    return true_class_probability(y_true, probs, from_logits=from_logits)


def _name(names: Sequence[str], k: Any) -> str:
    k = int(k)
    return names[k] if 0 <= k < len(names) else str(k)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
