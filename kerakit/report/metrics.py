"""Per-run numbers: labels from predictions, confusion matrix, per-class report (NumPy only).

The math is plain NumPy (no scikit-learn), and every function takes labels in
whatever form a Keras model gives them: integer class ids, one-hot rows, or
predicted probabilities (softmax rows, or sigmoid scores for a binary model).
`classification_report` returns a plain, JSON-ready dict, so a run can save it
next to its test metrics and `report.run_report.format_report_table` can turn it
into Markdown.

    probs = model.predict(x_test)
    report = kk.classification_report(y_test, probs, class_names=["cat", "dog"])
    print(kk.format_report_table(report))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kerakit.errors import DataError


def to_labels(y: Any) -> np.ndarray:
    """Integer class ids from labels or predictions in any Keras form.

    A 2-D array with more than one column (one-hot labels or softmax
    probabilities) becomes its row-wise argmax. A single column or a 1-D
    array is taken as class ids when every value is a whole number, and
    otherwise as sigmoid scores of a binary model, thresholded at 0.5.

    Args:
        y: array-like of shape `(n,)`, `(n, 1)` or `(n, classes)`.

    Returns:
        An `int64` array of shape `(n,)`.

    Example:
        >>> to_labels([[0.1, 0.9], [0.8, 0.2]]).tolist()
        [1, 0]
    """
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] > 1:
        return np.argmax(arr, axis=1).astype(np.int64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(
            f"labels must have shape (n,), (n, 1) or (n, classes); got shape {arr.shape}"
        )
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64)
    if arr.dtype.kind != "f":
        raise DataError(f"labels must be numbers; got dtype {arr.dtype}")
    if np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    return (arr >= 0.5).astype(np.int64)


def to_probabilities(
    outputs: Any, from_logits: bool | None = None, *, multilabel: bool = False
) -> np.ndarray:
    """A classifier's outputs as probabilities: its logits through a sigmoid or softmax.

    A model trained with a loss `from_logits=True` (and no sigmoid or softmax on its
    output layer) gives logits: thresholding those at 0.5, or showing them as
    probabilities, is wrong. Logits of one column (a binary classifier), or of any
    width with `multilabel`, go through a sigmoid; rows of several columns through a
    softmax. Probabilities and class ids come back as they are.

    Args:
        outputs: the model's outputs, `(n,)`, `(n, 1)` or `(n, classes)`.
        from_logits: whether they are logits (the loss's `from_logits`); None (the
            default): they are when some value lies outside [0, 1], which no
            probability does (class ids and one-hot rows excepted).
        multilabel: independent sigmoid units (a multilabel model), not a softmax.

    Returns:
        A float array of the same shape.

    Example:
        >>> to_probabilities([[0.0], [2.0]], from_logits=True).round(3).tolist()
        [[0.5], [0.881]]
    """
    arr = np.asarray(outputs)
    if from_logits is None:
        from_logits = bool(
            arr.dtype.kind == "f"
            and arr.size
            and not np.all(arr == np.round(arr))  # class ids, one-hot rows
            and (arr.min() < 0 or arr.max() > 1)
        )
    if not from_logits:
        return arr
    z = arr.astype(np.float64)
    if multilabel or z.ndim == 1 or z.shape[-1] == 1:
        return 1.0 / (1.0 + np.exp(-z))
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int | None = None) -> np.ndarray:
    """Counts of (true class, predicted class) pairs.

    Row `i` holds the samples whose true class is `i`, column `j` those
    predicted as `j`; the matrix sums to the number of samples and its
    diagonal sums to the number of correct predictions.

    Args:
        y_true: true labels (class ids or one-hot).
        y_pred: predicted class ids, or the model's probabilities.
        num_classes: size of the matrix; defaults to the largest label + 1.

    Returns:
        An `int64` array of shape `(num_classes, num_classes)`.

    Example:
        >>> confusion_matrix([0, 1, 1], [0, 1, 0]).tolist()
        [[1, 0], [1, 1]]
    """
    t, p = _pair(y_true, y_pred)
    seen = int(max(t.max(initial=-1), p.max(initial=-1))) + 1
    if num_classes is None:
        num_classes = max(seen, 1)
    if min(t.min(initial=0), p.min(initial=0)) < 0 or seen > num_classes:
        raise DataError(
            f"labels must be class ids in [0, {num_classes}); got values from "
            f"{min(t.min(initial=0), p.min(initial=0))} to {seen - 1}. "
            "Pass num_classes (or class_names) that covers every class."
        )
    flat = t * num_classes + p
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, -1)


def classification_report(
    y_true: Any,
    y_pred: Any,
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
) -> dict:
    """Per-class precision, recall, F1 and support, with averages and accuracy.

    Precision is "of the samples predicted as this class, how many are it",
    recall is "of the samples of this class, how many were found", F1 their
    harmonic mean. A ratio with nothing to divide by (a class never
    predicted, or absent from `y_true`) is 0, as in scikit-learn's
    `zero_division=0`. The macro average weighs every class alike; the
    weighted average weighs each class by its support.

    Args:
        y_true: true labels (class ids or one-hot).
        y_pred: predicted class ids, or the model's probabilities.
        class_names: one name per class; defaults to `"0"`, `"1"`, ...
        num_classes: number of classes when `class_names` is not given;
            defaults to the largest label + 1.

    Returns:
        A JSON-ready dict: `{"accuracy": float, "support": int,
        "per_class": {name: {"precision", "recall", "f1", "support"}},
        "macro_avg": {...}, "weighted_avg": {...}}`.

    Example:
        >>> r = classification_report([0, 0, 1], [0, 1, 1], class_names=["a", "b"])
        >>> r["per_class"]["a"]["recall"], r["accuracy"]
        (0.5, 0.6666666666666666)
    """
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        if len(set(class_names)) != len(class_names):
            raise DataError(f"class_names has duplicates: {class_names}")
        num_classes = len(class_names)
    cm = confusion_matrix(y_true, y_pred, num_classes).astype(np.float64)
    if class_names is None:
        class_names = [str(i) for i in range(cm.shape[0])]
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    total = float(support.sum())

    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    }

    def average(weights: np.ndarray) -> dict:
        w = weights / weights.sum() if weights.sum() > 0 else np.zeros_like(weights)
        return {
            "precision": float(np.sum(precision * w)),
            "recall": float(np.sum(recall * w)),
            "f1": float(np.sum(f1 * w)),
            "support": int(total),
        }

    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "support": int(total),
        "per_class": per_class,
        "macro_avg": average(np.ones_like(support)),
        "weighted_avg": average(support),
    }


def regression_report(y_true: Any, y_pred: Any) -> dict:
    """A regression's test numbers: MAE, RMSE and R², over every value (NumPy only).

    Targets of several values per example are pooled; R² compares the squared error
    with each column's own variance (scikit-learn's `r2_score` of one column).

    Returns:
        A JSON-ready dict `{"mae", "rmse", "r2", "support"}`; R² is 0 when the true
        values do not vary.

    Example:
        >>> regression_report([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])["mae"]
        0.3333333333333333
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.size != p.size:
        raise DataError(f"y_true holds {t.size} values but y_pred {p.size}; predict on the same samples")  # fmt: skip
    if t.size == 0:
        return {"mae": 0.0, "rmse": 0.0, "r2": 0.0, "support": 0}
    n = len(t) if t.ndim else 1
    t, p = t.reshape(n, -1), p.reshape(n, -1)
    err = p - t
    total = float(((t - t.mean(axis=0)) ** 2).sum())
    return {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "r2": 1.0 - float((err**2).sum()) / total if total > 0 else 0.0,
        "support": n,
    }


