"""Graphs (issue 17): blocks with parameters, models used as layers, call arguments and
input dtypes in functional recipes; each built with real Keras on tiny shapes."""

import textwrap

import keras
import numpy as np
import pytest
import yaml

import kerakit as kk
from kerakit.errors import RecipeError
from kerakit.recipe import load_recipe
from kerakit.recipe.loader import resolve
from kerakit.recipe.reader import dump_yaml

DATA = "data: {source: digits}\n"

# keras.io "Image classification from scratch", make_model(input_shape, num_classes=2),
# as examples/vision/image_classification_from_scratch.py writes it (data augmentation
# left out: it has no weights). 180x180 in the example; the count does not depend on it.
XCEPTION_MINI = """
model:
  functional:
    inputs: {image: [32, 32, 3]}
    blocks:
      down:                            # one pass of `for size in [128, 256, 512, 728]:`
        params: {size: null}
        inputs: [x]
        graph:
          - a1:   {Activation: relu, in: x}
          - s1:   {SeparableConv2D: {filters: $size, kernel_size: 3, padding: same}, in: a1}
          - b1:   {BatchNormalization: {}, in: s1}
          - a2:   {Activation: relu, in: b1}
          - s2:   {SeparableConv2D: {filters: $size, kernel_size: 3, padding: same}, in: a2}
          - b2:   {BatchNormalization: {}, in: s2}
          - pool: {MaxPooling2D: {pool_size: 3, strides: 2, padding: same}, in: b2}
          - res:  {Conv2D: {filters: $size, kernel_size: 1, strides: 2, padding: same}, in: x}
          - y:    {Add: {}, in: [pool, res]}
        outputs: y
    graph:
      - scaled: {Rescaling: 0.00392156862745098, in: image}
      - c1:     {Conv2D: {filters: 32, kernel_size: 3, strides: 2, padding: same}, in: scaled}
      - n1:     {BatchNormalization: {}, in: c1}
      - r1:     {Activation: relu, in: n1}
      - c2:     {Conv2D: {filters: 64, kernel_size: 3, padding: same}, in: r1}
      - n2:     {BatchNormalization: {}, in: c2}
      - r2:     {Activation: relu, in: n2}
      - stack:  {block: down, in: r2, repeat: {size: [128, 256, 512, 728]}}
      - c3:     {SeparableConv2D: {filters: 1024, kernel_size: 3, padding: same}, in: stack}
      - n3:     {BatchNormalization: {}, in: c3}
      - r3:     {Activation: relu, in: n3}
      - gap:    {GlobalAveragePooling2D: {}, in: r3}
      - drop:   {Dropout: 0.5, in: gap}
      - out:    {Dense: {units: 1, activation: sigmoid}, in: drop}
    outputs: out
"""


