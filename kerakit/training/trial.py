"""A run that is a trial of `kerakit search`: each epoch's metric reported to the study,
and the run stopped when the study's pruner says so (Optuna's own pruning protocol, the
one its Keras integration follows). The search worker starts the run with the trial in
the environment (`KERAKIT_TRIAL`, JSON); any other run has no such callback.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import keras

from kerakit._files import write_json
from kerakit.errors import KerakitError
from kerakit.recipe.search import PRUNED_FILE, TRIAL_ENV, make_pruner


class TrialReport(keras.callbacks.Callback):
    """Reports `metric` to the trial at each epoch's end; stops training when pruned."""

    def __init__(self, storage: str, study: str, trial_id: int, metric: str, pruner: str,
                 run_dir: str, spawned: float | None = None):  # fmt: skip
        super().__init__()
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        loaded = optuna.load_study(study_name=study, storage=storage, pruner=make_pruner(pruner))
        self.trial = optuna.trial.Trial(loaded, trial_id)
        self.metric, self.run_dir, self.spawned = metric, Path(run_dir), spawned

    def on_train_begin(self, logs=None):
        self._fit_begin = time.time()
        if self.spawned is not None:  # process start, imports, data, model: before fit
            self.trial.set_user_attr("startup_s", round(self._fit_begin - self.spawned, 3))

    def on_train_end(self, logs=None):
        self.trial.set_user_attr("fit_s", round(time.time() - self._fit_begin, 3))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.metric not in logs:
            logged = ", ".join(k for k in logs if k not in ("stage", "learning_rate"))
            raise KerakitError(
                f"search.metric {self.metric!r} is not logged by this run; it logs: {logged}. "
                "Name one of those (val_ metrics need validation data)"
            )
        value = float(logs[self.metric])
        if not math.isfinite(value):
            return
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            write_json(self.run_dir / PRUNED_FILE, {"epoch": epoch + 1, self.metric: value})
            self.model.stop_training = True


def trial_callbacks(run_dir) -> list:
    """[TrialReport] when this process trains a search trial, else []."""
    text = os.environ.get(TRIAL_ENV)
    if not text:
        return []
    spec = json.loads(text)
    return [TrialReport(spec["storage"], spec["study"], spec["trial_id"], spec["metric"],
                        spec["pruner"], str(run_dir), spec.get("spawned"))]  # fmt: skip