def confident_errors(
    y_true: Any, probs: Any, n: int = 16, *, from_logits: bool | None = None
) -> np.ndarray:
    """Indices of the `n` misclassified samples the model was surest about.

    Args:
        y_true: true labels (class ids or one-hot).
        probs: the model's output: softmax rows `(n, classes)` or sigmoid
            scores `(n,)` / `(n, 1)` of a binary model.
        n: how many to return at most.
        from_logits: whether `probs` are logits (see `to_probabilities`; None: decided
            from their values).

    Returns:
        An `int64` array of sample indices, most confident first.

    Example:
        >>> confident_errors([0, 1, 1], [[0.9, 0.1], [0.6, 0.4], [0.99, 0.01]]).tolist()
        [2, 1]
    """
    pred, conf = predicted_with_confidence(probs, from_logits=from_logits)
    t, _ = _pair(y_true, pred)
    wrong = np.flatnonzero(t != pred)
    order = np.argsort(-conf[wrong], kind="stable")
    return wrong[order][: max(int(n), 0)].astype(np.int64)


def predicted_with_confidence(
    probs: Any, *, from_logits: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class ids, the probability the model gave its prediction); logits are
    made probabilities first (`to_probabilities`), so a logit is thresholded at 0."""
    p = np.asarray(to_probabilities(probs, from_logits), dtype=np.float64)
    if p.ndim == 2 and p.shape[1] == 1:
        p = p[:, 0]
    if p.ndim == 1:  # sigmoid score of class 1
        pred = (p >= 0.5).astype(np.int64)
        return pred, np.where(pred == 1, p, 1.0 - p)
    if p.ndim != 2:
        raise DataError(f"probs must have shape (n,), (n, 1) or (n, classes); got {p.shape}")
    pred = np.argmax(p, axis=1).astype(np.int64)
    return pred, p[np.arange(len(p)), pred]


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t, p = to_labels(y_true), to_labels(y_pred)
    if len(t) != len(p):
        raise DataError(
            f"y_true has {len(t)} samples but y_pred has {len(p)}; "
            "predict on the same samples, in the same order (no shuffling)."
        )
    return t, p


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # zero_division=0: a class never predicted (or never present) scores 0, not NaN
    out = np.zeros_like(a, dtype=np.float64)
    np.divide(a, b, out=out, where=b > 0)
    return out
