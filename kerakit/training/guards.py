"""Guards of a training run: stop on SIGINT/SIGTERM with a resumable backup, and stop at the
first non-finite loss saving nothing non-finite (Keras has neither)."""

from __future__ import annotations

import contextlib
import copy
import os
from pathlib import Path

import keras
import numpy as np

from kerakit._compat import keep_loss_arguments
from kerakit.errors import TrainingDiverged, TrainingInterrupted
from kerakit.training.backups import SafeBackupAndRestore
from kerakit.training.runfolder import BACKUP_DIR, BEST_MODEL


class StopOnSignal(keras.callbacks.Callback):
    """On SIGINT or SIGTERM, write a resumable backup at the end of the current batch, then stop.

    Keras has no signal handling: a `kill` (SIGTERM, as a scheduler sends it) loses the
    epoch in progress, and Ctrl-C (SIGINT) interrupts wherever it lands. With this
    callback the first signal is noted, the next batch end writes a backup through
    `backup` and raises `TrainingInterrupted`; a second signal interrupts at once.
    Handlers are installed only in the main thread and restored when training ends.

    Args:
        backup: the run's `SafeBackupAndRestore` (None: stop without a backup).
        resume_hint: what to tell the user (how to resume).
    """

    def __init__(self, backup: SafeBackupAndRestore | None, resume_hint: str = ""):
        super().__init__()
        self.backup = backup
        self.resume_hint = resume_hint
        self.received: int | None = None
        self._previous: dict = {}
        self._epoch = 0

    def _handler(self, signum, frame):
        if self.received is not None:  # a second signal: do not wait for the batch
            self._restore()
            raise KeyboardInterrupt
        self.received = signum

    def _restore(self) -> None:
        import signal

        for signum, previous in self._previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signum, previous)
        self._previous = {}

    def on_train_begin(self, logs=None):
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, OSError):
                self._previous[signum] = signal.signal(signum, self._handler)

    def on_train_batch_end(self, batch, logs=None):
        if self.received is not None:  # mid-epoch: a backup of this batch first
            saved = self.backup.save_now(batch, logs) if self.backup is not None else None
            self._stop(f"during epoch {self._epoch + 1}", saved)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        # A signal during validation (after the last training batch) lands here; the
        # epoch's backup was written just before (the backup callback runs first).
        if self.received is not None:
            saved = None
            if self.backup is not None:
                self.backup.wait()  # the epoch's backup, written in the background, is complete
                saved = self.backup.backup_dir
            self._stop(f"after epoch {epoch + 1}", saved)

    def _stop(self, when: str, saved) -> None:
        import signal

        self._restore()
        self.model.stop_training = True
        name = signal.Signals(self.received).name
        note = f"; a backup was written to {saved}" if saved else ""
        raise TrainingInterrupted(
            f"stopped by {name} {when}{note}. {self.resume_hint}".strip(), self.received
        )

    def on_train_end(self, logs=None):
        self._restore()
        if self.received is not None:  # after the last epoch's end: still an interruption
            self._stop("at the end of training", None)


class KeepCompileConfig(keras.callbacks.Callback):
    """Puts back the model's compile config if a save during training changed it.

    A legacy `.h5` save strips the optimizer from the live model's compile config
    (Keras 3.15; kerakit._compat.keep_compile_config). kerakit's own savers guard
    against it; this catches the saves of callbacks given from Python, at every
    epoch's end and at the end of training, before the run's model is saved.
    """

    def on_train_begin(self, logs=None):
        config = getattr(getattr(self.model, "_compile_config", None), "config", None)
        # a shallow copy, as the .h5 saver pops keys of the dict in place: a deep copy would
        # copy the optimizer through a whole Keras save (slow, and on resume it warns that the
        # built optimizer's variables "could not be loaded") and lose a Huber's delta
        self._kept = copy.copy(config) if config is not None else None

    def _put_back(self) -> None:
        compile_config = getattr(self.model, "_compile_config", None)
        if self._kept is not None and compile_config is not None:
            if compile_config.config != self._kept:
                compile_config.config = copy.copy(self._kept)
                keep_loss_arguments(self.model)

    def on_epoch_end(self, epoch, logs=None):
        self._put_back()

    def on_train_end(self, logs=None):
        self._put_back()


class DivergenceWatch(keras.callbacks.Callback):
    """Stops training at the first non-finite loss and says where, saving nothing.

    Keras's `TerminateOnNaN` stops too, but the run then carries on to save a
    model of NaN weights. This raises `TrainingDiverged` at once, naming the
    epoch and batch, so no later callback (or the end-of-run save) persists a
    non-finite tensor; the crash-safe backups and the best model on disk are
    the last finite ones.
    """

    def __init__(self, run_dir: str | os.PathLike | None = None):
        super().__init__()
        self.run_dir = Path(run_dir) if run_dir else None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or np.isfinite(float(loss)):
            return
        kept = []
        if self.run_dir is not None:
            kept = [
                p.name for p in (self.run_dir / BEST_MODEL, self.run_dir / BACKUP_DIR) if p.exists()
            ]
        saved = f"kept (finite): {', '.join(kept)}" if kept else "nothing had been saved yet"
        raise TrainingDiverged(
            f"training diverged: the loss became {float(loss)} in epoch {self._epoch + 1}, batch {batch + 1}; "
            f"{saved}. Lower the learning rate (compile.optimizer) or look for extreme values in the data"
        )
