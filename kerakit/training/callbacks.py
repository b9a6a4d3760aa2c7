"""Build Keras callbacks from a resolved `train.callbacks` spec, for one run folder.

    from kerakit.training.callbacks import make_callbacks
    callbacks = make_callbacks("standard", run_dir="runs/digits/1",
                               monitor_names={"loss", "accuracy"}, has_validation=True)
    model.fit(train, validation_data=val, epochs=20, callbacks=callbacks)

Class names are looked up in `keras.callbacks` (or the Keras registry for a
``package>Name``), their arguments checked against the class's signature.
kerakit fills in what depends on the run: the file of each callback inside
the run folder, and the monitor (`val_loss` when there is validation data,
else `loss`). `BackupAndRestore` and `ModelCheckpoint` become kerakit's
crash-safe versions (`SafeModelCheckpoint` here, `training.backups`), same arguments. A monitor that
cannot exist is an error before training, not a warning after it.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
from pathlib import Path
from typing import Any

import keras

from kerakit._compat import cache_keras_skipsets, keep_compile_config
from kerakit._files import atomic_path
from kerakit.errors import NOWHERE, KerakitError, Where, did_you_mean
from kerakit.models.names import check_arguments, get_callback_class
from kerakit.recipe.callbacks import PATH_KEYS, path_placeholders, resolve_callbacks
from kerakit.report.history import HISTORY_FILE
from kerakit.training.backups import SafeBackupAndRestore, weights_finite
from kerakit.training.runfolder import BACKUP_DIR, BEST_MODEL, TENSORBOARD_DIR


class SafeModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`keras.callbacks.ModelCheckpoint` whose writes are atomic and never hold NaN.

    Same arguments as Keras's class. Each save goes to a temporary file
    beside the target, is fsynced and renamed over it, so a crash or a full
    disk during a save keeps the previous best model. A model with
    non-finite weights is never written, a `.h5` save leaves the model's
    optimizer alone, and a path that formats to outside the run folder is refused.
    """

    run_dir: Path | None = None  # make_callbacks sets it: every formatted path must stay inside

    def _save_model(self, epoch, batch, logs):
        filepath = self._get_file_path(epoch, batch, logs)
        if self.run_dir is not None and not _inside(Path(filepath).resolve(), self.run_dir):
            raise KerakitError(
                f"ModelCheckpoint's filepath became {filepath}, outside the run folder "
                f"{self.run_dir}; nothing was saved there"
            )
        if not self._should_save_model(epoch, batch, logs, filepath):
            return
        if not weights_finite(self.model):
            return
        cache_keras_skipsets()
        with atomic_path(filepath) as tmp, keep_compile_config(self.model):
            if self.save_weights_only:
                self.model.save_weights(tmp, overwrite=True)
            else:  # a legacy .h5 save must not strip the model's optimizer (kerakit._compat)
                self.model.save(tmp, overwrite=True)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: saved model to {filepath}")


class ClampedProgbar(keras.callbacks.ProgbarLogger):
    """Keras's progress bar, never past its total.

    With `steps_per_execution` above 1 Keras reports the last step of each block
    of steps, past the end of a short epoch: the bar read `32/20` and a negative
    ETA. This bar stops at the epoch's step count.
    """

    def _update_progbar(self, batch, logs=None):
        if self.target is not None:
            batch = min(batch, self.target - 1)
        super()._update_progbar(batch, logs)


def hooks_every_batch(callback: keras.callbacks.Callback) -> bool:
    """Whether a callback does its work in per-batch hooks (which Keras calls once per
    block of `steps_per_execution` steps)."""
    base = keras.callbacks.Callback
    names = ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end")
    return any(getattr(type(callback), n, None) is not getattr(base, n) for n in names)


# Where each callback writes inside the run folder, unless the recipe says otherwise.
DEFAULT_PATHS = {
    "ModelCheckpoint": BEST_MODEL,
    "CSVLogger": HISTORY_FILE,
    "BackupAndRestore": BACKUP_DIR,
    "TensorBoard": TENSORBOARD_DIR,
}
# Keras's callbacks replaced by kerakit's crash-safe versions (same arguments).
SAFE_VERSIONS = {"ModelCheckpoint": SafeModelCheckpoint, "BackupAndRestore": SafeBackupAndRestore}
# Values Keras logs besides the compiled loss and metrics.
ALWAYS_LOGGED = {"loss", "learning_rate"}


def _callback_class(name: str, where: Where) -> type:
    cls = get_callback_class(name, where)
    return SAFE_VERSIONS.get(name, cls)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _run_path(value: Any, run_dir: Path, where: Where) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise where.error(f"expected a path inside the run folder, got {value!r}")
    path = (run_dir / value).resolve()
    if not _inside(path, run_dir.resolve()):
        raise where.error(
            f"{str(value)!r} points outside the run folder {run_dir}; give a path "
            "relative to it, such as 'best.keras'"
        )
    return path