def _keras_io_make_model(input_shape, num_classes):
    from keras import layers

    inputs = keras.Input(shape=input_shape)
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(32, 3, strides=2, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(64, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    previous_block_activation = x
    for size in [128, 256, 512, 728]:
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        residual = layers.Conv2D(size, 1, strides=2, padding="same")(previous_block_activation)
        x = layers.add([x, residual])
        previous_block_activation = x
    x = layers.SeparableConv2D(1024, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    units, activation = (1, "sigmoid") if num_classes == 2 else (num_classes, "softmax")
    x = layers.Dropout(0.5)(x)
    return keras.Model(inputs, layers.Dense(units, activation=activation)(x))


def _recipe(text: str, tmp_path=None, name="recipe.yaml"):
    if tmp_path is None:
        return load_recipe(yaml.safe_load(DATA + textwrap.dedent(text)))
    path = tmp_path / name
    path.write_text(DATA + textwrap.dedent(text).lstrip("\n"))
    return load_recipe(path)


def _error(text: str, tmp_path, name="recipe.yaml") -> str:
    with pytest.raises(RecipeError) as info:
        kk.build_model(_recipe(text, tmp_path, name))
    return str(info.value)


# --------------------------------------------------------------------------- blocks


def test_keras_io_make_model_as_a_block_repeated_four_times(tmp_path):
    hand = _keras_io_make_model((32, 32, 3), num_classes=2)
    recipe = _recipe(XCEPTION_MINI, tmp_path)
    built = kk.build_model(recipe)
    # 2,782,649 with Keras 3.15.1 (the same at 180x180), built here from the example's code.
    assert built.count_params() == hand.count_params() == 2_782_649
    assert len(built.layers) == len(hand.layers)
    assert built.output_shape == hand.output_shape == (None, 1)
    assert sorted(tuple(w.shape) for w in built.weights) == sorted(
        tuple(w.shape) for w in hand.weights
    )
    names = [layer.name for layer in built.layers]
    # instances 1..3 of a repeat are NODE_k_inner; the last one's output layer is the node
    assert {"stack_1_s1", "stack_2_res", "stack_3", "stack_4_s2", "stack"} <= set(names)
    assert "stack_4" not in names and "stack_1_y" not in names
    assert built.get_layer("stack").__class__.__name__ == "Add"
    assert len(recipe["model"]["functional"]["graph"]) == 14  # written as 14 nodes, not 50


def test_blocks_resolve_to_themselves_and_dump_as_plain_yaml():
    recipe = _recipe(XCEPTION_MINI)
    data = recipe.to_dict()
    assert resolve(data, recipe.where) == data
    assert yaml.safe_load(dump_yaml(data["model"])) == data["model"]
    blocks = data["model"]["functional"]["blocks"]
    assert blocks["down"]["inputs"] == ["x"] and blocks["down"]["params"] == {"size": None}


def test_block_parameters_defaults_two_inputs_nesting_and_text_references():
    built = kk.build_model(
        _recipe("""
        model:
          functional:
            inputs: {a: [4], b: [4]}
            blocks:
              dense:
                params: {units: null, act: relu}
                inputs: x
                graph:
                  - d: {Dense: {units: $units, activation: $act}, in: x}
                outputs: d
              mix:
                params: {units: 4}
                inputs: [x, y]
                graph:
                  - s: {Add: {name: "sum_of_${units}"}, in: [x, y]}
                  - h: {block: dense, in: s, units: $units}
                outputs: h
            graph:
              - m: {block: mix, in: [a, b], units: 3}
              - out: {block: dense, in: m, repeat: 2, units: 2, act: softmax}
            outputs: out
        """)
    )
    names = [layer.name for layer in built.layers]
    assert {"sum_of_3", "m", "out_1", "out"} <= set(names)  # an explicit name: is kept
    assert built.get_layer("m").units == 3  # a nested block's output is the node's layer
    assert built.get_layer("out").activation.__name__ == "softmax"
    assert built.get_layer("m").activation.__name__ == "relu"  # the default
    assert built.output_shape == (None, 2)


BLOCK = """
model:
  functional:
    inputs: {x: [8]}
    blocks:
      dense:
        params: {units: null, act: relu}
        inputs: [v]
        graph:
          - d: {Dense: {units: $units, activation: $act}, in: v}
        outputs: d
    graph:
{graph}
    outputs: out
"""


def _block(graph: str, **replace) -> str:
    text = BLOCK.replace("{graph}", textwrap.indent(textwrap.dedent(graph).strip("\n"), " " * 6))
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (
            _block("- out: {block: dense, in: x, unit: 3}"),
            "recipe.yaml:13:42: model.functional.graph[0].out.unit:",
            "unknown parameter 'unit' of block 'dense' (did you mean 'units'?); "
            "its parameters: units, act",
        ),
        (
            _block("- out: {block: dense, in: x}"),
            "model.functional.graph[0].out:",
            "block 'dense' needs parameter 'units'; add `units: ...` to the node",
        ),
        (
            _block("- out: {block: dense, in: x, units: 2}", **{"$act": "$actt"}),
            "recipe.yaml:10:52: model.functional.blocks.dense.graph[0].d.Dense.activation:",
            "$actt is not a parameter of block 'dense' (did you mean 'act'?)",
        ),
        (
            _block("- out: {block: dense, in: [x, x], units: 2}"),
            "model.functional.graph[0].out.in:",
            "block 'dense' takes 1 input (v), got 2",
        ),
        (
            _block("- out: {block: dens, in: x, units: 2}"),
            "model.functional.graph[0].out.block:",
            "no block named 'dens' under functional.blocks (did you mean 'dense'?)",
        ),
        (
            _block("- out: {block: dense, in: x, repeat: {units: [2, 3], act: [relu]}}"),
            "model.functional.graph[0].out.repeat:",
            "the lists under repeat: differ in length ([1, 2])",
        ),
        (
            _block("- out: {block: dense, in: x, units: 2, repeat: {units: [2, 3]}}"),
            "model.functional.graph[0].out.repeat.units:",
            "'units' is given both beside repeat: and in it; keep one",
        ),
        (
            _block("- out: {Dense: {units: $units}, in: x}"),
            "model.functional.graph[0].out.Dense.units:",
            "$units is a block parameter, but this node is not inside a block",
        ),
        (
            _block("- out: {block: dense, in: x, units: 2}", **{"outputs: d": "outputs: e"}),
            "model.functional.blocks.dense.outputs:",
            "a block's outputs: is one of its nodes, got 'e'",
        ),
        (
            _block("- out: {block: dense, in: x, units: 2}", **{"in: v}": "in: w}"}),
            "model.functional.blocks.dense.graph[0].d.in:",
            "node 'd' takes 'w', which is neither an input of block 'dense' nor its node",
        ),
        (
            _block("- out: {block: dense, in: x, units: 2}", **{"params: {": "params: {in: 1, "}),
            "model.functional.blocks.dense.params.in:",
            "'in' is a key of a block node; name the parameter otherwise",
        ),
        (
            _block(
                """
                - out_e: {Dense: 3, in: x}
                - out: {block: dense, in: out_e, units: 2}
                """,
                **{
                    "- d: {Dense: {units: $units, activation: $act}, in: v}": (
                        "- e: {Dense: 8, in: v}\n          - d: {Dense: $units, in: e}"
                    )
                },
            ),
            "model.functional.blocks.dense.graph[0].e.Dense:",
            "this block instance names a layer 'out_e', which another node or input is named "
            "already; rename the node (in block 'dense' at node 'out' (units=2))",
        ),
    ],
    ids=[
        "unknown_param",
        "missing_param",
        "not_a_param",
        "input_count",
        "unknown_block",
        "repeat_lengths",
        "repeat_twice",
        "ref_outside",
        "bad_output",
        "bad_ref",
        "reserved_param",
        "name_clash",
    ],  # fmt: skip
)
def test_block_mistakes_are_named_with_file_line_and_key_path(tmp_path, text, where, message):
    text = _error(text, tmp_path)
    assert where in text and message in text, text


def test_blocks_that_hold_each_other_are_refused(tmp_path):
    text = _error(
        """
        model:
          functional:
            inputs: {x: [8]}
            blocks:
              a: {inputs: v, graph: [{n: {block: b, in: v}}], outputs: n}
              b: {inputs: v, graph: [{n: {block: a, in: v}}], outputs: n}
            graph:
              - out: {block: a, in: x}
            outputs: out
        """,
        tmp_path,
    )
    assert "model.functional.blocks.a: blocks use each other in a loop: a -> b -> a" in text


def test_a_shape_error_inside_an_instance_names_the_definition_and_the_instance(tmp_path):
    text = _error(
        """
        model:
          functional:
            inputs: {x: [8]}
            blocks:
              res:
                params: {units: null}
                inputs: v
                graph:
                  - d: {Dense: $units, in: v}
                  - s: {Add: {}, in: [d, v]}
                outputs: s
            graph:
              - out: {block: res, in: x, repeat: {units: [8, 5]}}
            outputs: out
        """,
        tmp_path,
    )
    assert "recipe.yaml:11:17: model.functional.blocks.res.graph[1].s.Add: Add cannot take" in text
    assert "(in block 'res' at node 'out', instance 2 of 2 (units=5))" in text


def test_keras_names_are_checked_inside_blocks_before_tensorflow(monkeypatch, tmp_path):
    from kerakit.recipe import keras_names
    from kerakit.recipe.keras_index import build_index

    names = keras_names.KerasNames(build_index())
    monkeypatch.setattr(keras_names, "checker", lambda: names)
    with pytest.raises(RecipeError) as info:
        _recipe(_block("- out: {block: dense, in: x, units: 2, act: rleu}"), tmp_path)
    text = str(info.value)
    assert "recipe.yaml:10:17: model.functional.blocks.dense.graph[0].d.Dense: " in text
    assert "Could not interpret activation function identifier: rleu" in text
    assert "(in block 'dense' at node 'out' (units=2, act='rleu'))" in text
    _recipe(_block("- out: {block: dense, in: x, units: 2, act: relu}"), tmp_path)


# --------------------------------------------------------------------------- models as layers

DECODER = """
name: decoder
model:
  input_shape: [16]
  sequential:
    - Reshape: [[4, 4, 1]]
    - Conv2DTranspose: {filters: 16, kernel_size: 3, activation: relu}
    - Conv2DTranspose: {filters: 32, kernel_size: 3, activation: relu}
    - UpSampling2D: 3
    - Conv2DTranspose: {filters: 16, kernel_size: 3, activation: relu}
    - Conv2DTranspose: {filters: 1, kernel_size: 3, activation: relu}
"""
AUTOENCODER = """
model:
  functional:
    inputs: {img: [28, 28, 1]}
    layers:
      encoder:
        trainable: false                 # frozen; its BatchNorm would run in inference mode
        input_shape: [28, 28, 1]
        sequential:
          - Conv2D: {filters: 16, kernel_size: 3, activation: relu}
          - Conv2D: {filters: 32, kernel_size: 3, activation: relu}
          - MaxPooling2D: 3
          - Conv2D: {filters: 32, kernel_size: 3, activation: relu}
          - Conv2D: {filters: 16, kernel_size: 3, activation: relu}
          - GlobalMaxPooling2D
      decoder: {recipe: parts/decoder.yaml}
    graph:
      - code: {use: encoder, in: img}
      - rebuilt: {use: decoder, in: code}
    outputs: rebuilt
"""


def _guide_autoencoder() -> keras.Model:
    """The functional API guide's autoencoder: two models, called like layers."""
    from keras import layers

    encoder_input = keras.Input(shape=(28, 28, 1), name="img")
    x = layers.Conv2D(16, 3, activation="relu")(encoder_input)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.MaxPooling2D(3)(x)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.Conv2D(16, 3, activation="relu")(x)
    encoder = keras.Model(encoder_input, layers.GlobalMaxPooling2D()(x), name="encoder")
    decoder_input = keras.Input(shape=(16,))
    x = layers.Reshape((4, 4, 1))(decoder_input)
    x = layers.Conv2DTranspose(16, 3, activation="relu")(x)
    x = layers.Conv2DTranspose(32, 3, activation="relu")(x)
    x = layers.UpSampling2D(3)(x)
    x = layers.Conv2DTranspose(16, 3, activation="relu")(x)
    decoder = keras.Model(decoder_input, layers.Conv2DTranspose(1, 3, activation="relu")(x))
    img = keras.Input(shape=(28, 28, 1), name="img")
    return keras.Model(img, decoder(encoder(img)), name="autoencoder")


def test_autoencoder_from_two_models_saves_and_loads(tmp_path):
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "decoder.yaml").write_text(DATA + DECODER)
    recipe = _recipe(AUTOENCODER, tmp_path)
    layers = recipe["model"]["functional"]["layers"]
    assert layers["decoder"]["name"] == "decoder" and "recipe" not in layers["decoder"]
    assert resolve(recipe.to_dict(), recipe.where) == recipe.to_dict()  # self-contained
    built = kk.build_model(recipe)
    hand = _guide_autoencoder()
    assert built.count_params() == hand.count_params()
    assert built.output_shape == hand.output_shape == (None, 28, 28, 1)
    assert [type(layer).__name__ for layer in built.layers[1:]] == ["Sequential", "Sequential"]
    x = np.random.default_rng(0).random((2, 28, 28, 1), "float32")
    before = built.predict(x, verbose=0)
    from kerakit.saving import load_model, save_model

    paths = save_model(built, tmp_path / "saved")
    loaded = load_model(paths["keras"])
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), before)
    assert [layer.name for layer in loaded.layers] == ["img", "encoder", "decoder"]
    # frozen after loading too (Keras 3.15 restores the flag on the encoder's layers only)
    assert loaded.get_layer("encoder").trainable_weights == []
    assert len(loaded.trainable_weights) == len(loaded.get_layer("decoder").weights) == 8


