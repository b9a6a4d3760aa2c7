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
