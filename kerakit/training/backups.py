"""Crash-safe backups: `SafeBackupAndRestore`, and `load_backup` to read one.

Keras 3.15's `BackupAndRestore` writes its weights and its metadata in place:
a `kill -9` at the wrong moment leaves a backup that cannot be restored
(keras#20463), `TerminateOnNaN` makes it delete the backup or store NaN
weights (keras#21771), and a resume forgets the best values of
`ModelCheckpoint` and `EarlyStopping` (keras#17012). kerakit's versions:

- write each backup as a new pair of files (`ckpt-000007.npz`, the model's
  weights and the optimizer's variables, then `ckpt-000007.json`, which names
  the weights file's size and SHA-256), each to a temporary name, fsynced and
  renamed: a torn write never has a final name;
- take the values at the epoch's end (a copy in memory) and write the files
  in a background thread while the next epoch trains; the next backup, the
  end of training and the end of the process wait for it, and a write that
  failed raises there (backups of older kerakit versions, `.weights.h5`,
  still restore);
- keep the previous good backup; on train begin restore the newest backup
  that checks out, falling back to older ones;
- never persist non-finite weights, and never delete a backup after a NaN;
- store the best-so-far values of the callbacks they track and a hash of
  the recipe, and refuse (`ResumeError`) to resume a changed recipe.

    backup = SafeBackupAndRestore("runs/digits/1/backup", recipe=recipe_parts)
    model.fit(x, y, epochs=10, callbacks=[..., backup])   # rerun after a kill: resumes
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kerakit._files import atomic_path, sha256_file, write_json
from kerakit.recipe.fingerprint import changes, content_hash, refuse_resume

_CKPT = re.compile(r"^ckpt-(\d{6,})\.json$")
_WEIGHT_SUFFIXES = (".npz", ".weights.h5")  # .weights.h5: backups of earlier kerakit versions
# Attributes that make a callback's "best so far" (restored on resume).
_TRACKED_STATE = ("best", "wait", "best_epoch", "stopped_epoch", "cooldown_counter")


def weights_finite(model: Any) -> bool:
    """True when every weight of `model` is finite (no NaN, no inf)."""
    return all(np.isfinite(np.asarray(w)).all() for w in model.weights)


# Background backup writes still running; the process waits for them at exit
# (`kerakit.cli.entry` leaves through os._exit after running the atexit handlers).
_WRITERS: set[threading.Thread] = set()


@atexit.register
def _wait_for_writers() -> None:
    for thread in list(_WRITERS):
        thread.join()


def _state_variables(model: Any) -> list:
    """What a backup holds, in a fixed order: the model's weights, then the optimizer's variables."""
    optimizer = getattr(model, "optimizer", None)
    return [*model.weights, *(optimizer.variables if optimizer is not None else [])]


def load_backup(model: Any, path: str | os.PathLike) -> None:
    """Load a backup's weights file (`ckpt-NNNNNN.npz`) into `model` and its optimizer.

    The model must be built and compiled like the one backed up; every array is
    checked against its variable (count, shape) before any variable changes.
    An earlier kerakit's backup (`.weights.h5`) goes through `model.load_weights`.

    Example:
        >>> load_backup(model, "runs/digits/1/backup/ckpt-000004.npz")  # doctest: +SKIP
    """
    path = Path(path)
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    if not path.name.endswith(".npz"):
        model.load_weights(path)
        return
    variables = _state_variables(model)
    with np.load(path, allow_pickle=False) as stored:
        if len(stored.files) != len(variables):
            raise ValueError(
                f"{path} holds {len(stored.files)} arrays for {len(variables)} variables"
            )
        values = []
        for i, variable in enumerate(variables):
            dtype = tf.as_dtype(variable.dtype).as_numpy_dtype  # no copy of the value
            value = stored[f"v{i}"]
            if value.dtype != dtype:
                value = value.view(dtype) if value.dtype == np.uint8 else value.astype(dtype)
            if value.shape != tuple(variable.shape):
                raise ValueError(
                    f"{path}: array {i} has shape {value.shape}, the variable {tuple(variable.shape)}"
                )
            values.append(value)
    for variable, value in zip(variables, values):
        variable.assign(value)


def _snapshot(variable: Any) -> np.ndarray:
    """A private copy of a variable's value now, safe to write while training goes on."""
    value = np.asarray(variable)  # Keras's __array__ already copies (TensorFlow backend)
    return value if value.flags.owndata else value.copy()


def _plain_array(value: np.ndarray) -> np.ndarray:
    # np.savez stores NumPy's own dtypes; others (ml_dtypes' bfloat16) go as raw bytes
    # and are read back with the variable's dtype.
    return value if value.dtype.type.__module__ == "numpy" else value.view(np.uint8)