def test_inline_functional_model_as_a_layer_shares_its_weights():
    built = kk.build_model(
        _recipe("""
        model:
          functional:
            inputs: {a: [6], b: [6]}
            layers:
              tower:
                functional:
                  inputs: {t: [6]}
                  graph: [{h: {Dense: 4, in: t}}]
                  outputs: h
            graph:
              - ta: {use: tower, in: a}
              - tb: {use: tower, in: b}
              - out: {Concatenate: {}, in: [ta, tb]}
            outputs: out
        """)
    )
    assert built.get_layer("tower").count_params() == built.count_params() == 28


@pytest.mark.parametrize(
    ("files", "where", "message"),
    [
        (
            {"recipe.yaml": AUTOENCODER.replace("parts/decoder.yaml", "nowhere.yaml")},
            "model.functional.layers.decoder.recipe:",
            "no recipe file",
        ),
        (
            {"recipe.yaml": AUTOENCODER.replace("parts/decoder.yaml", "recipe.yaml")},
            "model.functional.layers.decoder.recipe:",
            "recipes name each other in a loop (recipe.yaml -> recipe.yaml)",
        ),
        (
            {
                "recipe.yaml": AUTOENCODER,
                "parts/decoder.yaml": DECODER.replace("  input_shape: [16]\n", ""),
            },
            "parts/decoder.yaml:4:1: model:",
            "a sequential model used as layer 'decoder' needs input_shape",
        ),
        (
            {
                "recipe.yaml": AUTOENCODER,
                "parts/decoder.yaml": DECODER.replace("Conv2DTranspose: {filters: 1,", "Dense: {"),
            },
            # found while building: at the layer's line, with the path into its model
            "recipe.yaml:16:7: model.functional.layers.decoder.sequential[5].Dense.kernel_size:",
            "Dense has no argument 'kernel_size'",
        ),
        (
            {"recipe.yaml": AUTOENCODER.replace("input_shape: [28, 28, 1]", "inputs: 3")},
            "model.functional.layers.encoder.inputs:",
            "unknown key 'inputs' in layer 'encoder' (a model) (did you mean 'input_shape'?)",
        ),
        (
            {"recipe.yaml": AUTOENCODER.replace("parts/decoder.yaml", "weights.h5")},
            "model.functional.layers.decoder.recipe:",
            "'weights.h5' is not a recipe: name a .yaml or .yml file",
        ),
    ],
    ids=["missing", "itself", "no_input_shape", "inner_error", "bad_key", "not_yaml"],
)
def test_model_layer_mistakes(tmp_path, files, where, message):
    (tmp_path / "parts").mkdir()
    for name, text in files.items():
        if name != "recipe.yaml":
            (tmp_path / name).write_text(DATA + text)
    text = _error(files["recipe.yaml"], tmp_path)
    assert where in text and message in text, text


