"""Every workaround of a Keras or TensorFlow bug, in one place.

Each entry says what goes wrong upstream, where it was seen (the versions),
the upstream issue where one exists, and which test in `tests/test_compat.py`
shows the bug itself: that test fails once upstream fixes it, which is the
signal to drop the workaround and move the `keras>=` floor. Keep new
workarounds here, never inline in the module that needs them.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Iterator
from typing import Any

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
    Upstream: none found. Test: test_compat.py::test_h5_save_still_strips_the_optimizer.
    """
    compile_config = getattr(model, "_compile_config", None)
    kept = copy.copy(getattr(compile_config, "config", None))
    try:
        yield
    finally:
        if compile_config is not None and kept is not None:
            compile_config.config = kept


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
