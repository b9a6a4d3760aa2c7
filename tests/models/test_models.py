"""Builders: every overview model by hand vs from a recipe, functional graphs, builder errors."""

import keras
import numpy as np
import pytest
from conftest import CONFIGS

import kerakit as kk
from kerakit.errors import RecipeError
from kerakit.recipe import load_recipe


def _same_weights(src: keras.Model, dst: keras.Model) -> None:
    dst.set_weights(src.get_weights())


def _assert_same(hand: keras.Model, built: keras.Model, x) -> None:
    assert built.count_params() == hand.count_params()
    assert len(built.layers) == len(hand.layers)
    assert built.output_shape == hand.output_shape
    _same_weights(hand, built)
    np.testing.assert_allclose(
        built.predict(x, verbose=0), hand.predict(x, verbose=0), rtol=0, atol=0
    )


def test_overview_mlp_matches_hand_written():
    from keras.layers import Dense
    from keras.models import Sequential

    hand = Sequential(
        [keras.Input((784,)), Dense(64, activation="relu"), Dense(10, activation="softmax")]
    )
    built = kk.build_model(load_recipe(CONFIGS / "overview_mlp.yaml"))
    _assert_same(hand, built, np.random.default_rng(0).random((4, 784), "float32"))


def test_overview_cnn_matches_hand_written():
    from keras.layers import Conv2D, Dense, Flatten, MaxPooling2D
    from keras.models import Sequential

    hand = Sequential([
        keras.Input((28, 28, 1)),
        Conv2D(32, (3, 3), activation="relu"),
        MaxPooling2D((2, 2)),
        Flatten(),
        Dense(64, activation="relu"),
        Dense(10, activation="softmax"),
    ])  # fmt: skip
    built = kk.build_model(load_recipe(CONFIGS / "overview_cnn.yaml"))
    _assert_same(hand, built, np.random.default_rng(0).random((3, 28, 28, 1), "float32"))


def test_overview_functional_matches_hand_written():
    from keras.layers import Dense, Input
    from keras.models import Model

    inputs = Input(shape=(784,))
    x = Dense(64, activation="relu")(inputs)
    hand = Model(inputs=inputs, outputs=Dense(10, activation="softmax")(x))
    built = kk.build_model({
        "functional": {
            "inputs": {"inputs": [784]},
            "graph": [
                {"x": {"Dense": {"units": 64, "activation": "relu"}, "in": "inputs"}},
                {"outputs": {"Dense": {"units": 10, "activation": "softmax"}, "in": "x"}},
            ],
            "outputs": "outputs",
        }
    })  # fmt: skip
    _assert_same(hand, built, np.random.default_rng(1).random((4, 784), "float32"))


def test_lstm_config_matches_hand_written():
    hand = keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Reshape((8, 8)), keras.layers.LSTM(64),
        keras.layers.Dense(10, activation="softmax"),
    ])  # fmt: skip
    built = kk.build_model(load_recipe(CONFIGS / "lstm_sequence.yaml"))
    _assert_same(hand, built, np.random.default_rng(2).random((2, 8, 8, 1), "float32"))


def test_functional_config_shares_one_encoder():
    model = kk.build_model(load_recipe(CONFIGS / "functional_two_io.yaml"))
    encoder = model.get_layer("encoder")
    assert len(encoder._inbound_nodes) == 2  # one layer, called on both halves
    assert sum(1 for layer in model.layers if isinstance(layer, keras.layers.Conv2D)) == 1
    assert set(model.output_names) == {"digit", "parity"}
    out = model.predict(
        {"top": np.zeros((2, 4, 8, 1)), "bottom": np.zeros((2, 4, 8, 1))}, verbose=0
    )
    assert out["digit"].shape == (2, 10) and out["parity"].shape == (2, 1)


# Every shipped config builds, compiles, learns and saves: `pytest --kerakit configs`
# (tests/test_smoke.py runs it).


def test_positional_short_forms_and_bare_names():
    model = kk.build_model(
        {"sequential": [{"Dense": 8}, "Flatten", {"Dense": [3, "softmax"]}]}, input_shape=(4,)
    )
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "Flatten", "Dense"]
    assert model.layers[-1].activation.__name__ == "softmax"


def test_nested_layer_arguments():
    model = kk.build_model({"sequential": [{"Bidirectional": {"layer": {"LSTM": {"units": 4}}}}, {"Dense": 2}]},
                           input_shape=(5, 3))  # fmt: skip
    assert model.output_shape == (None, 2)


def test_registered_custom_layer():
    @keras.saving.register_keras_serializable(package="kerakit_test")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    model = kk.build_model({"sequential": ["Doubler", {"Dense": 2}]}, input_shape=(3,))
    assert isinstance(model.layers[0], Doubler)


