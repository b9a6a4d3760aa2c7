"""Working across runs: load a finished run folder back as a `Run`, list the runs under
an output folder, compare two, and train one again to check that it reproduces.

    from kerakit.runs import list_runs, diff_runs, reproduce, load_run
    rows = list_runs("runs", sort="accuracy")        # kerakit runs runs --sort accuracy
    print(format_diff(diff_runs(a, b)))              # kerakit diff A B
    result = reproduce("runs/digits/20261205-1015")  # kerakit reproduce RUN

Listing and diffing read files only (no TensorFlow): the names load on first use.
"""

from __future__ import annotations

import importlib

_NAMES = {
    "load_run": "kerakit.runs.load",
    "list_runs": "kerakit.runs.table",
    "format_table": "kerakit.runs.table",
    "diff_runs": "kerakit.runs.diff",
    "format_diff": "kerakit.runs.diff",
    "reproduce": "kerakit.runs.reproduce",
    "format_reproduction": "kerakit.runs.reproduce",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'kerakit.runs' has no attribute {name!r}")
