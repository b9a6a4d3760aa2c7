"""A finished run folder back as the `Run` that `train` returned."""

from __future__ import annotations

import json
import os

from kerakit._files import read_json
from kerakit.errors import KerakitError
from kerakit.inference import open_run
from kerakit.report.history import HISTORY_FILE, history_columns
from kerakit.training.run import Run
from kerakit.training.runfolder import CLASSES_FILE, METRICS_FILE, RUN_FILE


def load_run(path: str | os.PathLike, trusted: bool = False):
    """A finished run folder as the `Run` that `train` returned: its model, resolved
    recipe, history, test metrics and class names (no data)."""
    model, recipe, folder = open_run(path, trusted=trusted)
    if folder is None:
        raise KerakitError(f"{path}: not a run folder (no {RUN_FILE})")
    names = (
        json.loads((folder / CLASSES_FILE).read_text())
        if (folder / CLASSES_FILE).is_file()
        else None
    )
    return Run(folder, recipe, model, history_columns(folder / HISTORY_FILE),
               read_json(folder / METRICS_FILE), names)  # fmt: skip
