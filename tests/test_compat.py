"""The Keras/TF bugs kerakit works around (kerakit._compat.WORKAROUNDS), each shown on plain Keras.

Every test here asserts that the bug is STILL THERE in the installed Keras/TF.
When one fails, upstream fixed it: drop or narrow the workaround named in
`WORKAROUNDS`, move the `keras>=` floor in pyproject.toml, and delete the test.
The workarounds themselves are tested where they live (tests/<package>/...).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerakit._compat import WORKAROUNDS

FIXED = "upstream fixed it: see kerakit._compat.WORKAROUNDS[{!r}] and drop the workaround"


def _tiny(extra=None):
    layers = [keras.Input((2,)), keras.layers.Dense(3)]
    model = keras.Sequential([*layers, extra or keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    return model


class _Boom(keras.layers.Dense):
    """A layer whose save dies on demand: a kill part-way through a save, in-process."""

    fail = False

    def save_own_variables(self, store):
        if _Boom.fail:
            raise RuntimeError("simulated crash mid-save")
        super().save_own_variables(store)


def test_every_workaround_names_an_existing_place_and_a_sentinel_here():
    tests = {name for name in globals() if name.startswith("test_")}
    for key, entry in WORKAROUNDS.items():
        assert entry.sentinel in tests, key
        for where in entry.where.split(", "):
            path = where.split(" ")[0]
            module, _, name = path.rpartition(".")
            try:
                obj = importlib.import_module(path)
            except ImportError:
                obj = getattr(importlib.import_module(module), name, None)
            assert obj is not None, (key, path)


def test_the_saving_skipset_cache_still_misses():
    from keras.src.saving import saving_lib

    keras.backend.clear_session()
    first = saving_lib.get_attr_skipset("Layer")
    assert first is not saving_lib.get_attr_skipset("Layer"), FIXED.format("skipset_cache")


def test_h5_save_still_strips_the_optimizer(tmp_path):
    model = _tiny()
    model.save(tmp_path / "m.h5")
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    assert type(again.optimizer).__name__ != "Adam", FIXED.format("h5_strips_optimizer")


def test_legacy_h5_with_a_loss_alias_still_fails_to_load_compiled(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("adam", loss="mse")
    model.save(tmp_path / "m.h5")
    with pytest.raises(Exception, match="KerasSaveable"):
        keras.saving.load_model(tmp_path / "m.h5")


def test_a_torn_keras_file_is_still_reported_as_not_found(tmp_path):
    _tiny().save(tmp_path / "m.keras")
    data = (tmp_path / "m.keras").read_bytes()
    (tmp_path / "torn.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(Exception) as info:
        keras.saving.load_model(tmp_path / "torn.keras")
    assert "not found" in str(info.value).lower(), FIXED.format("torn_keras_not_found")


def test_a_failed_save_still_destroys_the_previous_file(tmp_path):
    path = tmp_path / "best.keras"
    model = _tiny(_Boom(1))
    model.save(path)
    _Boom.fail = True
    try:
        with pytest.raises(RuntimeError):
            model.save(path)
    finally:
        _Boom.fail = False
    with pytest.raises(Exception):  # noqa: B017  (any failure to load shows the bug)
        keras.saving.load_model(path, custom_objects={"_Boom": _Boom})


def test_backup_and_restore_still_writes_in_place(tmp_path):
    x, y = np.zeros((4, 2), "float32"), np.zeros((4, 1), "float32")
    model = _tiny(_Boom(1))
    backup = lambda: keras.callbacks.BackupAndRestore(tmp_path, delete_checkpoint=False)  # noqa: E731
    model.fit(x, y, epochs=1, verbose=0, callbacks=[backup()])
    _Boom.fail = True
    try:
        with pytest.raises(RuntimeError):
            model.fit(x, y, epochs=2, verbose=0, callbacks=[backup()])
    finally:
        _Boom.fail = False
    fresh = _tiny(_Boom(1))
    fresh.optimizer.build(fresh.trainable_variables)
    with pytest.raises(Exception):  # noqa: B017
        fresh.load_weights(tmp_path / "latest.weights.h5")


def test_a_nan_stop_still_deletes_the_backup(tmp_path):
    backup = tmp_path / "backup"
    x, y = np.ones((8, 2), "float32"), np.ones((8, 1), "float32")
    y_bad = y.copy()
    y_bad[6] = np.nan
    model = _tiny()
    model.fit(x, y, epochs=1, batch_size=4, verbose=0,
              callbacks=[keras.callbacks.BackupAndRestore(backup, delete_checkpoint=False)])  # fmt: skip
    assert backup.is_dir()
    model.fit(x, y_bad, epochs=3, batch_size=4, shuffle=False, verbose=0,
              callbacks=[keras.callbacks.TerminateOnNaN(), keras.callbacks.BackupAndRestore(backup)])  # fmt: skip
    assert not backup.is_dir(), FIXED.format("nan_deletes_backup")


def test_a_resume_still_forgets_the_best_value(tmp_path):
    x, y = np.ones((8, 2), "float32"), np.ones((8, 1), "float32")
    model = _tiny()

    class Stop(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("interrupted")

    def checkpoint():
        return keras.callbacks.ModelCheckpoint(tmp_path / "best.keras", save_best_only=True,
                                               monitor="loss")  # fmt: skip

    first = checkpoint()
    backup = tmp_path / "backup"
    with pytest.raises(RuntimeError):
        model.fit(x, y, epochs=4, verbose=0,
                  callbacks=[first, keras.callbacks.BackupAndRestore(backup), Stop()])  # fmt: skip
    assert np.isfinite(first.best)
    second, seen = checkpoint(), {}

    class Peek(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.setdefault("epoch", epoch)
            seen.setdefault("best", second.best)

    model.fit(x, y, epochs=4, verbose=0,
              callbacks=[second, keras.callbacks.BackupAndRestore(backup), Peek()])  # fmt: skip
    assert seen["epoch"] == 2
    assert seen["best"] is None or not np.isfinite(seen["best"]), FIXED.format(
        "resume_forgets_best"
    )


def test_keras_still_accepts_nan_hyperparameters():
    keras.optimizers.Adam(learning_rate=float("nan"))  # raises once Keras checks its arguments
    keras.optimizers.Adam(beta_1=float("nan"))


@pytest.mark.parametrize("value", [False, 0, -1])
def test_keras_still_accepts_meaningless_save_freq(tmp_path, value):
    keras.callbacks.ModelCheckpoint(str(tmp_path / "m.keras"), save_freq=value)
    keras.callbacks.BackupAndRestore(str(tmp_path / "b"), save_freq=value)


def test_get_file_still_has_no_timeout():
    from keras.src.utils import file_utils

    assert "timeout" not in inspect.signature(keras.utils.get_file).parameters
    assert "urlretrieve(" in inspect.getsource(file_utils.get_file), FIXED.format(
        "get_file_timeout"
    )


def test_the_warp_op_still_loses_the_static_shape():
    seen = {}

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32)])
    def warp(x):
        y = tf.raw_ops.ImageProjectiveTransformV3(
            images=x, transforms=tf.tile([[1.0, 0, 0, 0, 1, 0, 0, 0]], [tf.shape(x)[0], 1]),
            output_shape=tf.shape(x)[1:3], fill_value=0.0, interpolation="BILINEAR",
            fill_mode="REFLECT",
        )  # fmt: skip
        seen["shape"] = y.shape
        return y

    warp.get_concrete_function()
    assert seen["shape"].as_list()[1:] != [8, 8, 1], FIXED.format("warp_static_shape")


def test_huber_still_drops_its_delta():
    loss = keras.losses.Huber(delta=2.0)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert again._fn_kwargs["delta"] == 1.0, FIXED.format("loss_config_drops_arguments")


# Both below need a fresh process: logical devices and collectives are set before TF starts.
SPE_SCRIPT = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
with strategy.scope():
    m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    m.compile("sgd", "mse", steps_per_execution=2)
try:
    m.fit(np.ones((16, 2), "float32"), np.ones((16, 1), "float32"), batch_size=4, verbose=0)
    print("FIT-OK")
except Exception as e:
    print("FIT-FAILED", type(e).__name__)
"""