class SafeBackupAndRestore(keras.callbacks.Callback):
    """A crash-safe `keras.callbacks.BackupAndRestore`.

    Backs up the weights and the optimizer state at the end of every epoch
    (and every `save_freq` batches when it is a number) so that the same
    `fit` call, rerun after a crash or a `kill -9`, continues from the last
    finished epoch (a mid-epoch backup reruns its epoch from the start, as
    Keras does) and ends with the same number of epochs.

    Args:
        backup_dir: folder of the backups (created when needed).
        save_freq: "epoch" (default) or a positive number of batches.
        delete_checkpoint: delete the backups after training ends normally
            (default False: kerakit deletes nothing unless asked; never
            after a NaN stop).
        keep: how many good backups to keep (default 2: the newest and the
            previous one).
        recipe: the plain-value recipe (or the parts that must not change on
            resume: model, compile, data); a resume with a different one
            raises `ResumeError` naming what changed.
        track: callbacks whose best-so-far values (`best`, `wait`, ...) are
            stored and restored on resume (EarlyStopping, ModelCheckpoint,
            ReduceLROnPlateau). `kerakit.make_callbacks` fills this in.
        double_checkpoint: accepted for compatibility with Keras's class;
            backups are always kept in pairs here.

    Example:
        >>> backup = SafeBackupAndRestore("runs/x/backup", save_freq=10)  # doctest: +SKIP
        >>> model.fit(x, y, epochs=5, callbacks=[backup])  # doctest: +SKIP
    """

    def __init__(
        self,
        backup_dir: str | os.PathLike,
        save_freq: str | int = "epoch",
        delete_checkpoint: bool = False,
        keep: int = 2,
        recipe: Any = None,
        track: Iterable[keras.callbacks.Callback] = (),
        double_checkpoint: bool = True,
    ):
        super().__init__()
        if save_freq != "epoch" and (
            isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1
        ):
            raise ValueError(
                f"save_freq must be 'epoch' or a positive number of batches, got {save_freq!r}"
            )
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep!r}")
        self.backup_dir = Path(backup_dir)
        self.save_freq = save_freq
        self.delete_checkpoint = delete_checkpoint
        self.keep = keep
        self.recipe = recipe
        self.tracked = list(track)
        self.restored: dict | None = None  # the metadata of the backup restored, if any
        self.skipped_nonfinite = 0
        self._epoch = 0
        self._batches = 0
        self._pending_state: list | None = None
        self._stopped_on_nan = False
        self._writer: threading.Thread | None = None
        self._error: BaseException | None = None

    def track(self, callbacks: Iterable[keras.callbacks.Callback]) -> None:
        """Also store and restore the best-so-far values of these callbacks."""
        self.tracked.extend(cb for cb in callbacks if cb is not self)

    # ------------------------------------------------------------------ restore
    def backups(self) -> list[Path]:
        """Metadata files of the stored backups, newest first."""
        if not self.backup_dir.is_dir():
            return []
        found = [p for p in self.backup_dir.iterdir() if _CKPT.match(p.name)]
        return sorted(found, key=lambda p: int(_CKPT.match(p.name).group(1)), reverse=True)

    def _read(self, meta_path: Path) -> dict | None:
        """The metadata of a backup whose weights file checks out, else None."""
        try:
            with open(meta_path, encoding="utf-8") as f:
                meta = json.loads(f.read(1 << 22))
            weights = self.backup_dir / meta["weights"]
            if Path(meta["weights"]).name != meta["weights"]:
                return None  # a name, never a path
            if weights.stat().st_size != meta["size"] or sha256_file(weights) != meta["sha256"]:
                return None
            int(meta["epoch"])
            return meta
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def newest_epoch(self) -> int | None:
        """The epoch the next `fit` will resume at (from the newest valid backup), or None."""
        for meta_path in self.backups():
            meta = self._read(meta_path)
            if meta is not None:
                return int(meta["epoch"])
        return None

    def on_train_begin(self, logs=None):
        self._stopped_on_nan = False
        found = self.backups()
        # New backups are numbered after every stored one, torn ones included.
        self._seq = max((int(_CKPT.match(p.name).group(1)) for p in found), default=0)
        for meta_path in found:
            meta = self._read(meta_path)
            if meta is None:
                continue  # torn or corrupt: fall back to the previous backup
            self._check_recipe(meta)
            try:
                load_backup(self.model, self.backup_dir / meta["weights"])
            except Exception:  # unreadable despite the checksum: try an older one
                continue
            self.restored = meta
            self._epoch = int(meta["epoch"])
            # Keras's own BackupAndRestore resumes this way: fit reads it after
            # on_train_begin (keras/src/backend/tensorflow/trainer.py).
            self.model._initial_epoch = self._epoch
            self._pending_state = meta.get("callbacks") or []
            return

    def _check_recipe(self, meta: dict) -> None:
        if self.recipe is None or meta.get("recipe_hash") is None:
            return
        if content_hash(self.recipe) == meta["recipe_hash"]:
            return
        changed = changes(meta.get("recipe"), self.recipe) if "recipe" in meta else []
        raise refuse_resume(f"from {self.backup_dir}", changed)

    def on_epoch_begin(self, epoch, logs=None):
        # Restored here, not in on_train_begin: EarlyStopping resets its `best`
        # in its own on_train_begin, which may run after ours.
        if self._pending_state is not None:
            for i, cb in enumerate(self.tracked):
                stored = next((s for s in self._pending_state if s.get("index") == i), None)
                if stored and stored.get("class") == type(cb).__name__:
                    for key, value in _tracked_state(stored.get("state")).items():
                        setattr(cb, key, value)
            self._pending_state = None
        self._epoch = epoch
        self._batches = 0

    # ------------------------------------------------------------------ backup
    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._batches += 1
        if self._batches % self.save_freq == 0:
            self._save(self._epoch, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._save(epoch + 1, None, logs)

    def wait(self) -> None:
        """Wait for the backup being written; raise the error of a write that failed."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.join()
        error, self._error = self._error, None
        if error is not None:
            raise error

    def save_now(self, batch: int | None, logs: dict | None) -> Path | None:
        """Back up now, mid-epoch, and wait for the write; the backup folder, or None when
        nothing finite could be written (the previous backup stays)."""
        before = self._seq
        self._save(self._epoch, batch, logs, wait=True)
        return self.backup_dir if self._seq != before else None

    def _save(self, epoch: int, batch: int | None, logs: dict | None, wait: bool = False) -> None:
        self.wait()  # one write at a time, in order
        loss = (logs or {}).get("loss")
        values = [_snapshot(v) for v in _state_variables(self.model)]
        # The optimizer's variables too: a NaN learning rate in a backup diverges again on resume.
        if (loss is not None and not np.isfinite(float(loss))) or not all(
            np.isfinite(v).all() for v in values if v.dtype.kind not in "iub"
        ):
            self.skipped_nonfinite += 1
            self._stopped_on_nan = True
            return  # keep the last finite backup
        self._seq += 1
        name = f"ckpt-{self._seq:06d}"
        meta = {
            "epoch": epoch,
            "batch": batch,
            "weights": f"{name}.npz",
            "variables": len(values),
            "callbacks": [
                {
                    "index": i,
                    "class": type(cb).__name__,
                    "state": {k: _plain(getattr(cb, k)) for k in _TRACKED_STATE if hasattr(cb, k)},
                }
                for i, cb in enumerate(self.tracked)
            ],
        }
        if self.recipe is not None:
            meta["recipe_hash"] = content_hash(self.recipe)
            meta["recipe"] = self.recipe
        self._writer = threading.Thread(
            target=self._write, args=(name, values, meta), name=f"kerakit-backup-{name}"
        )
        _WRITERS.add(self._writer)
        self._writer.start()
        if wait:
            self.wait()

    def _write(self, name: str, values: list[np.ndarray], meta: dict) -> None:
        """Runs in the writer thread: the arrays, then the metadata that vouches for them."""
        try:
            weights = self.backup_dir / meta["weights"]
            self.backup_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(weights) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, **{f"v{i}": _plain_array(v) for i, v in enumerate(values)})
            meta["size"] = weights.stat().st_size
            meta["sha256"] = sha256_file(weights)
            write_json(
                self.backup_dir / f"{name}.json", meta, sort_keys=True
            )  # last: it vouches for the weights
            self._prune()
        except BaseException as e:  # raised in the training thread by wait()
            self._error = e
            print(f"kerakit: writing the backup {name} failed: {e}", file=sys.stderr)
        finally:
            _WRITERS.discard(threading.current_thread())

    def prune(self, keep: int | None = None) -> None:
        """Delete all but the newest `keep` backups (default: the `keep` given when made), and
        what killed writes left behind."""
        self.wait()
        self._prune(keep)

    def _prune(self, keep: int | None = None) -> None:
        for meta_path in self.backups()[keep or self.keep :]:
            stem = meta_path.name[: -len(".json")]
            with contextlib.suppress(OSError):
                meta_path.unlink()  # metadata first: a half-pruned pair is never "valid"
            for suffix in _WEIGHT_SUFFIXES:
                with contextlib.suppress(OSError):
                    meta_path.with_name(stem + suffix).unlink()
        for stray in self.backup_dir.glob(".tmp-*"):  # leftovers of a killed write
            with contextlib.suppress(OSError):
                stray.unlink()

    def on_train_end(self, logs=None):
        self.model._initial_epoch = None  # a later fit() starts from its own initial_epoch
        self.wait()
        nan_stop = self._stopped_on_nan or not weights_finite(self.model)
        if self.delete_checkpoint and not nan_stop and self.backup_dir.is_dir():
            for path in self.backup_dir.iterdir():
                if _CKPT.match(path.name) or path.name.endswith(_WEIGHT_SUFFIXES):
                    with contextlib.suppress(OSError):
                        path.unlink()


def _tracked_state(state: Any) -> dict:
    """The best-so-far values of a stored backup that may be restored: only the known fields,
    and only numbers (a backup's .json is a file like any other: it may be forged)."""
    if not isinstance(state, dict):
        return {}
    out = {}
    for key in _TRACKED_STATE:
        value = state.get(key)
        # null is "nothing yet" (or an infinity: JSON has none): the callback keeps its own
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = value
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