BUILD_ERRORS = [
    (
        "unknown_layer",
        [{"Dense": 4}, {"Conv2DD": {"filters": 3}}],
        (4,),
        "model.sequential[1].Conv2DD",
        "did you mean 'Conv2D'",
    ),
    (
        "misspelled_argument",
        [{"Dense": {"unit": 4}}],
        (4,),
        "model.sequential[0].Dense.unit",
        "did you mean 'units'",
    ),
    (
        "negative_units",
        [{"Dense": {"units": -3}}],
        (4,),
        "model.sequential[0].Dense.units",
        "expected a positive integer",
    ),
    (
        "conv_on_flat",
        [{"Dense": 8}, {"Conv2D": {"filters": 3, "kernel_size": 3}}],
        (4,),
        "model.sequential[1].Conv2D",
        "input of shape (None, 8)",
    ),
    (
        "lookup_reads_a_file",
        [{"StringLookup": {"vocabulary": "/etc/passwd"}}],
        (1,),
        "model.sequential[0].StringLookup.vocabulary",
        "does not make kerakit read files",
    ),
    (
        "bad_activation",
        [{"Dense": {"units": 2, "activation": "rellu"}}],
        (4,),
        "model.sequential[0].Dense",
        "rellu",
    ),
]


@pytest.mark.parametrize("case", BUILD_ERRORS, ids=[c[0] for c in BUILD_ERRORS])
def test_builder_errors_name_the_layer(case):
    _, layers, shape, path, words = case
    with pytest.raises(RecipeError) as info:
        kk.build_model({"sequential": layers}, input_shape=shape)
    assert f"{path}: " in str(info.value) and words in str(info.value), str(info.value)


def test_builder_error_in_a_file_names_the_line(write_recipe):
    path = write_recipe("""
        data: {source: digits}
        model:
          input_shape: [16]
          sequential:
            - Dense: {units: 8}
            - Conv2D: {filters: 4, kernel_size: 3}
        """)
    with pytest.raises(RecipeError) as info:
        kk.build_model(load_recipe(path))
    assert str(info.value).startswith(f"{path}:6:") and "model.sequential[1].Conv2D" in str(
        info.value
    )


def test_functional_shape_mismatch_names_node(write_recipe):
    path = write_recipe("""
        data: {source: digits}
        model:
          functional:
            inputs: {a: [4], b: [5]}
            graph:
              - s: {Add: {}, in: [a, b]}
            outputs: s
        """)
    with pytest.raises(RecipeError) as info:
        kk.build_model(load_recipe(path))
    assert "model.functional.graph[0].s.Add" in str(info.value) and "(None, 4), (None, 5)" in str(
        info.value
    )


def test_missing_input_shape():
    with pytest.raises(RecipeError, match="needs an input shape"):
        kk.build_model({"sequential": [{"Dense": 2}]})


def _digits_cnn_by_hand():
    L = keras.layers
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        L.Conv2D(32, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(64, 3, padding="same", activation="relu"), L.Flatten(), L.Dropout(0.3),
        L.Dense(64, activation="relu"), L.Dense(10, activation="softmax"),
    ])  # fmt: skip


def _binary_by_hand():
    L = keras.layers
    return keras.Sequential([keras.Input((30,)), L.Dense(32, activation="relu"), L.Dropout(0.2),
                             L.Dense(1, activation="sigmoid")])  # fmt: skip


def _two_io_by_hand():
    L = keras.layers
    top, bottom = keras.Input((4, 8, 1), name="top"), keras.Input((4, 8, 1), name="bottom")
    encoder = L.Conv2D(16, 3, padding="same", activation="relu", name="encoder")
    x = L.Flatten()(L.Concatenate(axis=1)([encoder(top), encoder(bottom)]))
    h1 = L.Dense(64, activation="relu")(x)
    skip = L.Add()([h1, L.Dense(64, activation="relu")(h1)])
    outputs = {"digit": L.Dense(10, activation="softmax", name="digit")(skip),
               "parity": L.Dense(1, activation="sigmoid", name="parity")(skip)}  # fmt: skip
    return keras.Model({"top": top, "bottom": bottom}, outputs)


@pytest.mark.parametrize(
    "config,by_hand,x",
    [
        ("digits_cnn.yaml", _digits_cnn_by_hand, lambda r: r.random((3, 8, 8, 1), "float32")),
        ("binary_classifier.yaml", _binary_by_hand, lambda r: r.random((3, 30), "float32")),
        ("functional_two_io.yaml", _two_io_by_hand,
         lambda r: {"top": r.random((3, 4, 8, 1), "float32"), "bottom": r.random((3, 4, 8, 1), "float32")}),
    ],
)  # fmt: skip
def test_configs_match_their_hand_written_keras(config, by_hand, x):
    hand = by_hand()
    built = kk.build_model(
        load_recipe(CONFIGS / config),
        input_shape=None if config != "binary_classifier.yaml" else (30,),
    )
    assert built.count_params() == hand.count_params()
    assert len(built.layers) == len(hand.layers)
    built.set_weights(hand.get_weights())
    data = x(np.random.default_rng(3))
    a, b = built.predict(data, verbose=0), hand.predict(data, verbose=0)
    for key in a if isinstance(a, dict) else [None]:
        np.testing.assert_allclose(a[key] if key else a, b[key] if key else b, atol=1e-6)
