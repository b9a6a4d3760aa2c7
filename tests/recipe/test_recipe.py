"""Recipe loading: the hardened YAML reader, the schema, overrides, round trips."""

import math
import subprocess
import sys

import pytest
from conftest import CONFIGS

import kerakit as kk
from kerakit.errors import KerakitError, RecipeError
from kerakit.recipe import load_recipe, parse_key_path
from kerakit.recipe.reader import dump_yaml, load_yaml

GOOD = """
name: t
data: {source: digits}
model:
  input_shape: [8, 8, 1]
  sequential:
    - Flatten
    - Dense: {units: 10, activation: softmax}
"""


def test_error_types_subclass_builtins():
    assert issubclass(RecipeError, KerakitError) and issubclass(RecipeError, ValueError)
    assert kk.RecipeError is RecipeError


def test_yaml_12_numbers_and_no_silent_booleans():
    value, _ = load_yaml("lr: 1e-3\nflag: NO\ntime: 1:30\nyes_: yes\nn: .nan\nh: 0x1f\n")
    assert value["lr"] == 0.001 and isinstance(value["lr"], float)
    assert value["flag"] == "NO" and value["time"] == "1:30" and value["yes_"] == "yes"
    assert math.isnan(value["n"]) and value["h"] == 31


def test_positions_are_recorded():
    _, pos = load_yaml("a:\n  b:\n    - 1\n    - {c: 2}\n")
    assert pos[("a",)] == (1, 1)
    assert pos[("a", "b")] == (2, 3)
    assert pos[("a", "b", 1, "c")] == (4, 11)  # a scalar: its value's column


def test_dump_round_trips_tricky_strings():
    value = {"a": "yes", "b": "1e-3", "c": 1e-3, "d": "null", "e": [1, "2"], "f": float("inf")}
    back, _ = load_yaml(dump_yaml(value))
    assert back == value


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_config_resolves_and_round_trips(config, tmp_path):
    recipe = load_recipe(config)
    assert recipe["model"] and recipe["data"]["source"]
    dumped = tmp_path / config.name
    dumped.write_text(recipe.to_yaml())
    again = load_recipe(dumped)
    # relative data paths are kept as written, so compare everything
    assert again.to_dict() == recipe.to_dict()
    assert again.fingerprint() == recipe.fingerprint()


def test_defaults_are_filled(write_recipe):
    recipe = load_recipe(write_recipe(GOOD))
    assert recipe["train"]["epochs"] == 10
    assert recipe["train"]["precision"] == "auto"
    assert recipe["output"] == {"dir": "runs", "formats": ["keras"]}
    assert recipe["compile"]["preset"] == "auto"
    assert recipe["seed"] == 42


def test_preset_fills_compile(write_recipe):
    recipe = load_recipe(write_recipe(GOOD + "compile: {preset: binary, optimizer: sgd}\n"))
    c = recipe["compile"]
    assert c["optimizer"] == "sgd"  # given: overrides the preset
    assert c["loss"] == "binary_crossentropy"
    assert c["metrics"] == ["accuracy", "precision", "recall", "auc"]


def test_overrides_are_typed_like_yaml(write_recipe):
    path = write_recipe(GOOD)
    recipe = load_recipe(
        path,
        overrides=[
            "train.epochs=3",
            "model.sequential[1].Dense.units=12",
            "compile.optimizer={adam: {learning_rate: 1e-4}}",
        ],
    )
    assert recipe["train"]["epochs"] == 3
    assert recipe["model"]["sequential"][1] == {"Dense": {"units": 12, "activation": "softmax"}}
    assert recipe["compile"]["optimizer"] == {"adam": {"learning_rate": 0.0001}}


def test_override_errors_name_the_flag(write_recipe):
    with pytest.raises(RecipeError) as info:
        load_recipe(write_recipe(GOOD), overrides=["train.epochs=many"])
    assert str(info.value).startswith("--set train.epochs=many: train.epochs: expected an integer")
    with pytest.raises(RecipeError, match="KEY=VALUE"):
        load_recipe(write_recipe(GOOD), overrides=["train.epochs"])
    with pytest.raises(RecipeError, match=r"no item \[7\]"):
        load_recipe(write_recipe(GOOD), overrides=["model.sequential[7].Dense.units=3"])


