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


# --------------------------------------------------------------------------- issue 17


SCHEDULES = {
    "CosineDecay": {"initial_learning_rate": 0.1, "decay_steps": "auto", "warmup_target": 0.2,
                    "warmup_steps": 4},
    "CosineDecayRestarts": {"initial_learning_rate": 0.1, "first_decay_steps": "auto"},
    "ExponentialDecay": {"initial_learning_rate": 0.1, "decay_steps": "auto", "decay_rate": 0.5},
    "InverseTimeDecay": {"initial_learning_rate": 0.1, "decay_steps": "auto", "decay_rate": 0.5},
    "PiecewiseConstantDecay": {"boundaries": [10, 20], "values": [0.1, 0.01, 0.001]},
    "PolynomialDecay": {"initial_learning_rate": 0.1, "decay_steps": "auto"},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_every_schedule_class_builds_by_name(name):
    from kerakit.models.names import schedule_names

    assert sorted(SCHEDULES) == schedule_names()  # every class of keras.optimizers.schedules
    model = _model(3, "softmax")
    optimizer = {"sgd": {"learning_rate": {name: SCHEDULES[name]}}}
    steps = {"epochs": 3, "per_epoch": 10, "why": "test"}
    section, notes = resolve_compile({"optimizer": optimizer}, model, steps=steps)
    kwargs = section["optimizer"]["sgd"]["learning_rate"][name]
    auto = [k for k, v in SCHEDULES[name].items() if v == "auto"]
    for key in auto:  # the run's 30 steps, less CosineDecay's 4 warm-up steps
        assert kwargs[key] == (26 if name == "CosineDecay" else 30)
        assert any(n.startswith(f"optimizer.sgd.learning_rate.{name}.{key}: ") for n in notes)
    kk.models.apply_compile(model, section)
    config = model.optimizer.get_config()["learning_rate"]
    assert config["class_name"] == name
    assert all(config["config"][k] == v for k, v in kwargs.items())


def test_a_schedule_is_checked_at_its_argument():
    model = _model(3, "softmax")
    bad = {
        "sgd": {"learning_rate": {"PiecewiseConstantDecay": {"boundaries": [10], "values": [1.0]}}}
    }
    with pytest.raises(RecipeError) as info:
        kk.compile_model(model, optimizer=bad)
    assert str(info.value).startswith(
        "optimizer.sgd.learning_rate.PiecewiseConstantDecay.boundaries: cannot create learning-rate "
        "schedule PiecewiseConstantDecay: The length of boundaries should be 1 less"
    )
    with pytest.raises(
        RecipeError,
        match=r"learning_rate\.ExponentialDecay\.decay_step: "
        r"ExponentialDecay has no argument 'decay_step' \(did you mean 'decay_steps'",
    ):
        kk.compile_model(model, optimizer={"sgd": {"learning_rate": {"ExponentialDecay": {
            "initial_learning_rate": 0.1, "decay_step": 10, "decay_rate": 0.5}}}})  # fmt: skip
    with pytest.raises(RecipeError, match=r"unknown learning-rate schedule 'CosineDecy' "
                       r"\(did you mean 'CosineDecay' or"):  # fmt: skip
        kk.compile_model(model, optimizer={"adam": {"learning_rate": {"CosineDecy": {}}}})
    with pytest.raises(RecipeError, match=r"decay_steps: 'auto' is the number of training steps"):
        kk.compile_model(model, optimizer={"adam": {"learning_rate": {"CosineDecay": {
            "initial_learning_rate": 0.1, "decay_steps": "auto"}}}})  # fmt: skip


def test_objects_wherever_a_name_is_accepted():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    opt = keras.optimizers.SGD(learning_rate=schedule)
    auc = keras.metrics.AUC(name="auc")
    model = kk.compile_model(_model(1, "sigmoid"), optimizer=opt,
                             loss=keras.losses.BinaryCrossentropy(), metrics=["acc", auc])  # fmt: skip
    assert model.optimizer is opt and model.optimizer.learning_rate is not None
    # a schedule object as the learning rate of an optimizer by name
    model = kk.compile_model(_model(1, "sigmoid"), optimizer={"adam": {"learning_rate": schedule}})
    logs = model.fit(np.ones((4, 4)), np.array([0, 1, 1, 0]), verbose=0).history
    assert set(logs) == {"loss", "accuracy", "precision", "recall", "auc"}


def test_an_object_is_recorded_as_a_recipe_writes_it():
    from kerakit.models.names import as_recipe_value

    schedule = keras.optimizers.schedules.CosineDecay(0.0, 100, warmup_target=0.1, warmup_steps=5)
    assert as_recipe_value(keras.optimizers.Adam(learning_rate=schedule, beta_1=0.8)) == {
        "Adam": {"learning_rate": {"CosineDecay": {"initial_learning_rate": 0.0, "decay_steps": 100,
                                                   "warmup_target": 0.1, "warmup_steps": 5}},
                 "beta_1": 0.8}}  # fmt: skip
    assert as_recipe_value(keras.optimizers.SGD(0.01)) == {"SGD": {"learning_rate": 0.01}}
    loss = keras.losses.BinaryCrossentropy(label_smoothing=0.1)
    assert as_recipe_value(loss) == {"BinaryCrossentropy": {"label_smoothing": 0.1}}
    assert as_recipe_value(keras.losses.mean_squared_error) == "mean_squared_error"


@keras.saving.register_keras_serializable(package="kerakit_tests")
class CustomMSE(keras.losses.Loss):
    def __init__(self, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale

    def call(self, y_true, y_pred):
        return self.scale * keras.ops.mean(keras.ops.square(y_true - y_pred), axis=-1)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="kerakit_tests")
class MeanPrediction(keras.metrics.Mean):
    def __init__(self, name="mean_prediction", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(y_pred, sample_weight)


@keras.saving.register_keras_serializable(package="kerakit_tests")
def half_mae(y_true, y_pred):
    return 0.5 * keras.ops.mean(keras.ops.abs(y_true - y_pred), axis=-1)


@pytest.mark.parametrize(
    "loss,metrics",
    [
        ("CustomMSE", ["MeanPrediction"]),
        ("kerakit_tests>CustomMSE", ["kerakit_tests>MeanPrediction"]),
        ({"CustomMSE": {"scale": 2.0}}, [{"MeanPrediction": {"name": "mp"}}, "half_mae"]),
    ],
)
def test_registered_losses_and_metrics_by_name(loss, metrics):
    model = kk.compile_model(_model(1, None), "regression", loss=loss, metrics=metrics)
    logs = model.fit(np.ones((4, 4)), np.ones(4), verbose=0).history
    assert isinstance(model.loss, CustomMSE)
    assert model.loss.scale == (2.0 if isinstance(loss, dict) else 1.0)
    expected = {"mp", "half_mae"} if isinstance(loss, dict) else {"mean_prediction"}
    assert set(logs) == {"loss"} | expected


def test_the_names_kerass_compile_resolves_itself():
    """keras/src/trainers/compile_utils.py: 'acc'/'accuracy' and 'ce'/'crossentropy' in any
    case; logged under the name written."""
    from kerakit.recipe.keras_index import COMPILE_ALIASES

    assert COMPILE_ALIASES == {"metric": ["accuracy", "acc"], "loss": ["crossentropy", "ce"]}
    model = kk.compile_model(_model(3, "softmax"), loss="CE", metrics=["acc", "ACC", "Accuracy"])
    logs = model.fit(np.ones((4, 4)), np.array([0, 1, 2, 1]), verbose=0).history
    assert set(logs) == {"loss", "acc", "ACC", "Accuracy"}
    with pytest.raises(RecipeError, match="unknown metric 'accc' \\(did you mean 'acc"):
        kk.compile_model(_model(3, "softmax"), metrics=["accc"])


LOGITS = [
    # units, activation, loss, preset, logged metric names, labels
    (10, None, {"SparseCategoricalCrossentropy": {"from_logits": True}}, "multiclass",
     ["accuracy"], np.array([0, 1, 2, 9])),
    (10, None, {"CategoricalCrossentropy": {"from_logits": True}}, "multiclass_onehot",
     ["accuracy"], np.eye(10)[[0, 1, 2, 9]]),
    (1, None, {"BinaryCrossentropy": {"from_logits": True}}, "binary",
     ["accuracy", "precision", "recall", "auc"], np.array([0, 1, 1, 0])),
    (3, None, {"BinaryFocalCrossentropy": {"from_logits": True}}, "multilabel",
     ["binary_accuracy", "auc"], np.array([[0, 1, 1], [1, 0, 0], [1, 1, 0], [0, 0, 1]])),
    (10, "softmax", "sparse_categorical_crossentropy", "multiclass", ["accuracy"],
     np.array([0, 1, 2, 9])),
    (1, "sigmoid", {"BinaryCrossentropy": {}}, "binary", ["accuracy", "precision", "recall", "auc"],
     np.array([0, 1, 1, 0])),
    (1, None, "mse", "regression", ["mae"], np.array([0.5, 1.0, -1.0, 2.0])),
    (4, "relu", "huber", "regression", ["mae"], np.ones((4, 4))),
]  # fmt: skip


@pytest.mark.parametrize("units,activation,loss,preset,names,y", LOGITS)
def test_the_loss_decides_the_preset_before_the_output_layer(
    units, activation, loss, preset, names, y
):
    model = _model(units, activation)
    section, notes = resolve_compile({"loss": loss}, model)
    assert section["preset"] == preset and notes[0].startswith(f"compile preset: {preset} (")
    if preset != "regression":
        assert (
            f"(inferred from the loss {next(iter(loss)) if isinstance(loss, dict) else loss}"
            in notes[0]
        )
    logits = isinstance(loss, dict) and next(iter(loss.values())).get("from_logits")
    if logits and preset in ("binary", "multilabel"):  # thresholds at logit 0
        assert section["metrics"] == PRESETS[preset]["logits_metrics"]
    kk.models.apply_compile(model, section)
    x = np.array([[1, 0, 0, 0], [0, 3, 0, 0], [0, 0, -2, 0], [0, 0, 0, 1]], "float32")
    logs = model.fit(x, y.astype("float32"), epochs=1, verbose=0).history
    assert sorted(logs) == sorted(["loss", *names])


def test_logits_metrics_read_logits():
    """Binary logits: the preset's metrics at logit 0 agree with probabilities at 0.5."""
    model = _model(1, None)
    kk.compile_model(model, loss=keras.losses.BinaryCrossentropy(from_logits=True))
    model.set_weights([np.array([[1.0], [0.0], [0.0], [0.0]]), np.array([0.0])])
    x = np.array([[-2, 0, 0, 0], [3, 0, 0, 0], [-1, 0, 0, 0], [0.5, 0, 0, 0]], "float32")
    got = model.evaluate(x, np.array([0, 1, 1, 0.0]), verbose=0, return_dict=True)
    assert got["accuracy"] == pytest.approx(0.5) and got["precision"] == pytest.approx(0.5)
    assert got["recall"] == pytest.approx(0.5) and got["auc"] == pytest.approx(0.75)


def test_a_mismatched_head_is_said():
    _, notes = resolve_compile({"loss": "sparse_categorical_crossentropy"}, _model(10, None))
    assert (
        "but the output layer's activation is 'linear': give the loss from_logits: true" in notes[0]
    )
    loss = {"SparseCategoricalCrossentropy": {"from_logits": True}}
    _, notes = resolve_compile({"loss": loss}, _model(10, "softmax"))
    assert "but the output layer's softmax gives probabilities, not logits" in notes[0]


def test_a_huber_delta_is_recorded_and_saved(tmp_path):
    """Keras 3.15.1 leaves delta out of Huber's config (kerakit._compat.loss_config)."""
    from kerakit.models.names import as_recipe_value

    loss = keras.losses.Huber(delta=2.0)
    assert as_recipe_value(loss) == {"Huber": {"delta": 2.0}}
    assert as_recipe_value(keras.losses.CosineSimilarity(axis=1)) == {
        "CosineSimilarity": {"axis": 1}
    }
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, kernel_initializer="zeros")])
    kk.compile_model(model, optimizer="sgd", loss=loss, metrics=[])
    kk.save_model(model, tmp_path)
    again = kk.load_model(tmp_path / "model.keras")
    x, y = np.zeros((2, 1), "float32"), np.full((2, 1), 4.0, "float32")
    assert again.evaluate(x, y, verbose=0, return_dict=True)["loss"] == pytest.approx(
        6.0
    )  # 1.0: 3.5