# --------------------------------------------------------------------------- call arguments


def test_call_arguments_reach_the_layer():
    built = kk.build_model(
        _recipe("""
        model:
          functional:
            inputs: {x: [3, 2]}
            graph:
              - causal: {Attention: {}, in: [x, x], call: {use_causal_mask: true}}
              - full: {Attention: {}, in: [x, x]}
              - out: {Concatenate: {}, in: [causal, full]}
            outputs: out
        """)
    )
    x = np.array([[[1, 0], [0, 1], [1, 1]]], "float32")
    y = built.predict(x, verbose=0)
    np.testing.assert_allclose(y[0, 0, :2], x[0, 0])  # the first step sees only itself
    assert not np.allclose(y[0, 0, 2:], x[0, 0])


@pytest.mark.parametrize(
    ("call", "where", "message"),
    [
        (
            "{trainin: false}",
            "recipe.yaml:6:48: model.functional.graph[0].out.call.trainin:",
            "Dense takes no call argument 'trainin' (did you mean 'training'?); "
            "its call arguments: training",
        ),
        (
            "{use_causal_mask: [1, 2]}",
            "model.functional.graph[0].out.call.use_causal_mask:",
            "a call argument takes a plain value (true/false, a number, a string or null), "
            "got a list [1, 2]",
        ),
        ("[training]", "model.functional.graph[0].out.call:", "expected a mapping of call"),
        (
            "{training: false}",
            "model.functional.graph[0].out.call.training:",
            "a node's training: has no effect in Keras 3: fit, evaluate and predict pass their "
            "own training to every layer of the model. To keep a BatchNormalization or a model "
            "used as a layer in inference mode, give it `trainable: false`",
        ),
    ],
    ids=["unknown", "not_scalar", "not_mapping", "training"],
)
def test_call_argument_mistakes(tmp_path, call, where, message):
    text = _error(
        f"""
        model:
          functional:
            inputs: {{x: [4]}}
            graph:
              - out: {{Dense: 2, in: x, call: {call}}}
            outputs: out
        """,
        tmp_path,
    )
    assert where in text and message in text, text