def test_parse_key_path():
    assert parse_key_path("model.sequential[2].Dense.units") == (
        "model",
        "sequential",
        2,
        "Dense",
        "units",
    )


def test_mapping_recipe_and_recipe_passthrough():
    recipe = load_recipe({"data": {"source": "digits"}, "model": {"sequential": ["Flatten"]}})
    assert recipe.file is None and recipe.name == "recipe"
    again = load_recipe(recipe, overrides={"train.epochs": 2})
    assert again["train"]["epochs"] == 2


def test_recipe_layer_imports_no_tensorflow(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {source: digits}\nmodle: {}\n")
    code = (
        "import sys, kerakit\n"
        "from kerakit.cli import main\n"
        f"rc = main(['check', {str(bad)!r}])\n"
        "assert rc == 2, rc\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
        "assert 'keras' not in sys.modules, 'keras was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "did you mean 'model'" in proc.stderr


# A table of bad recipes: (id, text, expected "LINE:COL" or None, key path, words in the message)
BASE_DATA = "data: {source: digits}\n"
BAD = [
    ("not_yaml", "data: [digits\nmodel: {}\n", "2:6", None, "not valid YAML"),
    ("tab_indent", "data:\n\tsource: digits\n", "2:1", None, "not valid YAML"),
    (
        "duplicate_key",
        BASE_DATA + "model: {sequential: [Flatten]}\nmodel: {}\n",
        "3:1",
        "model",
        "duplicate key 'model' (first at line 2)",
    ),
    (
        "python_tag",
        BASE_DATA + "model: !!python/object/apply:os.system ['echo hi']\n",
        "2:8",
        "model",
        "never run code",
    ),
    ("custom_tag", BASE_DATA + "model: !Ref x\n", "2:8", "model", "not allowed"),
    ("empty", "", None, None, "empty"),
    ("top_level_list", "- data\n", "1:1", None, "expected a mapping"),
    ("unknown_section", BASE_DATA + "modle: {}\n", "2:1", "modle", "did you mean 'model'"),
    ("missing_model", BASE_DATA, "1:1", None, "missing required key 'model'"),
    (
        "two_model_kinds",
        BASE_DATA + "model:\n  sequential: [Flatten]\n  functional: {}\n",
        "2:1",
        "model",
        "exactly one of",
    ),
    ("no_model_kind", BASE_DATA + "model: {input_shape: [3]}\n", "2:1", "model", "exactly one of"),
    (
        "sequential_not_list",
        BASE_DATA + "model: {sequential: Dense}\n",
        "2:21",
        "model.sequential",
        "expected a list of layers",
    ),
    (
        "two_layers_in_entry",
        BASE_DATA + "model:\n  sequential:\n    - {Dense: {units: 3}, Flatten: {}}\n",
        "4:7",
        "model.sequential[0]",
        "exactly one layer class",
    ),
    (
        "bad_input_shape",
        BASE_DATA + "model:\n  input_shape: [8, -1]\n  sequential: [Flatten]\n",
        "3:20",
        "model.input_shape[1]",
        "positive integer",
    ),
    (
        "bad_seed",
        "seed: abc\n" + BASE_DATA + "model: {sequential: [Flatten]}\n",
        "1:7",
        "seed",
        "expected an integer",
    ),
    (
        "epochs_zero",
        BASE_DATA + "model: {sequential: [Flatten]}\ntrain: {epochs: 0}\n",
        "3:17",
        "train.epochs",
        "out of range",
    ),
    (
        "epochs_string",
        BASE_DATA + "model: {sequential: [Flatten]}\ntrain: {epochs: '5'}\n",
        "3:17",
        "train.epochs",
        "without quotes",
    ),
    (
        "unknown_train_key",
        BASE_DATA + "model: {sequential: [Flatten]}\ntrain: {epoch: 3}\n",
        "3:16",
        "train.epoch",
        "did you mean 'epochs'",
    ),
    (
        "bad_preset",
        BASE_DATA + "model: {sequential: [Flatten]}\ncompile: {preset: multclass}\n",
        "3:19",
        "compile.preset",
        "did you mean 'multiclass'",
    ),
    (
        "lr_nan",
        BASE_DATA
        + "model: {sequential: [Flatten]}\ncompile: {optimizer: {adam: {learning_rate: .nan}}}\n",
        "3:45",
        "compile.optimizer.adam.learning_rate",
        "finite",
    ),
    (
        "lr_negative",
        BASE_DATA
        + "model: {sequential: [Flatten]}\ncompile: {optimizer: {sgd: {learning_rate: -0.1}}}\n",
        "3:44",
        "compile.optimizer.sgd.learning_rate",
        "out of range",
    ),
    (
        "bad_precision",
        BASE_DATA + "model: {sequential: [Flatten]}\ntrain: {precision: bf16}\n",
        "3:20",
        "train.precision",
        "choose one of",
    ),
    (
        "bad_format",
        BASE_DATA + "model: {sequential: [Flatten]}\noutput: {formats: [keras, onnxx]}\n",
        "3:27",
        "output.formats[1]",
        "unknown format 'onnxx'",
    ),
    (
        "name_escapes",
        "name: ../../etc\n" + BASE_DATA + "model: {sequential: [Flatten]}\n",
        "1:7",
        "name",
        "no '/', '..'",
    ),
    (
        "deterministic_yes",
        "deterministic: yes\n" + BASE_DATA + "model: {sequential: [Flatten]}\n",
        "1:16",
        "deterministic",
        "expected true or false",
    ),
    (
        "functional_undefined_node",
        BASE_DATA
        + """model:
  functional:
    inputs: {x: [4]}
    graph:
      - h: {Dense: {units: 3}, in: x}
      - out: {Dense: {units: 2}, in: hh}
    outputs: out
""",
        "7:38",
        "model.functional.graph[1].out.in",
        "neither an input nor a node (did you mean 'h'",
    ),
    (
        "functional_cycle",
        BASE_DATA
        + """model:
  functional:
    inputs: {x: [4]}
    graph:
      - a: {Dense: {units: 3}, in: [x, b]}
      - b: {Dense: {units: 3}, in: a}
      - out: {Dense: {units: 2}, in: b}
    outputs: out
""",
        "6:9",
        "model.functional.graph[0].a",
        "cycle: a -> b -> a",
    ),
    (
        "functional_unused_input",
        BASE_DATA
        + """model:
  functional:
    inputs: {x: [4], meta: [2]}
    graph:
      - out: {Dense: {units: 2}, in: x}
    outputs: out
""",
        "4:22",
        "model.functional.inputs.meta",
        "does not lead to any output",
    ),
    (
        "functional_bad_output",
        BASE_DATA
        + """model:
  functional:
    inputs: {x: [4]}
    graph:
      - out: {Dense: {units: 2}, in: x}
    outputs: [outt]
""",
        "7:15",
        "model.functional.outputs[0]",
        "did you mean 'out'",
    ),
    (
        "functional_unknown_shared",
        BASE_DATA
        + """model:
  functional:
    inputs: {x: [4]}
    graph:
      - out: {use: enc, in: x}
    outputs: out
""",
        "6:20",
        "model.functional.graph[0].out.use",
        "no shared layer named 'enc'",
    ),
    (
        "functional_missing_in",
        BASE_DATA
        + """model:
  functional:
    inputs: {x: [4]}
    graph:
      - out: {Dense: {units: 2}}
    outputs: out
""",
        "6:9",
        "model.functional.graph[0].out",
        "has no `in:`",
    ),
    (
        "unknown_data_source",
        "data: {source: imagenet}\nmodel: {sequential: [Flatten]}\n",
        "1:16",
        "data.source",
        None,
    ),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_recipes_give_precise_errors(case, write_recipe):
    _, text, linecol, path, words = case
    file = write_recipe(text) if text else write_recipe("")
    with pytest.raises(RecipeError) as info:
        load_recipe(file)
    message = str(info.value)
    assert message.startswith(str(file)), message
    if linecol:
        assert message.startswith(f"{file}:{linecol}:"), message
    if path:
        assert f": {path}: " in message, message
    if words:
        assert words in message, message


def test_alias_bomb_and_deep_nesting_are_refused(write_recipe):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefg", "bcdefgh")
    )
    with pytest.raises(RecipeError, match="alias bomb"):
        load_recipe(write_recipe(bomb))
    with pytest.raises(RecipeError, match="nested"):
        load_recipe(write_recipe("a: " + "[" * 5000 + "]" * 5000 + "\n"))


def test_invalid_utf8_is_located(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_bytes(b"data: {source: digits}\nname: caf\xe9\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert str(info.value).startswith(f"{path}:2:10:") and "UTF-8" in str(info.value)


def test_missing_file():
    with pytest.raises(RecipeError, match="not found"):
        load_recipe("no/such/recipe.yaml")


# ---------------------------------------------------------------- names and class weights


@pytest.mark.parametrize("name", ["abc\n", "a" * 101, "a/b", ".."])
def test_run_names_that_cannot_name_a_folder_are_refused(name):
    with pytest.raises(RecipeError, match="cannot be a run name"):
        load_recipe(
            {"name": name, "data": {"source": "digits"}, "model": {"sequential": ["Flatten"]}}
        )


@pytest.mark.parametrize("key", ["abc", -1, True])
def test_class_weight_keys_are_class_indices(key):
    recipe = {"data": {"source": "digits"}, "model": {"sequential": ["Flatten"]},
              "train": {"class_weight": {key: 1.0}}}  # fmt: skip
    with pytest.raises(RecipeError, match="class_weight keys are class indices"):
        load_recipe(recipe)


# ---------------------------------------------------------------- issue 17: compile


SCHEDULE = """
data: {source: digits}
model: {sequential: [Flatten, {Dense: {units: 10}}]}
compile:
  optimizer:
    adam:
      learning_rate:
        %s
"""


@pytest.mark.parametrize(
    "schedule,linecol,path,words",
    [
        ("CosineDecay: {initial_learning_rate: 0.1, decay_steps: atuo}", "7:64",
         "CosineDecay.decay_steps", "expected 'auto' or a number of steps, got a string 'atuo'"),
        ("ExponentialDecay: {initial_learning_rate: '0.1'}", "7:51",
         "ExponentialDecay.initial_learning_rate", "(write it without quotes)"),
        ("CosineDecay: {initial_learning_rate: -0.1}", "7:46", "CosineDecay.initial_learning_rate",
         "-0.1 is out of range"),
        ("PiecewiseConstantDecay: {boundaries: [10, x], values: [1, 2, 3]}", "7:51",
         "PiecewiseConstantDecay.boundaries[1]", "expected a number"),
        ("PolynomialDecay: {initial_learning_rate: 0.1, decay_steps: 10, cycle: yes}", "7:79",
         "PolynomialDecay.cycle", "expected true or false"),
        ("{CosineDecay: {}, ExponentialDecay: {}}", "6:7", "learning_rate",
         "expected a number or one schedule of keras.optimizers.schedules"),
        ("CosineDecay: [0.1, 10]", "7:9", "CosineDecay", "the keyword arguments of 'CosineDecay'"),
    ],
)  # fmt: skip
def test_a_schedules_numbers_are_checked_without_tensorflow(schedule, linecol, path, words,
                                                            write_recipe):  # fmt: skip
    file = write_recipe(SCHEDULE % schedule)
    with pytest.raises(RecipeError) as info:
        load_recipe(file)
    message = str(info.value)
    assert message.startswith(f"{file}:{linecol}: compile.optimizer.adam.learning_rate"), message
    assert f".{path}: " in message or f": compile.optimizer.adam.{path}: " in message, message
    assert words in message, message


def test_a_schedule_and_the_python_note_load_and_round_trip(write_recipe):
    file = write_recipe(
        SCHEDULE % "CosineDecay: {initial_learning_rate: 0, decay_steps: auto, warmup_target: 1e-3,"
        " warmup_steps: 10}" + "  from_python: [optimizer]\n"
    )
    recipe = load_recipe(file)
    rate = recipe["compile"]["optimizer"]["adam"]["learning_rate"]
    assert rate == {"CosineDecay": {"initial_learning_rate": 0, "decay_steps": "auto",
                                    "warmup_target": 0.001, "warmup_steps": 10}}  # fmt: skip
    assert recipe["compile"]["from_python"] == ["optimizer"]
    assert load_recipe(recipe.to_dict()).to_dict() == recipe.to_dict()
    with pytest.raises(RecipeError, match="compile.from_python: expected a list of optimizer"):
        load_recipe({**recipe.to_dict(), "compile": {"from_python": ["model"]}})


def test_a_classification_loss_says_the_preset_and_its_metrics():
    from kerakit.recipe.compile import PRESETS, infer_preset_name, loss_preset

    sparse = {"SparseCategoricalCrossentropy": {"from_logits": True}}
    assert loss_preset(sparse) == ("multiclass", True, "SparseCategoricalCrossentropy")
    assert loss_preset("binary_crossentropy") == ("binary", False, "binary_crossentropy")
    assert loss_preset({"a": "mse", "b": "bce"})[0] is None  # by output
    assert loss_preset("ce")[0] is None  # Keras's compile decides by the shapes
    assert infer_preset_name(None, 1, {"BCE": {"from_logits": True}})[0] == "binary"
    assert (
        infer_preset_name(None, 4, {"BinaryCrossentropy": {"from_logits": True}})[0] == "multilabel"
    )
    assert infer_preset_name("softmax", 3, "mse")[0] == "multiclass"  # the layer decides
    recipe = load_recipe({"data": {"source": "digits"}, "model": {"sequential": ["Flatten"]},
                          "compile": {"preset": "binary", "loss": {"BCE": {"from_logits": True}}}})  # fmt: skip
    assert recipe["compile"]["metrics"] == PRESETS["binary"]["logits_metrics"]


@pytest.fixture(scope="module")
def keras_names():
    """The checks of the index of the installed Keras (built here: imports Keras)."""
    from kerakit.recipe.keras_index import build_index
    from kerakit.recipe.keras_names import KerasNames

    index = build_index()
    return index, KerasNames(index)


@pytest.mark.slow  # TensorFlow's import, when no test before it imported it
def test_the_index_knows_schedules_and_the_names_compile_takes(keras_names):
    import keras

    from kerakit.errors import Where
    from kerakit.models.names import accepted_arguments, schedule_names

    index, names = keras_names
    assert index["format"] == 2 and index["schedule"]["known"] == schedule_names()
    for n, info in index["schedule"]["classes"].items():
        assert info["args"] == accepted_arguments(getattr(keras.optimizers.schedules, n)), n
    assert set(index["layers"]["registered"]) <= {"AugmentLayer", "BackbonePreprocess"}
    w = Where(path=("compile", "metrics", 0))
    for ok in ("acc", "ACC", "Accuracy", "accuracy"):
        names.check_name("metric", ok, w)
    for ok in ("ce", "CrossEntropy", "CustomMSE", "mypkg>CustomMSE", "my_own_loss"):
        names.check_name("loss", ok, w)  # Keras's compile takes it, or it may be registered
    names.check_name("loss", {"CustomMSE": {"scale": 2}}, w)
    for kind, value, message in [
        ("metric", "acuracy", "unknown metric 'acuracy' (did you mean 'accuracy'"),
        ("loss", "msee", "unknown loss 'msee' (did you mean 'mse'"),
        ("schedule", {"ExponentialDecy": {}}, "compile.metrics[0].ExponentialDecy: unknown "
         "learning-rate schedule 'ExponentialDecy' (did you mean 'ExponentialDecay'"),
        ("schedule", {"ExponentialDecay": {"decay_step": 3}}, "ExponentialDecay has no argument "
         "'decay_step' (did you mean 'decay_steps'"),
    ]:  # fmt: skip
        with pytest.raises(RecipeError) as info:
            names.check_name(kind, value, w)
        assert message in str(info.value), str(info.value)
    names.check_name("schedule", {"MyWarmup": {"steps": 3}}, w)  # may be registered
    names.check_name("schedule", {"CosineDecay": {"decay_steps": "auto"}}, w)
