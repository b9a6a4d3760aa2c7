"""Labels and splits: class ids and names from any labels, and validation/test splits carved
from the training data (stratified, fixed by the seed) where a source has none."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from kerakit.errors import NOWHERE, Where, data_error

# Integer labels are class ids 0..C-1; C may not pass max(this, the number of examples).
MAX_CLASSES_FLOOR = 1024


def encode_labels(ys: list, target_type: str = "auto", where: Where = NOWHERE) -> tuple[list, dict]:
    """Converts the label arrays of all splits together; returns them and the class info."""
    if isinstance(ys[0], Mapping):
        keys = list(ys[0])
        per = {k: encode_labels([y[k] for y in ys], target_type, where) for k in keys}
        out = [{k: per[k][0][i] for k in keys} for i in range(len(ys))]
        return out, {"class_names": None, "num_classes": None, "task": None}
    ys = [np.asarray(y) for y in ys]
    joined = np.concatenate([y.reshape(len(y), -1) for y in ys])
    kind = ys[0].dtype.kind
    if kind in "USO" or target_type == "class":
        if kind in "iub":
            names = [str(v) for v in np.unique(joined)]
        else:
            try:  # numbers written as text sort as numbers
                values = sorted({str(v) for v in joined.ravel()}, key=float)
            except ValueError:
                values = sorted({str(v) for v in joined.ravel()})
            names = values
        index = {n: i for i, n in enumerate(names)}
        out = [np.array([index[str(v)] for v in y.ravel()], "int32").reshape(y.shape) for y in ys]
        return out, class_info(names)
    if kind in "iub" and target_type != "number":
        if joined.min() < 0:
            raise data_error(
                where, "source", f"class labels must be 0 or more, got {int(joined.min())}"
            )
        if ys[0].ndim > 1 and ys[0].shape[-1] > 1:  # multi-hot rows
            names = [str(i) for i in range(ys[0].shape[-1])]
            return [y.astype("int32") for y in ys], {**class_info(names), "task": "multilabel"}
        top, limit = int(joined.max()), max(MAX_CLASSES_FLOOR, len(joined))
        if top >= limit:  # class ids name classes 0..top: a huge one is a mistake, not a class
            raise data_error(
                where,
                "source",
                f"a class label is {top}, so there would be {top + 1:,} classes for "
                f"{len(joined):,} examples; class labels are ids 0..C-1 (real-valued targets: "
                "store them as floats, or for a CSV set data.target_type: number)",
            )
        names = [str(i) for i in range(top + 1)]
        return [y.astype("int32") for y in ys], class_info(names)
    return [y.astype("float32") for y in ys], {
        "class_names": None,
        "num_classes": None,
        "task": "regression",
    }


def class_info(names: list[str]) -> dict:
    n = len(names)
    return {"class_names": names, "num_classes": n, "task": "binary" if n <= 2 else "multiclass"}


def length(x: Any) -> int:
    return len(next(iter(x.values()))) if isinstance(x, Mapping) else len(x)


def _take(x: Any, idx: np.ndarray) -> Any:
    return {k: v[idx] for k, v in x.items()} if isinstance(x, Mapping) else x[idx]


def _split_counts(n: int, fraction: float, what: str, key: str, where: Where) -> int:
    count = int(round(n * fraction))
    if fraction > 0 and count == 0:
        raise data_error(
            where,
            key,
            f"{key} {fraction} of {n} examples leaves the {what} split empty; "
            f"use more data, a larger {key}, or {key}: 0 for no {what} split",
        )
    return count


def carve(train, val, test, spec, seed, where):
    """Splits val and test off the training arrays where the source has none (stratified).

    Each split is a tuple `(x, y)` or `(x, y, sample_weight)`; the carved splits keep the
    same parts as the training split."""
    from sklearn.model_selection import train_test_split

    x, y = train[0], train[1]
    n = length(x)
    idx = np.arange(n)
    rng_seed = 0 if seed is None else int(seed)  # splits stay put even without a seed
    y_flat = None if isinstance(y, Mapping) else np.asarray(y)
    stratify_ok = y_flat is not None and y_flat.ndim == 1 and y_flat.dtype.kind in "iu"

    def cut(pool, count):
        if count == 0:
            return pool, None
        strat = y_flat[pool] if stratify_ok else None
        try:
            return train_test_split(pool, test_size=count, random_state=rng_seed, stratify=strat)
        except ValueError:  # too few of some class to stratify
            return train_test_split(pool, test_size=count, random_state=rng_seed)

    def part(chosen):
        return None if chosen is None else tuple(_take(p, chosen) for p in train)

    if test is None:
        idx, test_idx = cut(idx, _split_counts(n, spec["test_split"], "test", "test_split", where))
        test = part(test_idx)
    if val is None:
        count = _split_counts(n, spec["validation_split"], "validation", "validation_split", where)
        idx, val_idx = cut(idx, count)
        val = part(val_idx)
    if len(idx) == 0:
        raise data_error(
            where, "validation_split", "no training examples are left after the splits"
        )
    return part(idx), val, test


def count_examples(ds: tf.data.Dataset) -> int:
    n = int(ds.cardinality())
    if n >= 0:
        return n
    return int(ds.reduce(0, lambda c, _: c + 1))


def carve_dataset(dss: dict, spec: dict, where: Where) -> dict:
    """take/skip in the data set's stored order (tfds shuffles examples when preparing)."""
    train = dss["train"]
    n = count_examples(train)
    for part, key, what in (
        ("test", "test_split", "test"),
        ("val", "validation_split", "validation"),
    ):
        if dss[part] is None:
            count = _split_counts(n, spec[key], what, key, where)
            if count:
                dss[part], train = train.take(count), train.skip(count)
    dss["train"] = train
    return dss
