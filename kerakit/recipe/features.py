"""The `features:` key of a `csv:` source: each column described the Keras way, with no
TensorFlow.

A table's columns become a `keras.utils.FeatureSpace` (keras.io's "Structured data
classification with FeatureSpace"): `resolve_features` checks the key and returns it as
plain values; `kerakit.data.features` builds, adapts and saves the FeatureSpace.

    data:
      source: csv:data/heart.csv
      target: target
      features:
        columns:
          sex: {integer_categorical: {num_oov_indices: 0}}
          thal: string_categorical
          age: {float_discretized: {num_bins: 30}}
          chol: {float_normalized: {fill_missing: 240}}
        crosses:
          - {features: [sex, age], crossing_dim: 64}
        output_mode: concat

`features: auto` is resolved when the data is read (the training split decides each type);
the resolved recipe records the concrete choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kerakit.errors import Where, did_you_mean
from kerakit.recipe.schema import (
    check_choice,
    check_keys,
    check_mapping,
    check_number,
    check_str,
    show,
    type_name,
)

# FeatureSpace's feature types -> the kind of value a cell holds.
FEATURE_TYPES: dict[str, str] = {
    "float": "float",
    "float_normalized": "float",
    "float_rescaled": "float",
    "float_discretized": "float",
    "integer_categorical": "integer",
    "integer_hashed": "integer",
    "string_categorical": "string",
    "string_hashed": "string",
}
# Each type's options (FeatureSpace's own arguments), and kerakit's `fill_missing`.
OPTIONS: dict[str, tuple[str, ...]] = {
    "float": (),
    "float_normalized": (),
    "float_rescaled": ("scale", "offset"),
    "float_discretized": ("num_bins", "output_mode"),
    "integer_categorical": ("max_tokens", "num_oov_indices", "output_mode"),
    "string_categorical": ("max_tokens", "num_oov_indices", "output_mode"),
    "integer_hashed": ("num_bins", "output_mode"),
    "string_hashed": ("num_bins", "output_mode"),
}
FILL = "fill_missing"
# Types whose values are bins, ids or hashes: only these can be crossed or one-hot encoded.
DISCRETE = tuple(
    t for t in FEATURE_TYPES if t not in ("float", "float_normalized", "float_rescaled")
)
DEFAULT_BINS = 32  # Keras's FeatureSpace default (num_discretization_bins, hashing_dim)
DEFAULT_CROSSING_DIM = 32
OUTPUT_MODES = ("concat", "dict")


def feature_type(entry: Any) -> tuple[str, dict]:
    """(type, options) of a resolved column entry: `thal: string_categorical` or
    `age: {float_discretized: {num_bins: 30}}`."""
    if isinstance(entry, str):
        return entry, {}
    ((kind, options),) = entry.items()
    return kind, dict(options or {})


def value_kind(entry: Any) -> str:
    """ "float", "integer" or "string": what the cells of a column must hold."""
    return FEATURE_TYPES[feature_type(entry)[0]]


def table_features(data: Mapping) -> Any:
    """The `features` of a `csv:` data section, else None (a `tfrecord:` source's `features`
    is its record spec, not a FeatureSpace)."""
    source = data.get("source")
    return data.get("features") if isinstance(source, str) and source.startswith("csv:") else None


def resolve_features(value: Any, where: Where, *, exclude: tuple = ()) -> dict | str:
    """Validates `data.features` of a csv source; returns it as plain values.

    Args:
        value: `"auto"`, or a mapping with `columns` (column -> type), optional
            `crosses` and `output_mode`.
        where: the position of the `features` key.
        exclude: the target and sample-weight columns, which are never features.

    Returns:
        `"auto"`, or `{"columns": {...}, "crosses": [...], "output_mode": ...}` with each
        column as `TYPE` or `{TYPE: {options}}` and each cross's defaults filled in.

    Example:

    >>> resolve_features({"columns": {"age": "float_normalized"}}, Where())
    {'columns': {'age': 'float_normalized'}, 'crosses': [], 'output_mode': 'concat'}
    """
    if value == "auto":
        return "auto"
    check_mapping(value, where, 'a mapping with `columns:` (column -> feature type), or "auto"')
    check_keys(value, ["columns", "crosses", "output_mode"], where, section="data.features",
               required=["columns"])  # fmt: skip
    output_mode = value.get("output_mode", "concat")
    check_choice(output_mode, OUTPUT_MODES, where.at("output_mode"), "output_mode")
    cols = check_mapping(value["columns"], where.at("columns"), "a mapping column -> feature type")
    if not cols:
        raise where.at("columns").error("name at least one column, e.g. `age: float_normalized`")
    columns = {}
    for name, entry in cols.items():
        w = where.at("columns", name)
        if name in exclude:
            raise w.error(
                f"{name!r} is the target or sample-weight column, never a feature; remove it"
            )
        if any(bad in str(name) for bad in ("/", "\\", "..")):
            raise w.error(
                f"a feature column name may not hold '/', '\\' or '..' (it names the saved "
                f"model's input, and such names are refused when loading); rename {name!r}"
            )
        columns[name] = _column(entry, w, output_mode)
    crosses = value.get("crosses") or []
    if not isinstance(crosses, list):
        raise where.at("crosses").error(
            f"expected a list of {{features: [a, b], crossing_dim: 32}}, got {type_name(crosses)}"
        )
    out_crosses = [
        _cross(c, where.at("crosses", i), columns, output_mode) for i, c in enumerate(crosses)
    ]
    return {"columns": columns, "crosses": out_crosses, "output_mode": output_mode}


def _column(entry: Any, where: Where, output_mode: str) -> str | dict:
    types = list(FEATURE_TYPES)
    if isinstance(entry, Mapping) and len(entry) == 1:
        ((kind, options),) = entry.items()
    elif isinstance(entry, str):
        kind, options = entry, None
    else:
        raise where.error(
            f"expected a feature type ({', '.join(types)}) or {{TYPE: {{options}}}}, "
            f"got {type_name(entry)} {show(entry)}"
        )
    check_choice(kind, types, where, "feature type")
    if options is None or options == {}:
        return kind
    w = where.at(kind)
    check_mapping(options, w, f"the options of {kind}")
    allowed = [*OPTIONS[kind], FILL]
    check_keys(options, allowed, w, section=kind)
    for key in ("num_bins", "max_tokens"):
        if options.get(key) is not None:
            low = 2 if key == "max_tokens" else 1
            check_number(options[key], w.at(key), integer=True, minimum=low, maximum=MAX_SIZE)
    if "num_oov_indices" in options:
        check_number(options["num_oov_indices"], w.at("num_oov_indices"), integer=True,
                     minimum=0, maximum=MAX_OOV)  # fmt: skip
    for key in ("scale", "offset"):
        if key in options:
            check_number(options[key], w.at(key))
    _check_output_mode(options.get("output_mode", "one_hot"), w.at("output_mode"), output_mode)
    if FILL in options:
        _check_fill(options[FILL], FEATURE_TYPES[kind], w.at(FILL))
    return {kind: dict(options)}


# Sizes past these are typos, not tables: Keras would try to allocate them (a vocabulary of
# 10**12 out-of-vocabulary ids fails deep in TensorFlow, found by tests/e2e/test_fuzz.py).
MAX_SIZE = 10_000_000
MAX_OOV = 1_000


def _check_output_mode(mode: Any, where: Where, output_mode: str) -> None:
    """A feature's or a cross's `output_mode`: one_hot or int, and int only when the features
    are kept apart (`features.output_mode: dict`)."""
    check_choice(mode, ["one_hot", "int"], where, "output_mode")
    if mode == "int" and output_mode == "concat":
        raise where.error(
            "output_mode: int gives integer ids, which `output_mode: concat` cannot join into "
            "one vector; use one_hot here, or features.output_mode: dict"
        )


def _check_fill(value: Any, kind: str, where: Where) -> None:
    if kind == "string":
        if not isinstance(value, str):
            raise where.error(f"expected a string (this column holds text), got {show(value)}")
    else:
        check_number(value, where, integer=kind == "integer",
                     what="a whole number" if kind == "integer" else "a number")  # fmt: skip


def _cross(cross: Any, where: Where, columns: dict, output_mode: str) -> dict:
    check_mapping(cross, where, "a mapping {features: [a, b], crossing_dim: 32}")
    check_keys(cross, ["features", "crossing_dim", "output_mode"], where,
               section="data.features.crosses", required=["features"])  # fmt: skip
    names = cross["features"]
    if not isinstance(names, list) or len(names) < 2:
        raise where.at("features").error(
            f"expected a list of at least two column names, got {show(names)}"
        )
    for i, name in enumerate(names):
        check_str(name, where.at("features", i), "a column name")
        if name not in columns:
            raise where.at("features", i).error(
                f"{name!r} is not under features.columns{did_you_mean(name, columns)}; "
                "a cross joins columns described there"
            )
        kind = feature_type(columns[name])[0]
        if kind not in DISCRETE:
            raise where.at("features", i).error(
                f"{name!r} is {kind}: a cross hashes discrete values (categories, bins, "
                "hashes); describe it as float_discretized or a categorical type to cross it"
            )
    dim = cross.get("crossing_dim", DEFAULT_CROSSING_DIM)
    check_number(dim, where.at("crossing_dim"), integer=True, minimum=1, maximum=MAX_SIZE)
    mode = cross.get("output_mode", "one_hot")
    _check_output_mode(mode, where.at("output_mode"), output_mode)
    return {"features": list(names), "crossing_dim": dim, "output_mode": mode}
