"""The parity gate: an artifact's answers next to the Keras model's, and its latency.

    row = compare(keras_outputs, artifact_outputs, labels)   # diff, top-1 agreement, metrics
    failure = judge("litert-int8", row, keras_metrics, tolerance=1e-4, metric_drop=1.0)
    row["latency"] = latency(run, one_sample, one_batch)

A float artifact passes when its largest absolute difference from the Keras model is at
most `tolerance`; a quantized one when its test metric is at most `metric_drop` points
below the Keras model's (accuracy in percent; a regression's mean absolute error may grow
by `metric_drop` percent of the Keras model's).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from kerakit.report.metrics import to_labels

TOLERANCE = 1e-4  # largest absolute difference of a float artifact
METRIC_DROP = 1.0  # points of test metric a quantized artifact may lose
SAMPLE_REPEATS, BATCH_REPEATS, BATCH = 50, 20, 32
TIME_BUDGET_S = 1.5  # per measurement: a slow runtime gets fewer repeats, never fewer than 5


def output_kind(outputs: np.ndarray) -> str:
    """ "classes" (one score per class), "binary" (one probability or logit) or "values"."""
    if outputs.ndim == 2 and outputs.shape[1] > 1:
        return "classes"
    if outputs.ndim <= 2 and (outputs.ndim == 1 or outputs.shape[1] == 1):
        return "binary"
    return "values"


def _predicted(outputs: np.ndarray, kind: str, threshold: float) -> np.ndarray:
    if kind == "classes":
        return np.argmax(outputs, axis=-1)
    return (outputs.reshape(len(outputs), -1)[:, 0] > threshold).astype(int)


def _threshold(outputs: np.ndarray) -> float:
    """0.5 for probabilities, 0 for logits (values outside [0, 1])."""
    return 0.5 if outputs.size == 0 or (outputs.min() >= 0 and outputs.max() <= 1) else 0.0


def metrics(outputs: list, labels: list | None, kinds: list[str]) -> list[dict | None]:
    """Per output: {"accuracy": percent} for a classifier (binary: labels in {0, 1}), else
    {"mae": value}; None where there are no labels."""
    out: list[dict | None] = []
    for i, (o, kind) in enumerate(zip(outputs, kinds)):
        y = None if labels is None else labels[i]
        if y is None:
            out.append(None)
        elif kind == "values" or (kind == "binary" and not _is_binary(y)):
            out.append({"mae": float(np.mean(np.abs(o.reshape(len(o), -1) - _rows(y, o))))})
        else:
            pred = _predicted(o, kind, _threshold(o))
            true = to_labels(y) if kind == "classes" else np.asarray(y).reshape(-1).astype(int)
            out.append({"accuracy": float(100.0 * np.mean(pred == true))})
    return out


def _is_binary(y: Any) -> bool:
    return bool(np.isin(np.unique(np.asarray(y)), (0, 1)).all())


def _rows(y: Any, o: np.ndarray) -> np.ndarray:
    return np.asarray(y, "float64").reshape(len(o), -1)


def compare(reference: list, got: list, labels: list | None) -> dict:
    """An artifact's answers against the Keras model's on the same inputs.

    Returns:
        {"max_abs_diff": float, "top1_agreement": percent or None (no classifier output),
        "metrics": [per output], "keras_metrics": [per output], "kinds": [per output]}.
    """
    if len(reference) != len(got):
        raise ValueError(f"the artifact gives {len(got)} outputs, the Keras model {len(reference)}")
    diffs, agree = [], []
    kinds = [output_kind(np.asarray(r)) for r in reference]
    for r, g, kind in zip(reference, got, kinds):
        r, g = np.asarray(r, "float64"), np.asarray(g, "float64").reshape(np.shape(r))
        diffs.append(float(np.max(np.abs(r - g))) if r.size else 0.0)
        if kind != "values" and (kind == "classes" or _looks_like_probability(r)):
            t = _threshold(r)
            agree.append(np.mean(_predicted(r, kind, t) == _predicted(g, kind, t)))
    return {
        "max_abs_diff": max(diffs) if diffs else 0.0,
        "top1_agreement": float(100.0 * np.mean(agree)) if agree else None,
        "metrics": metrics([np.asarray(g) for g in got], labels, kinds),
        "keras_metrics": metrics([np.asarray(r) for r in reference], labels, kinds),
        "kinds": kinds,
    }


def _looks_like_probability(r: np.ndarray) -> bool:
    return bool(r.size and r.min() >= 0 and r.max() <= 1)


def judge(name: str, row: dict, *, quantized: bool, tolerance: float = TOLERANCE,
          metric_drop: float = METRIC_DROP) -> str | None:  # fmt: skip
    """None if the artifact passes, else one line saying which and by how much."""
    if not quantized:
        diff = row["max_abs_diff"]
        if not diff <= tolerance:  # NaN fails too
            return (
                f"{name}: its outputs differ from the Keras model's by up to {diff:.3g}, "
                f"over the tolerance {tolerance:g} (--tolerance)"
            )
        return None
    for i, (got, want) in enumerate(zip(row["metrics"], row["keras_metrics"])):
        where = f" (output {i})" if len(row["metrics"]) > 1 else ""
        if got is None or want is None:
            continue
        if "accuracy" in got:
            drop = want["accuracy"] - got["accuracy"]
            if not drop <= metric_drop:
                return (
                    f"{name}: test accuracy{where} {got['accuracy']:.2f}% against the Keras "
                    f"model's {want['accuracy']:.2f}%, a drop of {drop:.2f} points, over the "
                    f"{metric_drop:g} allowed (--metric-drop)"
                )
        else:
            grown = 100.0 * (got["mae"] - want["mae"]) / max(want["mae"], 1e-12)
            if not grown <= metric_drop:
                return (
                    f"{name}: test mean absolute error{where} {got['mae']:.4g} against the "
                    f"Keras model's {want['mae']:.4g}, {grown:.2f}% worse, over the "
                    f"{metric_drop:g}% allowed (--metric-drop)"
                )
    agreement = row["top1_agreement"]
    if all(m is None for m in row["metrics"]) and agreement is not None:
        if not 100.0 - agreement <= metric_drop:  # no labels: agreement stands in
            return (
                f"{name}: agrees with the Keras model's top-1 on {agreement:.2f}% of the samples, "
                f"below {100 - metric_drop:g}% (--metric-drop)"
            )
    return None


def _timed(fn: Callable[[], Any], repeats: int, budget: float = TIME_BUDGET_S) -> dict:
    fn()  # warm-up: a first call traces, allocates or builds kernels
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats and (len(times) < 5 or time.perf_counter() - start < budget):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    ms = np.asarray(times) * 1e3
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)),
            "repeats": len(times)}  # fmt: skip


def latency(run: Callable[[list], list], inputs: list, *, batch: int = BATCH,
            sample_repeats: int = SAMPLE_REPEATS, batch_repeats: int = BATCH_REPEATS) -> dict:  # fmt: skip
    """Median and 95th percentile of one sample and of one batch through `run` (ms)."""
    n = len(inputs[0])
    one = [np.asarray(x[:1]) for x in inputs]
    many = [np.asarray(np.resize(x, (batch, *np.shape(x)[1:])) if n < batch else x[:batch])
            for x in inputs]  # fmt: skip
    return {
        "sample": _timed(lambda: run(one), sample_repeats),
        "batch": {**_timed(lambda: run(many), batch_repeats), "size": batch},
    }