# --------------------------------------------------------------------------- input dtypes


def test_input_dtypes_reach_keras_input():
    recipe = _recipe("""
        model:
          functional:
            inputs:
              tokens: {shape: [null], dtype: int32}
              flags: {shape: [3], dtype: bool}
              values: [3]
            graph:
              - emb: {Embedding: {input_dim: 50, output_dim: 4}, in: tokens}
              - pooled: {GlobalAveragePooling1D: {}, in: emb}
              - f: {Activation: linear, in: flags, call: {}}
              - fl: {Identity: {dtype: float32}, in: values}
              - out: {Concatenate: {}, in: [pooled, fl]}
              - out2: {Identity: {}, in: f}
            outputs: [out, out2]
        """)
    model = recipe["model"]["functional"]
    assert model["inputs"]["tokens"] == {"shape": [None], "dtype": "int32"}
    assert model["inputs"]["values"] == [3]
    assert "call" not in model["graph"][2]["f"]  # an empty call: is left out
    built = kk.build_model(recipe)
    dtypes = {t.name: t.dtype for t in built.inputs}
    assert dtypes == {"tokens": "int32", "flags": "bool", "values": "float32"}
    assert resolve(recipe.to_dict(), recipe.where) == recipe.to_dict()


def test_sequential_input_dtype():
    built = kk.build_model(
        _recipe("""
        model:
          input_shape: [5]
          input_dtype: int32
          sequential:
            - Embedding: {input_dim: 10, output_dim: 2}
            - Flatten
        """)
    )
    assert built.inputs[0].dtype == "int32" and built.output_shape == (None, 10)


@pytest.mark.parametrize(
    ("inputs", "where", "message"),
    [
        (
            "{t: {shape: [4], dtype: int23}}",
            "recipe.yaml:4:37: model.functional.inputs.t.dtype:",
            "unknown dtype 'int23' (did you mean 'int32' or 'int8' or 'uint8'?); choose one of: "
            "float16, float32, float64, bfloat16, int8, int16, int32, int64, uint8, bool, string",
        ),
        ("{t: {dtype: int32}}", "model.functional.inputs.t:", "missing required key 'shape'"),
        (
            "{t: {shape: [4], dtyp: int32}}",
            "model.functional.inputs.t.dtyp:",
            "unknown key 'dtyp' in an input (did you mean 'dtype'?)",
        ),
    ],
    ids=["dtype", "no_shape", "bad_key"],
)
def test_input_dtype_mistakes(tmp_path, inputs, where, message):
    text = _error(
        f"""
        model:
          functional:
            inputs: {inputs}
            graph: [{{out: {{Dense: 2, in: t}}}}]
            outputs: out
        """,
        tmp_path,
    )
    assert where in text and message in text, text