MULTI_WORKER_SCRIPT = """
import numpy as np, tensorflow as tf, keras
s = tf.distribute.MultiWorkerMirroredStrategy()
with s.scope():
    m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    m.compile("sgd", "mse", metrics=["mae"])
try:
    m.fit(np.ones((16, 2), "float32"), np.ones((16, 1), "float32"), batch_size=8, verbose=0)
    print("FIT-OK")
except Exception as e:
    print("FIT-FAILED", type(e).__name__)
"""


def _env(**extra):
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", **extra}


@pytest.mark.slow
def test_steps_per_execution_still_breaks_several_replicas():
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(SPE_SCRIPT)], env=_env(),
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "FIT-FAILED" in proc.stdout, FIXED.format("steps_per_execution_replicas") + proc.stdout


@pytest.mark.slow
def test_multi_worker_reduce_still_rejects_what_fit_asks():
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    workers = [f"127.0.0.1:{p}" for p in ports]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(MULTI_WORKER_SCRIPT)],
            env=_env(
                TF_CONFIG=json.dumps(
                    {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
                )
            ),  # fmt: skip
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    try:
        outs = [p.communicate(timeout=90)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert any("FIT-FAILED" in o for o in outs), FIXED.format("multi_worker_reduce") + str(outs)


def test_a_nested_model_called_with_training_false_still_moves_batchnorm():
    import numpy as np

    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, keras.layers.BatchNormalization()(inner_in))
    outer_in = keras.Input((4,))
    outer = keras.Model(outer_in, keras.layers.Dense(1)(inner(outer_in, training=False)))
    outer.compile("sgd", "mse")
    before = inner.layers[1].moving_mean.numpy().copy()
    outer.train_on_batch(np.ones((2, 4), "float32"), np.ones((2, 1), "float32"))
    moved = not np.array_equal(before, inner.layers[1].moving_mean.numpy())
    assert moved, FIXED.format("nested_training_false")
