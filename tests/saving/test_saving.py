"""Atomic saves in every format and load_model round trips (real Keras)."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from kerakit.errors import ModelFileError, RecipeError
from kerakit.saving import atomic_path, atomic_write, load_model, save_model, write_json


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", metrics=["mae"])
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    model.fit(x, np.zeros((32, 3), "float32"), epochs=2, batch_size=8, verbose=0)
    return model, x


def test_all_three_formats_round_trip(trained, tmp_path):
    model, x = trained
    paths = save_model(model, tmp_path, formats=["savedmodel", "h5", "keras"])
    assert list(paths) == ["keras", "h5", "savedmodel"]  # .keras always first
    expected = model.predict(x, verbose=0)
    for target in [tmp_path, paths["keras"], paths["h5"], paths["savedmodel"]]:
        loaded = load_model(target)
        np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-5)
    # the h5 trap: the .keras saved next to it keeps Adam and its state
    for fmt in ("keras", "h5"):
        loaded = load_model(paths[fmt])
        assert type(loaded.optimizer).__name__ == "Adam"
        assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 8
    # and the in-memory model is not damaged by the .h5 save
    save_model(model, tmp_path / "again", ["keras"])
    again = load_model(tmp_path / "again" / "model.keras")
    assert type(again.optimizer).__name__ == "Adam"
    assert int(again.optimizer.iterations) == 8
    np.testing.assert_allclose(
        again.optimizer.variables[2].numpy(), model.optimizer.variables[2].numpy()
    )


def test_keras_reuses_its_saving_skipsets_and_saves_the_same_file(trained, tmp_path):
    """Keras 3.15 misses its own cache in get_attr_skipset; kerakit fills the key it reads."""
    import zipfile

    from keras.src.backend.common import global_state
    from keras.src.saving import saving_lib

    from kerakit.saving import cache_keras_skipsets

    model, _ = trained
    model.save(tmp_path / "plain.keras")
    cache_keras_skipsets()
    for kind in ("Layer", "Sequential", "Optimizer", "Metric"):
        # a cache hit: Keras returns the stored set instead of building throwaway objects
        assert saving_lib.get_attr_skipset(kind) is global_state.get_global_attribute(
            f"saving_attr_skiplist_{kind}"
        )
    model.save(tmp_path / "cached.keras")
    with (
        zipfile.ZipFile(tmp_path / "plain.keras") as a,
        zipfile.ZipFile(tmp_path / "cached.keras") as b,
    ):
        assert a.namelist() == b.namelist()
        assert json.loads(a.read("config.json")) == json.loads(b.read("config.json"))
    plain, cached = load_model(tmp_path / "plain.keras"), load_model(tmp_path / "cached.keras")
    for u, v in zip(
        plain.weights + plain.optimizer.variables, cached.weights + cached.optimizer.variables
    ):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_legacy_h5_with_mse_loads_compiled(trained, tmp_path):
    model, x = trained
    path = save_model(model, tmp_path, ["h5"])["h5"]
    with pytest.raises(Exception, match="KerasSaveable"):  # what plain Keras 3.15 does
        keras.saving.load_model(path)
    loaded = load_model(path)
    assert loaded.compiled and type(loaded.optimizer).__name__ == "Adam"
    assert int(loaded.optimizer.iterations) == 8
    loaded.evaluate(x, np.zeros((32, 3)), verbose=0)


def test_unknown_format_is_a_recipe_error(trained, tmp_path):
    with pytest.raises(RecipeError, match="did you mean 'keras'"):
        save_model(trained[0], tmp_path, ["kears"])


def test_missing_and_corrupt_files(trained, tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "nope.keras")
    with pytest.raises(ModelFileError, match="no model here"):
        load_model(tmp_path)
    path = save_model(trained[0], tmp_path, ["keras", "h5"])
    for fmt in ("keras", "h5"):
        data = path[fmt].read_bytes()
        torn = tmp_path / f"torn.{'keras' if fmt == 'keras' else 'h5'}"
        torn.write_bytes(data[: len(data) // 2])
        with pytest.raises(ModelFileError, match="corrupt"):
            load_model(torn)
        with pytest.raises(ModelFileError, match="corrupt"):
            load_model(torn, trusted=True)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"hello")
    with pytest.raises(ModelFileError, match="corrupt"):
        load_model(junk)


def test_a_save_that_fails_part_way_keeps_the_previous_model(trained, tmp_path, monkeypatch):
    model, x = trained
    good = save_model(model, tmp_path, ["keras"])["keras"]
    before = good.read_bytes()

    from keras.src.saving import saving_lib

    real = saving_lib._save_state

    def disk_full(*args, **kwargs):
        real(*args, **kwargs)  # some bytes are written...
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(saving_lib, "_save_state", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_model(model, tmp_path, ["keras"])
    monkeypatch.undo()
    assert good.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]  # no temp left behind
    np.testing.assert_allclose(
        load_model(good).predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )


def test_atomic_write_keeps_old_content_on_error(tmp_path):
    target = write_json(tmp_path / "metrics.json", {"accuracy": 0.9})
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write('{"accuracy": 0.')
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"accuracy": 0.9}
    with atomic_path(tmp_path / "folder") as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("1")
    with atomic_path(tmp_path / "folder") as tmp:  # replacing a folder
        tmp.mkdir()
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "metrics.json"]


def test_a_savedmodel_with_named_inputs_loads_and_predicts_like_the_model(tmp_path):
    import keras

    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    out = keras.layers.Dense(2)(keras.layers.Concatenate()([a, b]))
    model = keras.Model({"a": a, "b": b}, out)
    model.compile("adam", "mse")
    save_model(model, tmp_path, ["savedmodel"])
    served = load_model(tmp_path / "savedmodel")
    x = {"a": np.ones((4, 3), "float32"), "b": np.zeros((4, 2), "float32")}
    np.testing.assert_allclose(served.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
