"""The one CSV reader: a header row, then rows of cells; numeric feature columns as float32.

Training (`csv:PATH` sources) and `kerakit predict` on a `.csv` read tables
through the same functions, so both refuse the same files with the same
words: the file, the row, the column. An error never quotes a cell of the file
(a recipe from someone else may point at a private file), and lists the column
names only when the first row looks like a CSV header.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kerakit.errors import DataError, did_you_mean

PARQUET_EXTS = (".parquet", ".pq")


def read_table(path: str | Path, fail: Callable[[str], Exception] = DataError) -> tuple[list, list]:
    """(header, rows) of a CSV file with a header row and at least one data row, or of a
    Parquet file (`.parquet`, read by pandas and pyarrow when they are installed).

    Empty lines are skipped; every row must have as many cells as the header.
    `fail(message)` makes the error to raise (a `DataError` by default).
    """
    if Path(path).suffix.lower() in PARQUET_EXTS:
        return _read_parquet(path, fail)
    try:  # utf-8-sig: a byte-order mark is not part of the first column's name
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError as exc:
        raise fail(
            f"{path} is not UTF-8 text (byte {exc.start} cannot be read); save the CSV as UTF-8"
        ) from None
    except csv.Error as exc:  # e.g. a cell over the csv module's 131,072-character limit
        raise fail(f"{path} is not a CSV kerakit can read ({exc})") from None
    if len(rows) < 2:
        raise fail(f"{path} needs a header row and at least one data row")
    header, rows = rows[0], [r for r in rows[1:] if r]
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise fail(f"{path} row {i + 2} has {len(row)} cells, not {len(header)}")
    return header, rows


def _read_parquet(path: str | Path, fail: Callable[[str], Exception]) -> tuple[list, list]:
    """A Parquet table as the CSV reader gives one: its column names, then each row's cells
    as text (a missing value is an empty cell), so both kinds of file are read alike."""
    try:
        import pandas as pd
        import pyarrow  # noqa: F401  (pandas reads Parquet through it)
    except ImportError:
        raise fail(
            f"{path} is a Parquet file, which needs pandas and pyarrow: "
            'pip install "kerakit[parquet]" (or save the table as CSV)'
        ) from None
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow and OS errors alike: not a Parquet file kerakit can read
        why = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise fail(
            f"{path} is not a Parquet file kerakit can read ({type(exc).__name__}: {why})"
        ) from None
    if frame.empty:
        raise fail(f"{path} needs at least one row")

    def cell(value) -> str:
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            return ""
        return repr(float(value)) if isinstance(value, float) else str(value)

    header = [str(c) for c in frame.columns]
    rows = [[cell(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    return header, rows


def feature_matrix(
    path: str | Path,
    header: list,
    rows: list,
    *,
    exclude: str | tuple | None = None,
    fail: Callable[[str], Exception] = DataError,
) -> np.ndarray:
    """The numeric columns of a table (all but `exclude`, a column name or several) as a
    float32 matrix."""
    skip = {exclude} if isinstance(exclude, str) else set(exclude or ())
    keep = [j for j, name in enumerate(header) if name not in skip]
    features = np.empty((len(rows), len(keep)), "float32")
    for i, row in enumerate(rows):
        try:
            features[i] = [float(row[j]) for j in keep]
        except ValueError:
            bad = next(j for j in keep if not is_number(row[j]))
            column = repr(header[bad]) if _looks_like_header(header) else f"#{bad + 1}"
            what = "is empty" if not row[bad].strip() else "is not a number"
            raise fail(
                f"{path} row {i + 2}, column {column}: the cell {what}; feature columns must "
                "be numeric"
            ) from None
    return features


_COLUMN_NAME = re.compile(r"[\w .()%/+\-]{1,64}")


def _looks_like_header(header: list) -> bool:
    return all(_COLUMN_NAME.fullmatch(name) for name in header)


def describe_columns(header: list, wanted: str) -> str:
    """'(did you mean ...); columns: a, b' when the first row looks like a CSV header;
    otherwise no file content at all."""
    if not _looks_like_header(header):
        return f"; its first row does not look like a CSV header ({len(header)} cells)"
    return f"{did_you_mean(wanted, header)}; columns: {', '.join(header)}"


def is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def typed_columns(
    path: str | Path,
    columns: dict,
    kinds: dict[str, str],
    *,
    rows: np.ndarray | None = None,
    fills: dict | None = None,
    fail: Callable[[str, str], Exception],
) -> dict[str, np.ndarray]:
    """Cells of a table's columns (`columns`: name -> a sequence of cell strings) as arrays of
    their `kinds`: "float" (float32), "integer" (int64) or "string" (str objects).

    An empty cell takes the column's `fills` value when there is one; otherwise, and for a
    cell that is not of its kind, `fail(message, column)` makes the error, naming the file's
    row (`rows`: the file row of each cell, default 2, 3, ...) and the column, never the cell.
    """
    fills = fills or {}
    out = {}
    for name, cells in columns.items():
        kind = kinds[name]
        values: list = []
        for i, cell in enumerate(cells):
            row = int(rows[i]) if rows is not None else i + 2
            if not cell.strip():
                if name not in fills:
                    raise fail(f"{path} row {row}, column {name!r}: the cell is empty", name)
                values.append(fills[name])
                continue
            if kind == "string":
                values.append(cell)
                continue
            try:
                number = float(cell)
            except ValueError:
                raise fail(
                    f"{path} row {row}, column {name!r}: the cell is not a number", name
                ) from None
            if kind == "integer" and not number.is_integer():
                raise fail(
                    f"{path} row {row}, column {name!r}: the cell is not a whole number", name
                )
            values.append(number)
        dtype = {"float": "float32", "integer": "int64", "string": object}[kind]
        array = np.array(values, dtype=dtype)
        out[name] = array.astype(str).astype(object) if kind == "string" else array
    return out
