"""`history.csv`, the one record of a run's epochs: read, written and trimmed here only.

Keras's CSVLogger appends a row per epoch (`epoch`, then the logged values in
name order; a two-stage transfer run adds a `stage` column). The run, the
resume, the two-stage fit and the pictures all read it through
`history_columns`, so an empty cell or a stage label means the same to each.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kerakit._files import write_text
from kerakit.errors import DataError

HISTORY_FILE = "history.csv"


def history_columns(path: str | os.PathLike) -> dict[str, list]:
    """{column: values} of a history.csv: numbers as floats, anything else as its text.

    A missing or empty file gives {}.
    """
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return {}
    out: dict[str, list] = {}
    for row in rows:
        for key, value in row.items():
            if not key:
                continue
            try:
                out.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                out.setdefault(key, []).append("" if value is None else value)
    return out


def epochs_in_stage(path: str | os.PathLike, stage: int) -> int:
    """How many epochs of a two-stage run's `stage` the history holds."""
    return sum(1 for s in history_columns(path).get("stage", []) if s == stage)


def write_history(path: str | os.PathLike, history: dict) -> Path:
    """Write {metric: [value per epoch]} as a history.csv (epoch numbers from 0)."""
    keys = list(history)
    n = max((len(v) for v in history.values()), default=0)
    lines = [",".join(["epoch", *keys])]
    for i in range(n):
        lines.append(",".join([str(i)] + [repr(float(history[k][i])) for k in keys]))
    return write_text(path, "\n".join(lines) + "\n")


def trim_history(path: str | os.PathLike, keep_below: int) -> None:
    """Drop the rows of epochs >= `keep_below` (logged after the backup a resume restarts from)."""
    path = Path(path)
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    if not lines:
        return
    kept = [lines[0]] + [
        line
        for line in lines[1:]
        if line.split(",", 1)[0].isdigit() and int(line.split(",", 1)[0]) < keep_below
    ]
    if len(kept) != len(lines):
        write_text(path, "\n".join(kept) + "\n")


def history_values(history: Any) -> dict[str, list]:
    """{column: values} of a Keras History, a dict of lists, a history.csv or a run folder:
    numbers as floats (an empty cell is NaN), the `stage` column as text."""
    history = getattr(history, "history", history)  # a keras.callbacks.History
    if isinstance(history, Mapping):
        return {str(k): _numbers(k, list(np.ravel(v))) for k, v in history.items()}
    if not isinstance(history, (str, os.PathLike)):
        raise DataError(
            f"history must be a Keras History, a dict of lists or a history.csv path; "
            f"got {type(history).__name__}"
        )
    path = Path(history)
    if path.is_dir():
        path = path / HISTORY_FILE
    if not path.is_file():
        raise DataError(f"no history file at {path}; a run folder keeps it as {HISTORY_FILE}")
    return {k: _numbers(k, v) for k, v in history_columns(path).items()}


def _numbers(key: str, values: list) -> list:
    if key == "stage":
        return ["" if v is None else (str(int(v)) if isinstance(v, float) else v) for v in values]
    out = []
    for v in values:
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            out.append(math.nan)  # an empty cell: that epoch had no such value
    return out
