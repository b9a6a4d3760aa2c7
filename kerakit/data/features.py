"""Tables with `features:`: raw columns, a `keras.utils.FeatureSpace` adapted on the training
split, and the end-to-end model that takes raw columns (keras.io's "Structured data
classification with FeatureSpace").

The flow, as the keras.io example writes it by hand:

1. `table_columns`: the raw cells of the columns used (the training split is not known yet);
2. `type_table`, after the splits are carved: `features: auto` proposed from the training
   split, every split's cells typed (float32, int64 or strings), empty cells filled or refused;
3. `encode`: the FeatureSpace adapted on the training split only and mapped over every split,
   so the recipe's model trains on one encoded vector per row;
4. `raw_input_model`: `FeatureSpace.get_inputs()` -> encoded features -> the trained model,
   the model a run saves: it takes a dict of raw column values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from kerakit.data.tables import describe_columns, read_table, typed_columns
from kerakit.errors import DataError, Where, data_error
from kerakit.recipe.features import DEFAULT_BINS, FILL, feature_type, value_kind

ROW = "\x00row"  # the file row of each example, carried through the carve for error messages
MAX_CATEGORIES = 20  # `auto`: whole numbers with at most this many distinct values are classes


def table_columns(path: Path, header: list, rows: list, spec: Mapping, where: Where) -> tuple:
    """(raw cells by column, with the file row numbers under `ROW`; the unused columns)."""
    features = spec["features"]
    skip = (spec["target"], spec.get("sample_weight"))
    if features == "auto":
        names = [name for name in header if name not in skip]
    else:
        names = list(features["columns"])
        for name in names:
            if name not in header:
                raise data_error(where.at("features", "columns"), name,
                                 f"{path} has no column {name!r}{describe_columns(header, name)}")  # fmt: skip
    index = {name: header.index(name) for name in names}
    x: dict[str, Any] = {
        n: np.array([row[j] for row in rows], dtype=object) for n, j in index.items()
    }
    x[ROW] = np.arange(2, len(rows) + 2)
    unused = [name for name in header if name not in names and name not in skip]
    return x, unused


def propose(cells: Mapping[str, np.ndarray]) -> dict:
    """`features: auto`: a FeatureSpace type per column from its (training) cells."""
    columns = {}
    for name, values in cells.items():
        filled = [v for v in values if v.strip()]
        try:
            numbers = np.array([float(v) for v in filled], dtype="float64")
        except ValueError:
            columns[name] = "string_categorical"
            continue
        whole = bool(np.all(np.isfinite(numbers)) and np.all(numbers == np.round(numbers)))
        distinct = len(np.unique(numbers))
        few = distinct <= min(MAX_CATEGORIES, max(2, len(filled) // 2))
        columns[name] = "integer_categorical" if whole and few else "float_normalized"
    return {"columns": columns, "crosses": [], "output_mode": "concat"}


def type_table(path: Path, splits: list, spec: dict, where: Where) -> tuple[list, list[str]]:
    """The carved splits with typed columns (and `features: auto` made concrete in `spec`)."""
    notes = []
    if spec["features"] == "auto":
        train_x = splits[0][0]
        spec["features"] = propose({k: v for k, v in train_x.items() if k != ROW})
        from kerakit.recipe.reader import plain_scalar

        lines = ["features:", "  columns:"]
        for name, kind in spec["features"]["columns"].items():  # a YAML key, quoted if need be
            plain = re.fullmatch(r"[A-Za-z_][\w.\-]*", name) and plain_scalar(name) == name
            key = name if plain else json.dumps(name)
            lines.append(f"    {key}: {kind}")
        lines += ["  crosses: []", "  output_mode: concat"]
        notes.append(
            f"features: auto chose from the {len(train_x[ROW]):,} training rows (paste this in "
            "place of `features: auto` to keep or edit it):\n" + "\n".join(lines)
        )
    columns = spec["features"]["columns"]
    kinds = {name: value_kind(entry) for name, entry in columns.items()}
    fills = {}
    for name, entry in columns.items():
        options = feature_type(entry)[1]
        if FILL in options:
            fills[name] = options[FILL]
    cols_where = where.at("features", "columns")

    def fail(message: str, name: str) -> Exception:
        kind = feature_type(columns[name])[0]
        if "empty" in message:
            advice = (f"fill the cell, or give the column a value for empty cells: "
                      f"`{name}: {{{kind}: {{{FILL}: VALUE}}}}`")  # fmt: skip
        elif "whole" in message:
            advice = f"the column is {kind}; describe it as float_normalized if it holds fractions"
        else:
            advice = f"the column is {kind}; describe it as string_categorical if it holds text"
        return data_error(cols_where, name, f"{message}; {advice}")

    out = []
    for split in splits:
        if split is None:
            out.append(None)
            continue
        x, *rest = split
        cells = {k: v for k, v in x.items() if k != ROW}
        typed = typed_columns(path, cells, kinds, rows=x[ROW], fills=fills, fail=fail)
        out.append((typed, *rest))
    return out, notes


def feature_space(features: Mapping) -> Any:
    """A `keras.utils.FeatureSpace` (not adapted) of a resolved `features` section."""
    from keras.utils import FeatureSpace

    made = {}
    for name, entry in features["columns"].items():
        kind, options = feature_type(entry)
        options = {k: v for k, v in options.items() if k != FILL}
        if kind in ("float_discretized", "integer_hashed", "string_hashed"):
            options.setdefault("num_bins", DEFAULT_BINS)
        made[name] = getattr(FeatureSpace, kind)(name=name, **options)
    crosses = [
        FeatureSpace.cross(tuple(c["features"]), c["crossing_dim"], output_mode=c["output_mode"])
        for c in features["crosses"]
    ]
    return FeatureSpace(made, output_mode=features["output_mode"], crosses=crosses or None)


def encode(dss: dict, spec: Mapping, batch: int = 1024) -> tuple[dict, Any]:
    """(splits of encoded vectors, the FeatureSpace): adapted on the training split only, then
    mapped over every split, as keras.io's `train_ds.map(lambda x, y: (feature_space(x), y))`."""
    return adapt_and_map(feature_space(spec["features"]), dss, batch)


