"""A time series cut into windows (`data.windows`), as keras.io's "Timeseries forecasting for
weather prediction" writes it by hand.

The flow:

1. `read_series`: the rows of a `csv:` table (columns by name) or of the 2-D `series` array
   of an `npz:` file (columns by index), as float32, in time order;
2. `timeline`: the rows split BY TIME: the first rows train, the next validate, the last
   test (`validation_split`, `test_split` of the rows), never shuffled across the split;
3. `windows`: each part cut into windows by `keras.utils.timeseries_dataset_from_array`
   (unbatched), the target of a window being the target column `offset` rows after the
   window's span (`sequence_length * sampling_rate` rows): the example's
   `targets = features[past + future:]`. A window and its target never cross a boundary;
4. `normalize: true`: the mean and variance of the training part's rows (the example's
   `data[:train_split].mean(axis=0)` and `.std(axis=0)`), applied to every window's
   features (not the target), and a `keras.layers.Normalization` holding them, which a run
   puts in front of the trained model so the saved model takes raw windows.

    dss, sizes, info = load_series("csv", path, spec, where)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from kerakit.data.tables import describe_columns, read_table
from kerakit.errors import DataError, Where, data_error
from kerakit.recipe.series import delay, span

SPLITS = ("train", "val", "test")


def read_series(kind: str, path: Path, windows: Mapping, fail) -> tuple:
    """(features of each row (rows, n_features), target of each row (rows, 1), the feature
    columns), float32.

    `windows.features` null takes every column (the target's too). `fail(message, key)` makes the error (`key`: the `windows` key at fault, or "source")."""
    if kind == "npz":
        table, names = _npz_series(path, fail), None
        columns = list(range(table.shape[1]))
    else:
        names, rows = read_table(path, lambda m: fail(m, "source"))
        table, columns = rows, names
    wanted = windows["features"] if windows["features"] is not None else columns
    out = []
    for key, name in [("features", c) for c in wanted] + [("target", windows["target"])]:
        if name not in columns:
            hint = (describe_columns(names, name) if names is not None
                    else f"; the series has columns 0..{len(columns) - 1}")  # fmt: skip
            raise fail(f"{path} has no column {name!r}{hint}", key)
        out.append(_column(kind, path, table, columns.index(name), name, key, fail))
    x = np.stack(out[:-1], axis=1)
    return x, out[-1][:, None], list(wanted)


def _npz_series(path: Path, fail) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:  # zipfile, numpy and OS errors alike
        raise fail(f"cannot read {path} as an .npz file ({type(e).__name__})", "source") from None
    if "series" not in arrays:
        raise fail(
            f"{path} has no array 'series' (it holds {sorted(arrays)}); with `windows:` an npz "
            "holds one array `series` of shape (rows, columns), rows in time order",
            "source",
        )
    series = arrays["series"]
    if series.ndim == 1:
        series = series[:, None]
    if series.ndim != 2 or series.dtype.kind not in "iuf":
        raise fail(
            f"{path}: 'series' has shape {series.shape} and dtype {series.dtype}; expected "
            "numbers of shape (rows, columns)",
            "source",
        )
    return series


def _column(kind, path, table, j, name, key, fail) -> np.ndarray:
    if kind == "npz":
        values = np.asarray(table[:, j], "float64")
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise fail(f"{path}: series row {bad[0]}, column {j} is {values[bad[0]]}", key)
        return values.astype("float32")
    cells = [row[j] for row in table]
    try:
        values = np.array(cells, dtype="float64")
    except ValueError:
        values = None
    if values is None or not np.all(np.isfinite(values)):
        for i, cell in enumerate(cells):
            try:
                ok = np.isfinite(float(cell))
            except ValueError:
                ok = False
            if not ok:
                what = "is empty" if not cell.strip() else f"is {cell[:40]!r}, not a number"
                raise fail(f"{path} row {i + 2}, column {name!r}: the cell {what}; a series "
                           "needs a number in every cell of its columns", key)  # fmt: skip
    return values.astype("float32")


def timeline(rows: int, validation_split: float, test_split: float) -> dict[str, tuple]:
    """{split: (first row, end row)} of a series split by time: train first (the example's
    `int(0.715 * rows)` rows), then validation, then test (`round(rows * test_split)`)."""
    v, s = validation_split, test_split
    train = rows if v == 0 and s == 0 else int(rows * (1 - v - s))
    test = 0 if s == 0 else rows - train if v == 0 else int(round(rows * s))
    val = rows - train - test
    return {"train": (0, train), "val": (train, train + val), "test": (train + val, rows)}


def rows_needed(windows: Mapping, validation_split: float, test_split: float) -> int:
    """The fewest rows for which every split asked for holds at least one window."""
    least = delay(windows) + 1
    share = min(f for f in (1 - validation_split - test_split, validation_split, test_split) if f)
    n = max(least, int((least - 1.5) / share))  # a part may round one row up: count on from here
    while not _fits(timeline(n, validation_split, test_split), least):
        n += 1
    return n


def _fits(parts: dict, least: int) -> bool:
    return all(b - a >= least or b == a for a, b in parts.values()) and (
        parts["train"][1] - parts["train"][0] >= least
    )


def windows(x: np.ndarray, y: np.ndarray, w: Mapping) -> tuple[tf.data.Dataset, int]:
    """The (window, target) pairs of one part of a series, unbatched: window `i` is rows
    `i, i + sampling_rate, ...` (`sequence_length` of them), its target `y[i + delay]`."""
    import keras

    d = delay(w)
    ds = keras.utils.timeseries_dataset_from_array(
        x, y[d:], sequence_length=w["sequence_length"], sampling_rate=w["sampling_rate"],
        sequence_stride=w["sequence_stride"], batch_size=None, shuffle=False,
    )  # fmt: skip
    count = -(-(len(x) - d) // w["sequence_stride"])
    shape = (w["sequence_length"], x.shape[1])  # Keras leaves the length unknown: (None, F)
    plain = tf.autograph.experimental.do_not_convert
    ds = ds.map(plain(lambda xi, yi: (tf.ensure_shape(xi, shape), tf.ensure_shape(yi, (1,)))))
    return ds.apply(tf.data.experimental.assert_cardinality(count)), count


def normalizer(x_train: np.ndarray) -> Any:
    """A `keras.layers.Normalization` holding the training rows' mean and variance."""
    import keras

    mean, var = x_train.astype("float64").mean(0), x_train.astype("float64").var(0)
    return keras.layers.Normalization(
        axis=-1, mean=mean.astype("float32"), variance=var.astype("float32"), name="normalize"
    )


def normalize(ds: tf.data.Dataset, layer: Any) -> tf.data.Dataset:
    """`ds` with its windows normalized as `layer` does it: `(x - mean) / max(std, eps)`."""
    import keras

    mean = np.asarray(layer.input_mean, "float32")
    std = np.maximum(np.sqrt(np.asarray(layer.input_variance, "float32")), keras.config.epsilon())
    plain = tf.autograph.experimental.do_not_convert
    return ds.map(plain(lambda xi, yi: ((xi - mean) / std, yi)))


def load_series(kind: str, path: Path, spec: dict, where: Where, *, raw: bool = False) -> tuple:
    """(windows by split, sizes by split, info) of a `windows:` source.

    Args:
        kind: "csv" or "npz"; `path`: the file.
        spec: the resolved data section.
        where: the position of the data section, for errors.
        raw: leave the windows un-normalized (a run's saved model takes them raw).

    `info` holds the class information (a forecast is a regression) and `normalizer`, the
    `keras.layers.Normalization` of `normalize: true` (else None).
    """
    w = spec["windows"]

    def fail(message: str, key: str) -> Exception:
        return data_error(where if key == "source" else where.at("windows"), key, message)

    x, y, w["features"] = read_series(kind, path, w, fail)  # made concrete (null: every column)
    parts = timeline(len(x), spec["validation_split"], spec["test_split"])
    least = delay(w) + 1
    if not _fits(parts, least):
        need = rows_needed(w, spec["validation_split"], spec["test_split"])
        short = ", ".join(f"{s} {b - a:,}" for s, (a, b) in parts.items() if b > a)
        raise fail(
            f"{path} has {len(x):,} rows, too few for these windows: each split needs at least "
            f"{least:,} rows (a window spans {span(w):,} rows, sequence_length "
            f"{w['sequence_length']} x sampling_rate {w['sampling_rate']}, and its target is "
            f"{w['offset']} rows after that), and the split by time gives {short}; this needs "
            f"at least {need:,} rows, or a smaller sequence_length, sampling_rate or offset",
            "sequence_length",
        )
    layer = normalizer(x[slice(*parts["train"])]) if spec["normalize"] else None
    dss, sizes = {}, {}
    for split, (a, b) in parts.items():
        if b == a:
            dss[split], sizes[split] = None, 0
            continue
        ds, sizes[split] = windows(x[a:b], y[a:b], w)
        dss[split] = normalize(ds, layer) if layer is not None and not raw else ds
    info = {"class_names": None, "num_classes": None, "task": "regression", "normalizer": layer}
    return dss, sizes, info


def last_window(path: str | Path, data: Mapping) -> np.ndarray:
    """The last window of a CSV (`kerakit predict RUN rows.csv`): its last
    `sequence_length * sampling_rate` rows, one in `sampling_rate`, shape (1, length, features).
    Columns by name for a `csv:` run, by position for an `npz:` run; the target column may be
    there or not when it is not a feature."""
    w = data["windows"]
    npz = str(data["source"]).startswith("npz:")
    header, rows = read_table(path)
    columns = list(range(len(header))) if npz else header
    wanted = w["features"]
    need = span(w)
    if len(rows) < need:
        raise DataError(
            f"{path} has {len(rows):,} rows; this run's windows need the last {need:,} rows "
            f"(sequence_length {w['sequence_length']} x sampling_rate {w['sampling_rate']})"
        )

    def fail(message: str, key: str) -> Exception:
        return DataError(message)

    out = []
    for name in wanted:
        if name not in columns:
            raise DataError(
                f"{path} has no column {name!r}, a feature of this run"
                + (describe_columns(header, name) if not npz else "")
            )
        out.append(_column("csv", path, rows, columns.index(name), name, "features", fail))
    x = np.stack(out, axis=1)[-need :: w["sampling_rate"]]
    return x[None]
