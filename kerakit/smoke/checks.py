"""The checks `kerakit smoke` runs on a model, usable alone (`kerakit.testing` does):

    losses = overfit_one_batch(model, x, y, steps=20)   # raises SmokeFailure, with why
    paths = check_roundtrip(model, tmp, ["keras", "h5"], x)

- `overfit_one_batch`: a compiled model trains `steps` steps on one fixed batch; every loss
  must be finite ("diverged at step k"), and the mean of the last three losses must be
  below 0.9x the first. A model that cannot overfit one batch has a bug (a frozen model,
  a wrong loss, a learning rate far off).
- `check_roundtrip`: saved in each format with `kerakit.saving.save_model`, reloaded with
  `kerakit.saving.load_model` in a fresh Keras session, the predictions must agree.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

STEPS = 20  # overfit-one-batch steps
FALL = 0.9  # the mean of the last three losses must be below FALL x the first


class SmokeFailure(AssertionError):
    """A smoke check failed; `key` is the recipe key path it concerns, if any."""

    def __init__(self, reason: str, key: tuple = ()):
        super().__init__(reason)
        self.reason, self.key = reason, tuple(key)
        self.layer = None  # the layer it concerns, when one is known


@contextlib.contextmanager
def quiet():
    """TensorFlow's, Keras's and tfds's log lines and Python warnings (retracing, optimizer
    variables on reload, folder notes) left out while the checks run (kerakit's own warnings
    still show); the levels are restored after."""
    loggers = [logging.getLogger(name) for name in ("tensorflow", "absl")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"(keras|tensorflow|tensorflow_datasets)\.")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def overfit_one_batch(model, x, y, steps: int = STEPS, *, fall: float = FALL) -> list[float]:
    """Train `model` (compiled) `steps` steps on the one batch `(x, y)`; returns the losses.

    Raises `SmokeFailure` when the model has no trainable weights, when a loss is not
    finite ("diverged at step k"), or unless the mean of the last three losses is below
    `fall` x the first loss (for a negative loss: below it by `1 - fall` of its size).
    """
    if not model.trainable_weights:
        raise SmokeFailure(
            "the model has no trainable weights (every layer is frozen): it cannot learn",
            ("model",),
        )
    losses: list[float] = []
    for step in range(1, max(int(steps), 2) + 1):
        loss = float(model.train_on_batch(x, y, return_dict=True)["loss"])
        losses.append(loss)
        if not math.isfinite(loss):
            shown = ", ".join(f"{v:.4g}" for v in losses[-4:])
            raise SmokeFailure(
                f"diverged at step {step}: the loss is {loss} (losses: {shown}); "
                "lower the learning rate",
                ("compile", "optimizer"),
            )
    first, last = losses[0], sum(losses[-3:]) / len(losses[-3:])
    if not last < first - (1 - fall) * abs(first):
        raise SmokeFailure(
            f"the loss did not fall on one batch: {first:.4g} at step 1, {last:.4g} over the "
            f"last steps of {len(losses)} (it must fall below {fall:g}x); "
            "a model that cannot overfit one batch cannot learn",
            ("model",),
        )
    return losses


def check_roundtrip(model, folder: Path, formats: Iterable[str], x, *, tolerance: float = 1e-5
                    ) -> dict:  # fmt: skip
    """Save `model` in each format under `folder`, reload each with `load_model` in a fresh
    Keras session, and require the predictions on `x` to agree; returns {format: path}."""
    import keras
    import numpy as np
    import tensorflow as tf

    from kerakit.saving import FORMATS, load_model, save_model

    x = tf.nest.map_structure(lambda t: t[:8], x)  # eight rows tell; eager: nothing to trace
    expected = flat_outputs(model(x, training=False))
    paths: dict = {}
    for fmt in [f for f in FORMATS if f in set(formats)]:  # kerakit's order: .keras first
        try:
            paths.update(save_model(model, Path(folder) / fmt, [fmt]))
        except Exception as exc:
            bad = next((la for la in model.layers if not _serializable(la)), None)
            who = (
                f"its layer {bad.name!r} ({type(bad).__name__}) cannot be serialized: "
                if bad
                else ""
            )
            failure = SmokeFailure(f"cannot save as {fmt}: {who}{why(exc)}", ("model",))
            failure.layer = bad
            raise failure from None
    policy = keras.mixed_precision.global_policy()
    keras.backend.clear_session(free_memory=False)  # the reloaded models: a fresh Keras session
    keras.mixed_precision.set_global_policy(policy)
    for fmt, path in paths.items():
        try:
            with quiet():  # again: a SavedModel export sets absl's level back to warnings
                loaded = load_model(path)
            got = flat_outputs(loaded(_for_loaded(loaded, x), training=False))
        except Exception as exc:
            raise SmokeFailure(f"the {fmt} model does not reload: {why(exc)}", ("model",)) from None
        if len(got) != len(expected) or any(a.shape != b.shape for a, b in zip(got, expected)):
            raise SmokeFailure(f"the reloaded {fmt} model predicts other shapes", ("model",))
        worst = max(float(np.max(np.abs(a - b), initial=0.0)) for a, b in zip(got, expected))
        if not all(
            np.allclose(a, b, rtol=tolerance, atol=tolerance) for a, b in zip(got, expected)
        ):
            raise SmokeFailure(
                f"the reloaded {fmt} model predicts differently (by up to {worst:.3g}; "
                f"tolerance {tolerance:g})",
                ("model",),
            )
    return paths


def _serializable(layer) -> bool:
    import keras

    try:
        keras.saving.serialize_keras_object(layer)
        return True
    except Exception:
        return False


def flat_outputs(outputs) -> list:
    import numpy as np

    if isinstance(outputs, Mapping):
        outputs = [outputs[k] for k in sorted(outputs)]
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return [np.asarray(o, dtype="float32") for o in outputs]


def _for_loaded(model, x):
    """A SavedModel reloads with one Input per tensor, as a list: named inputs in its order."""
    if isinstance(x, Mapping) and isinstance(model.input, list):
        names = [t.name.split(":")[0] for t in model.inputs]
        return [x[n] for n in names] if set(names) <= set(x) else [x[k] for k in sorted(x)]
    return x


def why(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:400]}" if text else type(exc).__name__


def standardized(x):
    """Cached features of a random backbone (the smoke's stand-in for ImageNet weights),
    standardized over the batch: a deep random backbone with BatchNorm in inference mode
    gives features of ~1e-5 that barely differ between images (Xception), which no head can
    fit in a few steps. The check is about the head: it trains on them standardized."""
    import numpy as np

    x = np.asarray(x, "float32")
    return (x - x.mean(0)) / (x.std(0) + 1e-12)