def _check_placeholders(
    value: Any, monitor_names: set[str] | None, has_validation: bool, where: Where
) -> None:
    """ModelCheckpoint fills {epoch}, {batch} and logged values into its path: any other
    name would fail at the first save, mid-training."""
    if monitor_names is None or not isinstance(value, str):
        return
    logged = set(monitor_names) | ALWAYS_LOGGED
    known = (
        {"epoch", "batch"} | logged | ({f"val_{n}" for n in logged} if has_validation else set())
    )
    for field in path_placeholders(value):
        if field not in known:
            raise where.error(
                f"{value!r}: {{{field}}} is never filled in{did_you_mean(field, known)}; "
                f"placeholders: {', '.join(sorted(known))}"
            )


def _check_monitor(
    monitor: str, name: str, monitor_names: set[str] | None, has_validation: bool, where: Where
) -> None:
    base = monitor[4:] if monitor.startswith("val_") else monitor
    if monitor.startswith("val_") and not has_validation:
        raise where.error(
            f"{name} monitors {monitor!r}, but this run has no validation data, so it is "
            f"never logged; monitor {base!r} instead, or add validation data "
            "(data.validation_split)"
        )
    if monitor_names is None:
        return
    known = set(monitor_names) | ALWAYS_LOGGED
    if base in known or monitor in known:
        return
    choices = sorted(known | ({f"val_{n}" for n in known} if has_validation else set()))
    raise where.error(
        f"{name} monitors {monitor!r}, which is never logged{did_you_mean(monitor, choices)}; "
        f"logged values: {', '.join(choices)} (add the metric to compile.metrics)"
    )


def make_callbacks(
    spec: Any,
    *,
    run_dir: str | os.PathLike,
    monitor_names: set[str] | None = None,
    has_validation: bool,
    where: Where = NOWHERE,
    recipe: Any = None,
) -> list[keras.callbacks.Callback]:
    """Build the Keras callbacks of `train.callbacks` for one run folder.

    Args:
        spec: `train.callbacks` in any form `resolve_callbacks` accepts
            (a bundle name, a list, a bundle with overrides, or the expanded list).
        run_dir: the run folder; callback files go inside it
            (`best.keras`, `history.csv` (appended to, for resume), `backup/`, `logs/`).
        monitor_names: the names Keras will log for training (the loss and the
            compiled metric names, without `val_`); a monitor outside them is an
            error. None skips that check.
        has_validation: whether `fit` gets validation data; decides the default
            monitor (`val_loss` or `loss`) and rejects `val_*` monitors without it.
        where: position of `train.callbacks` in the recipe, for error messages.
        recipe: plain values stored with each backup; resuming with different
            ones raises `ResumeError` (pass the parts that must not change).

    Returns:
        A list of `keras.callbacks.Callback`, the crash-safe backup last (it
        stores the best-so-far values of the others after they update them).

    Example:
        >>> cbs = make_callbacks("minimal", run_dir="runs/x", has_validation=False)  # doctest: +SKIP
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)  # CSVLogger opens its file when training starts
    entries = resolve_callbacks(spec, where)
    built: list[keras.callbacks.Callback] = []
    backups: list[SafeBackupAndRestore] = []
    checkpoints: list[tuple[Path, Where]] = []
    backup_dirs: list[tuple[Path, Where]] = []
    for i, entry in enumerate(entries):
        ((name, kwargs),) = entry.items()
        at = where.at(i, name)
        cls = _callback_class(name, at)
        kwargs = dict(kwargs)
        check_arguments(cls, kwargs, at, name)
        key = PATH_KEYS.get(name)
        if key is not None:
            value = kwargs.get(key, DEFAULT_PATHS[name])
            if name == "ModelCheckpoint":
                _check_placeholders(value, monitor_names, has_validation, at.at(key))
            kwargs[key] = str(_run_path(value, run_dir, at.at(key)))
        if name == "CSVLogger":
            kwargs.setdefault("append", True)  # a resumed run continues its history
        if name == "BackupAndRestore" and recipe is not None:
            kwargs.setdefault("recipe", recipe)
        if name == "TensorBoard" and importlib.util.find_spec("tensorboard") is None:
            raise at.error(
                "TensorBoard needs the tensorboard package, which tensorflow no longer "
                "installs: pip install tensorboard (or kerakit[tensorboard])"
            )
        if "monitor" in inspect.signature(cls.__init__).parameters:
            kwargs.setdefault("monitor", "val_loss" if has_validation else "loss")
            _check_monitor(kwargs["monitor"], name, monitor_names, has_validation, at)
        try:
            callback = cls(**kwargs)
        except (ValueError, TypeError) as e:
            raise at.error(f"Keras refused the arguments of {name}: {e}") from None
        if name == "ModelCheckpoint":
            checkpoints.append((Path(kwargs["filepath"]), at))
            callback.run_dir = run_dir.resolve()
        if isinstance(callback, SafeBackupAndRestore):
            backups.append(callback)
            backup_dirs.append((callback.backup_dir.resolve(), at))
        else:
            built.append(callback)
    for backup_dir, at in backup_dirs:
        for checkpoint, _ in checkpoints:
            if _inside(backup_dir, checkpoint) or _inside(checkpoint, backup_dir):
                raise at.error(
                    f"the backup folder {backup_dir} and the ModelCheckpoint file "
                    f"{checkpoint} are inside one another: deleting the backup would delete "
                    "the best model; keep them apart (the defaults: backup/ and best.keras)"
                )
    for backup in backups:
        backup.track(built)
    return [*built, *backups]
