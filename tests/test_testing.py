"""kerakit.testing: tiny seeded data sets that kerakit's own readers load, assert_learns,
assert_roundtrip, and the kerakit_output fixture (given by kerakit's pytest plugin)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import REPO

from kerakit.data import load_data
from kerakit.testing import (
    assert_learns,
    assert_roundtrip,
    tiny_csv,
    tiny_image_folder,
    tiny_images,
    tiny_series,
    tiny_text,
    write_npz,
)


def test_tiny_arrays_are_seeded_complete_and_shaped():
    for make, shape, dtype in [
        (lambda seed: tiny_images(30, (6, 5, 3), classes=3, seed=seed), (30, 6, 5, 3), "uint8"),
        (lambda seed: tiny_text(30, length=10, vocab=20, classes=3, seed=seed), (30, 10), "int32"),
        (lambda seed: tiny_series(30, steps=12, features=2, classes=3, seed=seed), (30, 12, 2),
         "float32"),
    ]:  # fmt: skip
        x, y = make(0)
        assert x.shape == shape and x.dtype == dtype and y.dtype == "int32"
        assert sorted(set(y.tolist())) == [0, 1, 2]
        again, other = make(0), make(1)
        assert np.array_equal(again[0], x) and not np.array_equal(other[0], x)
    x, _ = tiny_text(30, length=10, vocab=20)
    assert x.min() >= 0 and x.max() < 20


def test_tiny_files_load_with_kerakits_own_readers(tmp_path):
    folder = tiny_image_folder(tmp_path / "pics", classes=("a", "b"), per_class=4, size=(6, 6))
    images = load_data({"source": f"directory:{folder}", "test_split": 0.25, "validation_split": 0})
    assert images.input_shape == (6, 6, 3) and images.class_names == ["a", "b"]
    assert sum(images.sizes.values()) == 8

    table = load_data({"source": f"csv:{tiny_csv(tmp_path, rows=20)}", "target": "label"})
    assert table.input_shape == (4,) and table.class_names == ["no", "yes"]
    header = (tmp_path / "table.csv").read_text().splitlines()[0]
    assert header == "age,height,income,smoker,label"

    x, y = tiny_series(20, steps=8, features=3)
    series = load_data({"source": f"npz:{write_npz(tmp_path, x, y)}"})
    assert series.input_shape == (8, 3) and series.num_classes == 2
    xt, yt = tiny_text(20, length=6)
    named = load_data(
        {"source": f"npz:{write_npz(tmp_path, {'words': xt}, yt, name='t.npz')}"}, seed=0
    )
    assert named.input_shape == {"words": (6,)}


def _dense(units_in: int, classes: int, lr: float = 0.05, trainable: bool = True):
    model = keras.Sequential([keras.Input((units_in,)),
                              keras.layers.Dense(classes, activation="softmax", trainable=trainable)])  # fmt: skip
    model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy")
    return model


def test_assert_learns_on_models_and_recipes():
    x, y = tiny_images(32, (6, 6, 1), classes=3)
    losses = assert_learns(_dense(36, 3), (x.reshape(32, -1) / 255, y), steps=10)
    assert len(losses) == 10 and losses[-1] < losses[0]

    text = {
        "data": {"source": "arrays", "batch_size": 16},
        "model": {"sequential": [{"Embedding": {"input_dim": 40, "output_dim": 4}},
                                 "GlobalAveragePooling1D", {"Dense": {"units": 2, "activation": "softmax"}}]},
        "compile": {"preset": "multiclass", "optimizer": {"adam": {"learning_rate": 0.05}}},
    }  # fmt: skip
    assert len(assert_learns(text, tiny_text(32, length=8, vocab=40), steps=10)) == 10
    assert assert_learns(REPO / "tests" / "smoke_recipes" / "good.yaml", steps=10)  # its own data


def test_assert_learns_says_why_a_model_cannot_learn():
    x, y = tiny_images(16, (4, 4, 1), classes=2)
    data = (x.reshape(16, -1) / 255, y)
    with pytest.raises(AssertionError, match="no trainable weights"):
        assert_learns(_dense(16, 2, trainable=False), data)
    with pytest.raises(AssertionError, match="did not fall on one batch"):
        assert_learns(_dense(16, 2, lr=0.0), data, steps=5)
    with pytest.raises(TypeError, match="needs"):
        assert_learns(_dense(16, 2))


def test_assert_roundtrip(tmp_path):
    inputs = {"a": keras.Input((3,), name="a"), "b": keras.Input((2,), name="b")}
    joined = keras.layers.Concatenate()([inputs["a"], inputs["b"]])
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(joined))
    model.compile("adam", "sparse_categorical_crossentropy")
    paths = assert_roundtrip(model, tmp_path, formats=["keras", "h5"])
    assert sorted(paths) == ["h5", "keras"] and all(p.exists() for p in paths.values())

    class NoConfig(keras.layers.Layer):  # a layer of one's own, never registered
        def __init__(self, table, **kwargs):
            super().__init__(**kwargs)
            self.table = table

        def call(self, x):
            return x

        def get_config(self):
            return {**super().get_config(), "table": object()}

    broken = keras.Sequential([keras.Input((3,)), NoConfig({1, 2}), keras.layers.Dense(2)])
    with pytest.raises(
        AssertionError, match="cannot save as keras: its layer .* cannot be serialized"
    ):
        assert_roundtrip(broken, tmp_path / "broken")


def test_kerakit_output_fixture_comes_with_the_plugin(kerakit_output, tmp_path):
    assert kerakit_output.is_dir() and not any(kerakit_output.iterdir())
    assert tmp_path in kerakit_output.parents
