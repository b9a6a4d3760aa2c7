"""The `windows:` key of a `csv:` or `npz:` source: a time series cut into windows, with no
TensorFlow.

A series (rows in time order, one column per feature) becomes windows the way
`keras.utils.timeseries_dataset_from_array` makes them (keras.io's "Timeseries forecasting
for weather prediction"); the argument names are that function's:

    data:
      source: csv:jena_climate_2009_2016.csv
      windows:
        sequence_length: 120      # time steps per window
        sampling_rate: 6          # one row in 6: a window spans 120 * 6 = 720 rows
        sequence_stride: 1        # a window starts at every row
        features: ["p (mbar)", "T (degC)"]   # the columns of a window (null: all)
        target: "T (degC)"        # the column to forecast
        offset: 72                # rows after the window's span (0: the next row)

`resolve_windows` checks the key and returns it as plain values; `kerakit.data.series`
reads the series, splits it by time and makes the windows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kerakit.errors import Where
from kerakit.recipe.schema import check_keys, check_mapping, check_number, show, type_name

# The keys of `windows:` and their defaults (`target` is required).
WINDOW_DEFAULTS: dict[str, Any] = {
    "sequence_length": None,
    "sampling_rate": 1,
    "sequence_stride": 1,
    "features": None,
    "target": None,
    "offset": 0,
}
# Keys of the data section that do not apply to windows, and why.
NOT_WITH_WINDOWS = {
    "target": "the target of a series is `windows.target`",
    "target_type": "a forecast target is a number (regression)",
    "sample_weight": "windows take no sample weights",
    "features": "a series' columns are `windows.features`",
    "flatten": "a window is (sequence_length, features); add a Flatten layer to the model",
    "rescale": "use `normalize: true` (the training part's mean and standard deviation)",
    "image_size": "a series has no images",
}


def windows_of(data: Mapping) -> dict | None:
    """The resolved `windows` of a data section, else None."""
    return data.get("windows") if isinstance(data, Mapping) else None


def span(windows: Mapping) -> int:
    """Rows one window spans: `sequence_length * sampling_rate` (keras.io's `past`)."""
    return int(windows["sequence_length"]) * int(windows["sampling_rate"])


def delay(windows: Mapping) -> int:
    """Rows from a window's first row to its target's row: the span plus `offset`."""
    return span(windows) + int(windows["offset"])


def resolve_windows(section: Mapping, where: Where, *, kind: str) -> dict:
    """Validates `data.windows` of a csv or npz source; returns it with its defaults.

    Columns are named by header (`csv:`) or by index into the npz's 2-D `series`
    array (`npz:`). Keys of the data section that do not apply to windows are errors.

    Args:
        section: the data section as written (its `windows` and the keys beside it).
        where: the position of the data section in the recipe.
        kind: the source kind, "csv" or "npz".

    Example:

    >>> resolve_windows({"windows": {"sequence_length": 4, "target": 0}}, Where(), kind="npz")
    {'sequence_length': 4, 'sampling_rate': 1, 'sequence_stride': 1, 'features': None, \
'target': 0, 'offset': 0}
    """
    value, data_where, where = section["windows"], where, where.at("windows")
    check_mapping(value, where, "a mapping {sequence_length: N, target: COLUMN, ...}")
    check_keys(value, list(WINDOW_DEFAULTS), where, required=("sequence_length", "target"),
               section="data.windows")  # fmt: skip
    out = {k: value.get(k, d) for k, d in WINDOW_DEFAULTS.items()}
    for key, low in (("sequence_length", 1), ("sampling_rate", 1), ("sequence_stride", 1),
                     ("offset", 0)):  # fmt: skip
        check_number(out[key], where.at(key), integer=True, minimum=low, maximum=10_000_000)
    column = _column_check(kind)
    column(out["target"], where.at("target"))
    if out["features"] is not None:
        features = out["features"]
        if not isinstance(features, list) or not features:
            raise where.at("features").error(
                f"expected a list of column {'names' if kind == 'csv' else 'indices'} (or null "
                f"for every column), got "
                f"{type_name(features)} {show(features)}"
            )
        for i, name in enumerate(features):
            column(name, where.at("features", i))
        seen = [n for i, n in enumerate(features) if n in features[:i]]
        if seen:
            raise where.at("features").error(f"{seen[0]!r} is listed twice; list a column once")
    for key, why in NOT_WITH_WINDOWS.items():
        if section.get(key) not in (None, False, "auto"):  # set, not a default
            raise data_where.at(key).error(
                f"{key} does not apply with `windows:` ({why}); remove it"
            )
    return out


def _what(kind: str) -> str:
    return "a column name" if kind == "csv" else "a column index (of the npz's `series` array)"


def _column_check(kind: str):
    def check(value: Any, where: Where) -> None:
        if kind == "csv":
            if not isinstance(value, str) or not value:
                hint = ' (quote it: "0")' if isinstance(value, (int, float)) else ""
                raise where.error(
                    f"expected a column name, got {type_name(value)} {show(value)}{hint}"
                )
        else:
            check_number(value, where, integer=True, minimum=0, what=_what(kind))

    return check
