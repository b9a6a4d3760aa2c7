"""Every workaround of a Keras or TensorFlow bug, in one place.

`WORKAROUNDS` lists each one: what goes wrong upstream, the versions it was
seen in, the upstream issue where one exists, where kerakit works around it,
and the test in `tests/test_compat.py` that shows the bug itself. That test
fails once upstream fixes the bug: the signal to drop the workaround and move
the `keras>=` floor. The small workarounds are the functions below; the ones
that are a feature of their own (crash-safe backups, atomic saves) live in
their module and are listed here. Add a new workaround here, never inline.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

SEEN_IN = "keras 3.15.1, tensorflow 2.21.0"


@dataclass(frozen=True)
class Workaround:
    """One Keras/TF bug kerakit works around."""

    bug: str  # what goes wrong upstream
    upstream: str  # the issue or PR, or "none found"
    where: str  # the kerakit function or class that works around it
    sentinel: str  # the test in tests/test_compat.py that shows the bug (fails once fixed)
    seen_in: str = SEEN_IN


WORKAROUNDS: dict[str, Workaround] = {
    "nested_training_false": Workaround(
        "a nested model called with training=False inside a Functional model still runs in "
        "training mode under fit: the outer training=True overrides the recorded argument, so "
        "trainable BatchNorm layers move their statistics (keras.io's transfer-learning guide)",
        "none found",
        "kerakit._compat.batchnorm_inference",
        "test_a_nested_model_called_with_training_false_still_moves_batchnorm",
    ),
    "skipset_cache": Workaround(
        "saving_lib.get_attr_skipset reads its cache under 'saving_attr_skiplist_*' and writes "
        "'saving_attr_skipset_*': every save rebuilds throwaway objects (~7 ms)",
        "none found",
        "kerakit._compat.cache_keras_skipsets",
        "test_the_saving_skipset_cache_still_misses",
    ),
    "h5_strips_optimizer": Workaround(
        "a legacy .h5 save pops 'optimizer' out of the live model's compile config, so a .keras "
        "saved after it reloads with RMSprop and no state",
        "keras PR #23475 (merged, unreleased)",
        "kerakit._compat.keep_compile_config",
        "test_h5_save_still_strips_the_optimizer",
    ),
    "h5_loss_alias": Workaround(
        "load_model of a legacy .h5 compiled with loss='mse' fails: 'not a KerasSaveable subclass'",
        "none exact (keras#19330)",
        "kerakit._compat.compile_legacy_h5",
        "test_legacy_h5_with_a_loss_alias_still_fails_to_load_compiled",
    ),
    "torn_keras_not_found": Workaround(
        "a truncated .keras file is reported as 'File not found'",
        "related keras#20259, keras#20146",
        "kerakit.saving.load._keras_error",
        "test_a_torn_keras_file_is_still_reported_as_not_found",
    ),
    "save_in_place": Workaround(
        "model.save and ModelCheckpoint write over the target: a save that dies part-way "
        "destroys the previous good file",
        "none found",
        "kerakit._files.atomic_path, kerakit.training.callbacks.SafeModelCheckpoint",
        "test_a_failed_save_still_destroys_the_previous_file",
    ),
    "backup_in_place": Workaround(
        "BackupAndRestore writes its backup in place: a save that dies part-way leaves nothing "
        "to restore (double_checkpoint does not help)",
        "keras#20463",
        "kerakit.training.backups.SafeBackupAndRestore",
        "test_backup_and_restore_still_writes_in_place",
    ),
    "nan_deletes_backup": Workaround(
        "after TerminateOnNaN, BackupAndRestore deletes the last good backup",
        "keras#21771 (PR #21841: opt-in raise_error)",
        "kerakit.training.guards.DivergenceWatch",
        "test_a_nan_stop_still_deletes_the_backup",
    ),
    "resume_forgets_best": Workaround(
        "a resumed run's ModelCheckpoint/EarlyStopping start from best=None and overwrite the "
        "best model with a worse one",
        "keras#17012",
        "kerakit.training.backups.SafeBackupAndRestore (track)",
        "test_a_resume_still_forgets_the_best_value",
    ),
    "multi_worker_reduce": Workaround(
        "fit under MultiWorkerMirroredStrategy calls reduce() in ways TensorFlow rejects",
        "keras#20585, tensorflow#72388",
        "kerakit._compat.multi_worker_strategy_class",
        "test_multi_worker_reduce_still_rejects_what_fit_asks",
    ),
    "steps_per_execution_replicas": Workaround(
        "fit with steps_per_execution > 1 fails on more than one replica",
        "keras#19246",
        "kerakit._compat.max_steps_per_execution",
        "test_steps_per_execution_still_breaks_several_replicas",
    ),
    "nan_arguments": Workaround(
        "optimizers and callbacks accept NaN hyper-parameters (Adam(learning_rate=nan))",
        "none found",
        "kerakit.models.names.instantiate",
        "test_keras_still_accepts_nan_hyperparameters",
    ),
    "save_freq_values": Workaround(
        "ModelCheckpoint and BackupAndRestore accept save_freq False, 0 and -1",
        "none found",
        "kerakit.recipe.callbacks.check_save_freq",
        "test_keras_still_accepts_meaningless_save_freq",
    ),
    "get_file_timeout": Workaround(
        "keras.utils.get_file (ImageNet weights) has no timeout: a stalled download hangs",
        "none found",
        "kerakit.models.backbones (a probe first; socket.setdefaulttimeout)",
        "test_get_file_still_has_no_timeout",
    ),
    "warp_static_shape": Workaround(
        "ImageProjectiveTransformV3 loses the static image shape inside a tf.function",
        "none found",
        "kerakit.augment.warp.augment_batch (set_shape)",
        "test_the_warp_op_still_loses_the_static_shape",
    ),
    "loss_config_drops_arguments": Workaround(
        "Huber, CosineSimilarity and SparseCategoricalCrossentropy leave delta/axis out of "
        "get_config: a recorded or saved Huber(delta=2.0) reloads as delta=1.0",
        "keras PR #23286 (merged, unreleased)",
        "kerakit._compat.loss_config, kerakit._compat.keep_loss_arguments",
        "test_huber_still_drops_its_delta",
    ),
}


# --------------------------------------------------------------------------- saving

_SKIPSET_KINDS = ("Operation", "Layer", "Functional", "Sequential", "Metric", "Optimizer", "Loss")


def cache_keras_skipsets() -> None:
    """Let Keras's saver reuse what it computes once per kind of object.

    Seen in Keras 3.15.1: `saving_lib.get_attr_skipset` looks its cache up under
    `saving_attr_skiplist_<kind>` but stores it under `saving_attr_skipset_<kind>`,
    so every `model.save` / `save_weights` builds throwaway Layer, Optimizer and
    Metric objects again: about 7 ms of a 23 ms save of the overview CNN. This
    stores the computed set under the name Keras reads (the same value Keras
    would compute; `clear_session` empties it, so savers call this each time).
    Does nothing where Keras's internals differ. Upstream: none found.
    Test: test_compat.py::test_keras_skipset_cache_is_still_missed.
    """
    try:
        from keras.src.backend.common import global_state
        from keras.src.saving import saving_lib

        for kind in _SKIPSET_KINDS:
            if global_state.get_global_attribute(f"saving_attr_skiplist_{kind}") is None:
                skipset = saving_lib.get_attr_skipset(kind)
                global_state.set_global_attribute(f"saving_attr_skiplist_{kind}", skipset)
    except (ImportError, AttributeError, ValueError, TypeError):
        return


@contextlib.contextmanager
def keep_compile_config(model: Any) -> Iterator[None]:
    """Undo what a legacy `.h5` save does to the model's compile config.

    Seen in Keras 3.15.1: the legacy HDF5 saver pops "optimizer" out of
    `model._compile_config.config` in place, so a `.keras` saved after it
    reloads with a fresh RMSprop instead of the model's optimizer and state.
    Upstream: fixed by keras PR #23475 (merged 2026-08; not in 3.15.1, the newest
    release). Test: test_compat.py::test_h5_save_still_strips_the_optimizer.
    """
    compile_config = getattr(model, "_compile_config", None)
    kept = copy.copy(getattr(compile_config, "config", None))
    try:
        yield
    finally:
        if compile_config is not None and kept is not None:
            compile_config.config = kept


def compile_legacy_h5(model: Any, path: str | os.PathLike) -> None:
    """Compile a model loaded uncompiled from a legacy `.h5` from the file's training config.

    Seen in Keras 3.15.1: `load_model` of a legacy `.h5` compiled with a loss
    alias such as ``loss="mse"`` fails ("Could not deserialize 'keras.metrics.mse'
    because it is not a KerasSaveable subclass"), with or without safe mode. This
    compiles by name, the way the file's maker wrote it, and brings the
    optimizer's state back (iterations, moments) as Keras would. Upstream: no
    exact issue (keras#19330 is the same path with 'mae', closed as stale).
    Test: test_compat.py::test_legacy_h5_with_a_loss_alias_still_fails_to_load_compiled.
    """
    import h5py
    import keras

    with h5py.File(path, "r") as f:
        raw = f.attrs.get("training_config")
    if raw is None:
        return
    config = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    optimizer = config.get("optimizer_config")
    model.compile(
        optimizer=keras.optimizers.get(optimizer) if optimizer else "rmsprop",
        loss=config.get("loss"),
        metrics=config.get("metrics"),
        loss_weights=config.get("loss_weights"),
        weighted_metrics=config.get("weighted_metrics"),
    )
    # Bring back the optimizer's state too (iterations, moments), as Keras would.
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "r") as f:
        if "optimizer_weights" in f:
            model.optimizer.build(model.trainable_variables)
            values = legacy_h5_format.load_optimizer_weights_from_hdf5_group(f)
            model.optimizer.set_weights(values)


def loss_config(loss: Any) -> dict:
    """A loss object's `get_config()` with the constructor arguments Keras leaves out.

    Seen in Keras 3.15.1: `Huber.get_config` has no `delta`, `CosineSimilarity`'s and
    `SparseCategoricalCrossentropy`'s no `axis`, so a `Huber(delta=2.0)` is recorded,
    saved and reloaded as `Huber()`. Those arguments are kept in the wrapper's
    `_fn_kwargs`; this adds each one the class's constructor takes. Upstream: fixed by
    keras PR #23286 (merged; not in 3.15.1). Test: test_compat.py::test_huber_still_drops_its_delta.
    """
    config = dict(type(loss).get_config(loss))  # the class's, even where this patched the object
    extra = getattr(loss, "_fn_kwargs", None)
    if isinstance(extra, dict):
        taken = inspect.signature(type(loss)).parameters
        config.update({k: v for k, v in extra.items() if k in taken and k not in config})
    return config


def keep_loss_arguments(model: Any) -> None:
    """Make `get_config` of the model's compiled loss objects complete (see `loss_config`),
    so that `model.save` (and so `load_model`) keeps a Huber's `delta`. Patches those
    objects only, never Keras's classes; does nothing to a loss Keras serializes whole.
    `model` may be a compile config's dict too (a copy of one, kept to put back: a copy
    of a loss is made through its config, so a copy of a copy would lose `delta`)."""
    import keras

    config = model if isinstance(model, dict) else None
    if config is None:
        config = getattr(getattr(model, "_compile_config", None), "config", None) or {}
    losses = config.get("loss")
    if isinstance(losses, dict):
        losses = list(losses.values())
    for loss in losses if isinstance(losses, (list, tuple)) else [losses]:
        if isinstance(loss, keras.losses.Loss) and loss_config(loss) != loss.get_config():
            loss.get_config = functools.partial(loss_config, loss)


# --------------------------------------------------------------------------- distribution


@functools.cache  # one class, so isinstance checks agree
def multi_worker_strategy_class() -> type:
    """TensorFlow's `MultiWorkerMirroredStrategy`, with `reduce` fixed for Keras 3's `fit`.

    Seen in Keras 3.15.1 / TensorFlow 2.21: `fit` calls
    `reduce("MEAN", (x, y), axis=None)` on a whole batch and
    `reduce("MEAN", scalar, axis=0)` on each metric; TensorFlow's multi-worker
    `reduce` rejects both (keras#20585, tensorflow#72388). Reducing each tensor
    of the structure, over replicas only for scalars, is what `reduce` documents.
    Test: tests/training/test_distribute_run.py trains two real workers.
    """
    import tensorflow as tf

    class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis=None):
            parent = super()

            def one(v):
                local = v
                if isinstance(v, tf.distribute.DistributedValues):
                    local = self.experimental_local_results(v)[0]
                rank = getattr(getattr(local, "shape", None), "rank", None)
                return parent.reduce(reduce_op, v, None if rank == 0 else axis)

            return tf.nest.map_structure(one, value)

    return MultiWorkerMirroredStrategy


def max_steps_per_execution(strategy: Any = None) -> int | None:
    """The most `steps_per_execution` that `fit` survives under `strategy`; None: no limit.

    Seen in Keras 3.15.1: the multi-step training loop fails under a
    `tf.distribute` strategy with more than one replica ("You must feed a value
    for placeholder tensor", keras#19246), so compile with
    `steps_per_execution=1` there. Test: test_distribute_run.py (two replicas).

    Example:
        >>> max_steps_per_execution(None) is None
        True
    """
    if strategy is None or strategy.num_replicas_in_sync <= 1:
        return None  # one replica: measured fine with 32 (MirroredStrategy on one device too)
    return 1


def batchnorm_inference(layer) -> None:
    """Keeps a BatchNormalization layer in inference mode whatever `training` it is given.

    Its gamma/beta can still train; its moving statistics never change. Set on the
    instance (not saved): `kerakit.models.transfer.set_stage` applies it each time.
    """
    if getattr(layer, "_kerakit_inference", False):
        return
    call = layer.call

    def inference_call(inputs, training=None, mask=None):
        return call(inputs, training=False, mask=mask)

    layer.call = inference_call
    layer._kerakit_inference = True
