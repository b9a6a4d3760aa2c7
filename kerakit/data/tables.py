"""The one CSV reader: a header row, then rows of cells; numeric feature columns as float32.

Training (`csv:PATH` sources) and `kerakit predict` on a `.csv` read tables
through the same two functions, so both refuse the same files with the same
words: the file, the row, the column, the cell.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kerakit.errors import DataError


def read_table(path: str | Path, fail: Callable[[str], Exception] = DataError) -> tuple[list, list]:
    """(header, rows) of a CSV file with a header row and at least one data row.

    Empty lines are skipped; every row must have as many cells as the header.
    `fail(message)` makes the error to raise (a `DataError` by default).
    """
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise fail(f"{path} needs a header row and at least one data row")
    header, rows = rows[0], [r for r in rows[1:] if r]
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise fail(f"{path} row {i + 2} has {len(row)} cells, not {len(header)}")
    return header, rows


def feature_matrix(
    path: str | Path,
    header: list,
    rows: list,
    *,
    exclude: str | None = None,
    fail: Callable[[str], Exception] = DataError,
) -> np.ndarray:
    """The numeric columns of a table (all but `exclude`) as a float32 matrix."""
    keep = [j for j, name in enumerate(header) if name != exclude]
    features = np.empty((len(rows), len(keep)), "float32")
    for i, row in enumerate(rows):
        try:
            features[i] = [float(row[j]) for j in keep]
        except ValueError:
            bad = next(j for j in keep if not is_number(row[j]))
            raise fail(
                f"{path} row {i + 2}, column {header[bad]!r}: {row[bad]!r} is not a number; "
                "feature columns must be numeric"
            ) from None
    return features


def is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
