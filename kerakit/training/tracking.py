"""Trackers users already have, fed from a run: TensorBoard and MLflow (`train.tracking`).

```yaml
train:
  tracking: [tensorboard, mlflow]          # or, with options:
  # tracking: {mlflow: {tracking_uri: http://mlflow.lan:5000, experiment: digits}}
```

- `tensorboard`: Keras's `TensorBoard` callback with the run folder as its log
  directory (`train/`, `validation/`: the epoch scalars), and the recipe's values
  in the HParams plugin (one session, named after the run folder).
- `mlflow`: one MLflow run per run folder (a resumed run continues it): the resolved
  recipe's values as parameters, every epoch's metrics (step = epoch), and at the
  end the run folder's files as artifacts, the saved model files under `model/`.
  The default store is `output.dir/mlruns`, a local file store.

The run folder stays the record of truth: a tracker that fails (a package error, a
server that goes away) prints one warning line and stops; training goes on.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import keras

from kerakit._files import read_json
from kerakit.recipe import Recipe
from kerakit.training.runfolder import (
    BACKUP_DIR,
    FEATURES_DIR,
    RUN_FILE,
    STAGE2_BACKUP_DIR,
    kept_recipe,
    write_run_json,
)

MLFLOW_FILE = "mlflow.json"  # the MLflow run of this run folder (a resume continues it)
PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}
MAX_PARAM_KEY, MAX_PARAM_VALUE, PARAMS_PER_CALL = 250, 6000, 100  # MLflow's limits
MLFLOW_STATUS = {"complete": "FINISHED", "interrupted": "KILLED"}  # else FAILED
NOT_ARTIFACTS = {BACKUP_DIR, STAGE2_BACKUP_DIR, FEATURES_DIR}


def check_trackers(recipe: Recipe) -> None:
    """Refuse, before a run folder is made, a tracker whose package is not installed."""
    for name in recipe["train"].get("tracking") or {}:
        module, extra = PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            raise recipe.where.at("train", "tracking").error(
                f"tracking with {name} needs the {module} package, which is not installed: "
                f'pip install "kerakit[{extra}]"'
            )


def flat_values(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested recipe as {key path: value}: "compile.optimizer.adam.learning_rate": 0.001."""
    out: dict[str, Any] = {}
    if isinstance(value, Mapping) and value:
        for key, sub in value.items():
            out.update(flat_values(sub, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, list) and value:
        for i, sub in enumerate(value):
            out.update(flat_values(sub, f"{prefix}[{i}]"))
    else:
        out[prefix or "recipe"] = value
    return out


class Tracker(keras.callbacks.Callback):
    """A tracker's Keras callback: each call guarded, the first failure one warning line."""

    name = "tracker"

    def __init__(self):
        super().__init__()
        self.failed = False

    def guard(self, fn, *args) -> Any:
        if self.failed:
            return None
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 (a tracker never fails the training)
            self.failed = True
            print(f"kerakit: warning: {self.name} tracking stopped ({type(exc).__name__}: "
                  f"{str(exc).splitlines()[0] if str(exc) else ''}); training goes on, the run "
                  "folder keeps the record", file=sys.stderr, flush=True)  # fmt: skip
            return None

    def close(self, status: str) -> None:
        """The run has ended with `status` (its files are all written)."""


class TensorBoardTracker(Tracker):
    """Keras's TensorBoard callback into the run folder, and the recipe's values as HParams."""

    name = "tensorboard"

    def __init__(self, recipe: Recipe, path: Path, options: Mapping):
        super().__init__()
        self.path = Path(path)
        self.values = {k: _hparam(v) for k, v in flat_values(kept_recipe(recipe)).items()}
        self.board = keras.callbacks.TensorBoard(log_dir=str(self.path), **dict(options))
        self._hparams_written = False

    def set_model(self, model):
        super().set_model(model)
        self.guard(self.board.set_model, model)

    def set_params(self, params):
        super().set_params(params)
        self.board.set_params(params)

    def _write_hparams(self) -> None:
        import tensorflow as tf
        from tensorboard.plugins.hparams import api as hp

        writer = tf.summary.create_file_writer(str(self.path))
        with writer.as_default():
            hp.hparams(self.values, trial_id=self.path.name)
        writer.close()

    def on_train_begin(self, logs=None):
        if not self._hparams_written:  # once: a transfer run fits twice
            self._hparams_written = True
            if not any(self.path.glob("events.out.tfevents.*")):  # (a resumed run has them)
                self.guard(self._write_hparams)
        self.guard(self.board.on_train_begin, logs)

    def on_train_end(self, logs=None):
        self.guard(self.board.on_train_end, logs)

    def on_epoch_begin(self, epoch, logs=None):
        self.guard(self.board.on_epoch_begin, epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self.guard(self.board.on_epoch_end, epoch, logs)

    def on_test_begin(self, logs=None):
        self.guard(self.board.on_test_begin, logs)

    def on_test_end(self, logs=None):
        self.guard(self.board.on_test_end, logs)


def _hparam(value: Any) -> bool | int | float | str:
    if isinstance(value, (bool, int, float, str)):
        return value
    return "None" if value is None else str(value)


def mlflow_name(key: str) -> str:
    """A key path as MLflow names take it: `model.sequential[0].Dense.units` ->
    `model.sequential.0.Dense.units`; other characters MLflow refuses become `_`."""
    key = re.sub(r"\[(\d+)\]", r".\1", str(key))
    return re.sub(r"[^\w\-. :/]", "_", key)


class MLflowTracker(Tracker):
    """One MLflow run per run folder: parameters, per-epoch metrics, files and model."""

    name = "mlflow"

    def __init__(self, recipe: Recipe, path: Path, options: Mapping):
        super().__init__()
        self.path = Path(path)
        self.recipe = recipe
        self.uri = (
            options.get("tracking_uri")
            or (Path(recipe["output"]["dir"]).absolute() / "mlruns").as_uri()
        )
        self.experiment = options.get("experiment") or recipe.name
        self.client = None
        self.run_id: str | None = None

    def _start(self) -> None:
        from urllib.parse import urlparse

        from kerakit._net import unreachable

        url = urlparse(self.uri)
        if url.scheme in ("http", "https"):  # fail in seconds, not after MLflow's retries
            port = url.port or (443 if url.scheme == "https" else 80)
            why = unreachable(url.hostname or "", port, timeout=3.0)
            if why:
                raise ConnectionError(f"{self.uri} cannot be reached: {why}")
        if url.scheme in ("", "file"):
            # MLflow 3 keeps the file store only on request; it is the local default here.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri)
        kept = read_json(self.path / MLFLOW_FILE)
        if kept.get("run_id") and kept.get("tracking_uri") == self.uri:  # a resumed run
            self.run_id = kept["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        found = self.client.get_experiment_by_name(self.experiment)
        experiment_id = (
            found.experiment_id if found else self.client.create_experiment(self.experiment)
        )
        run = self.client.create_run(experiment_id, run_name=self.path.name,
                                     tags={"kerakit.run_folder": str(self.path.resolve())})  # fmt: skip
        self.run_id = run.info.run_id
        write_run_json(self.path / MLFLOW_FILE, {"tracking_uri": self.uri, "run_id": self.run_id,
                                                 "experiment": self.experiment})  # fmt: skip
        self._log_params()

    def _log_params(self) -> None:
        from mlflow.entities import Param

        params = [Param(mlflow_name(k)[:MAX_PARAM_KEY], str(v)[:MAX_PARAM_VALUE])
                  for k, v in flat_values(kept_recipe(self.recipe)).items()]  # fmt: skip
        for i in range(0, len(params), PARAMS_PER_CALL):
            self.client.log_batch(self.run_id, params=params[i : i + PARAMS_PER_CALL])

    def _log_epoch(self, epoch: int, logs: Mapping) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(mlflow_name(k), float(v), now, int(epoch)) for k, v in (logs or {}).items()
                   if isinstance(v, (int, float)) or hasattr(v, "__float__")]  # fmt: skip
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def _log_files(self, status: str) -> None:
        for item in sorted(self.path.iterdir()):
            if item.name.startswith(".") or item.name in NOT_ARTIFACTS:
                continue
            where = "model" if item.name.startswith("model.") or item.name == "model" else None
            if item.is_dir():
                self.client.log_artifacts(self.run_id, str(item),
                                          f"{where}/{item.name}" if where else item.name)  # fmt: skip
            else:
                self.client.log_artifact(self.run_id, str(item), where)
        self.client.set_terminated(self.run_id, MLFLOW_STATUS.get(status, "FAILED"))

    def on_train_begin(self, logs=None):
        if self.client is None:
            self.guard(self._start)

    def on_epoch_end(self, epoch, logs=None):
        if self.run_id is not None:
            self.guard(self._log_epoch, epoch, logs)

    def close(self, status: str) -> None:
        if self.run_id is not None:
            self.guard(self._log_files, status)


TRACKERS = {"tensorboard": TensorBoardTracker, "mlflow": MLflowTracker}


def make_trackers(recipe: Recipe, path: Path) -> list[Tracker]:
    """The Keras callbacks of `train.tracking` for one run folder ([] when it has none)."""
    check_trackers(recipe)
    section = recipe["train"].get("tracking") or {}
    return [TRACKERS[name](recipe, path, options or {}) for name, options in section.items()]


@contextlib.contextmanager
def tracking(recipe: Recipe, path: Path, *, enabled: bool = True) -> Iterator[list[Tracker]]:
    """The run's trackers, closed once the run has ended (its files written) with the status
    run.json holds then.

        with tracking(resolved, path) as trackers:
            fit(..., callbacks=[*callbacks, *trackers])
    """
    trackers = make_trackers(recipe, path) if enabled else []
    try:
        yield trackers
    finally:
        info = read_json(Path(path) / RUN_FILE)
        status = info.get("status", "failed")
        if status == "running" or info.get("error"):  # an error, not a stop
            status = "failed"
        for tracker in trackers:
            tracker.close(status)