def adapt_and_map(layer: Any, dss: dict, batch: int = 1024) -> tuple[dict, Any]:
    """(every split's inputs through `layer`, the layer), the layer adapted on the training
    split's inputs only; the splits stay unbatched and keep their sizes (labels and sample
    weights pass through). A FeatureSpace or a TextVectorization alike."""
    plain = tf.autograph.experimental.do_not_convert
    layer.adapt(dss["train"].map(plain(lambda x, *_: x)).batch(batch))

    def mapped(ds):
        if ds is None:
            return None
        out = ds.batch(batch).map(plain(lambda x, *rest: (layer(x), *rest))).unbatch()
        return out.apply(tf.data.experimental.assert_cardinality(ds.cardinality()))

    return {k: mapped(d) for k, d in dss.items()}, layer


def raw_input_model(space: Any, model: Any) -> Any:
    """The end-to-end model of keras.io's example: a dict of raw column values
    (`space.get_inputs()`) -> the FeatureSpace's encoding -> the trained `model`, compiled
    as `model` is, with its optimizer's state, so a run saves what `evaluate` needs.

    `space` may also be a Keras layer that prepares the model's one input (a series'
    `Normalization`): the raw model is then `keras.Input` of the model's input shape ->
    the layer -> the trained `model`; a `TextVectorization` takes one raw string per example
    (`keras.Input(shape=(), dtype="string")`, keras.io's text `end_to_end_model`)."""
    import keras

    if hasattr(space, "get_inputs"):  # a FeatureSpace: one raw input per column
        inputs, encoded = space.get_inputs(), space.get_encoded_features()
    elif isinstance(space, keras.layers.TextVectorization):  # raw strings (data/text.py)
        # shape () rather than the example's (1,): with (1,), Keras 3.15 gives multi_hot,
        # count and tf_idf a symbolic output of (None, 1, N) (the real one is (None, N))
        inputs = keras.Input(shape=(), dtype="string", name="text")
        encoded = space(inputs)
    else:  # a layer in front of the model's one input
        inputs = keras.Input(shape=tuple(model.input_shape[1:]), dtype=model.inputs[0].dtype)
        encoded = space(inputs)
    outputs = model(encoded)
    if len(model.outputs) > 1:
        outputs = dict(zip(model.output_names, outputs))
    raw = keras.Model(inputs, outputs, name=f"{model.name}_raw_inputs")
    config = model.get_compile_config() if getattr(model, "compiled", False) else None
    if config:
        # A copy of the optimizer, not the object: Keras saves an object once, under the
        # first path it meets (the inner model's), and the outer model's would load empty.
        raw.compile_from_config(config)
        old = getattr(model.optimizer, "variables", [])
        new = getattr(raw.optimizer, "variables", [])
        if len(old) == len(new) and all(a.shape == b.shape for a, b in zip(old, new)):
            for a, b in zip(new, old):  # the same trainable variables, in the same order
                a.assign(b)
    return raw


def read_rows(path: str | Path, data: Mapping) -> dict[str, np.ndarray]:
    """The feature columns of a CSV (`kerakit predict RUN rows.csv`), typed and filled as
    training read them; the target and sample-weight columns may be there or not."""
    header, rows = read_table(path)
    columns = data["features"]["columns"]
    cells = {}
    for name in columns:
        if name not in header:
            raise DataError(
                f"{path} has no column {name!r}, a feature of this run"
                f"{describe_columns(header, name)}"
            )
        j = header.index(name)
        cells[name] = [row[j] for row in rows]
    fills = {n: feature_type(e)[1][FILL] for n, e in columns.items() if FILL in feature_type(e)[1]}
    kinds = {name: value_kind(entry) for name, entry in columns.items()}

    def fail(message: str, name: str) -> Exception:
        return DataError(
            f"{message}; the run's column {name!r} is {feature_type(columns[name])[0]}"
        )

    return typed_columns(path, cells, kinds, fills=fills, fail=fail)


def ordered(x: Mapping, model: Any) -> dict:
    """`x` with its keys in the order of the model's inputs (Keras warns otherwise)."""
    names = [t.name.split(":")[0] for t in model.inputs]
    return {n: x[n] for n in names if n in x} | {k: v for k, v in x.items() if k not in names}
