"""Compile presets, inference from the output layer, per-output compile, name errors."""

import keras
import numpy as np
import pytest

import kerakit as kk
from kerakit.errors import RecipeError
from kerakit.models.compile import infer_preset, resolve_compile
from kerakit.recipe.compile import PRESETS


def _model(units, activation, inputs=4):
    return keras.Sequential(
        [keras.Input((inputs,)), keras.layers.Dense(units, activation=activation)]
    )


@pytest.mark.parametrize(
    "preset,units,activation,y",
    [
        ("multiclass", 3, "softmax", np.array([0, 1, 2, 1])),
        ("multiclass_onehot", 3, "softmax", np.eye(3)[[0, 1, 2, 1]]),
        ("binary", 1, "sigmoid", np.array([0, 1, 1, 0])),
        ("multilabel", 3, "sigmoid", np.array([[0, 1, 1], [1, 0, 0], [1, 1, 0], [0, 0, 1]])),
        ("regression", 1, None, np.array([0.5, 1.0, -1.0, 2.0])),
    ],
)
def test_every_preset_compiles_and_trains_one_step(preset, units, activation, y):
    model = kk.compile_model(_model(units, activation), preset)
    assert model.loss == PRESETS[preset]["loss"]
    logs = model.fit(np.ones((4, 4), "float32"), y.astype("float32"), epochs=1, verbose=0).history
    assert np.isfinite(logs["loss"][0])


@pytest.mark.parametrize(
    "units,activation,expected",
    [
        (10, "softmax", "multiclass"),
        (1, "sigmoid", "binary"),
        (5, "sigmoid", "multilabel"),
        (1, None, "regression"),
        (3, "relu", "regression"),
    ],
)
def test_preset_is_inferred_from_output_layer(units, activation, expected):
    model = _model(units, activation)
    ((preset, why),) = infer_preset(model).values()
    assert preset == expected and why
    section, notes = resolve_compile({}, model)
    assert section["preset"] == expected and f"compile preset: {expected}" in notes[0]


def test_overrides_win_over_preset():
    model = kk.compile_model(_model(3, "softmax"), "multiclass", optimizer={"sgd": {"learning_rate": 0.05, "momentum": 0.9}},
                             metrics=["accuracy", {"SparseTopKCategoricalAccuracy": {"k": 2}}])  # fmt: skip
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)


def test_ready_objects_pass_through():
    opt = keras.optimizers.RMSprop(1e-3)
    model = kk.compile_model(
        _model(1, "sigmoid"), "binary", optimizer=opt, loss=keras.losses.BinaryCrossentropy()
    )
    assert model.optimizer is opt


def test_defaults_are_chosen_per_device_and_recorded():
    section, notes = resolve_compile({"preset": "binary"}, _model(1, "sigmoid"))
    assert section["jit_compile"] is False  # XLA measured 3x slower on CPU
    assert section["steps_per_execution"] >= 1 and any("steps_per_execution" in n for n in notes)


def test_multi_output_per_output_losses_and_weights():
    inp = keras.Input((4,))
    h = keras.layers.Dense(8)(inp)
    model = keras.Model(inp, {"a": keras.layers.Dense(3, activation="softmax", name="a")(h),
                              "b": keras.layers.Dense(1, activation="sigmoid", name="b")(h)})  # fmt: skip
    section, notes = resolve_compile({}, model)
    assert section["loss"] == {"a": "sparse_categorical_crossentropy", "b": "binary_crossentropy"}
    kk.compile_model(
        model,
        loss=section["loss"],
        metrics={"a": ["accuracy"], "b": ["auc"]},
        loss_weights={"a": 1.0, "b": 0.3},
    )
    model.fit(
        np.ones((4, 4)), {"a": np.array([0, 1, 2, 0]), "b": np.array([0, 1, 1, 0])}, verbose=0
    )


@pytest.mark.parametrize(
    "kwargs,words",
    [
        ({"optimizer": "adamm"}, "unknown optimizer 'adamm' (did you mean 'adam'"),
        (
            {"optimizer": {"adam": {"learnin_rate": 0.1}}},
            "optimizer.adam.learnin_rate: Adam has no argument 'learnin_rate' (did you mean 'learning_rate'",
        ),
        (
            {"loss": "sparse_categorical_crosentropy"},
            "did you mean 'sparse_categorical_crossentropy'",
        ),
        ({"metrics": ["acuracy"]}, "unknown metric 'acuracy' (did you mean 'accuracy'"),
        ({"preset": "multclass"}, "did you mean 'multiclass'"),
        ({"loss": {"nope": "mse"}}, "no output named 'nope'"),
    ],
)
def test_compile_name_errors(kwargs, words):
    preset = kwargs.pop("preset", "multiclass")
    with pytest.raises(RecipeError) as info:
        kk.compile_model(_model(3, "softmax"), preset, **kwargs)
    assert words in str(info.value), str(info.value)
