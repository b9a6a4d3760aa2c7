"""Issue 17 end to end: learning-rate schedules by name (`decay_steps: auto`, the rate
logged each epoch), Keras objects given to `kk.train`, the names Keras's compile takes
itself, and logits heads, through real runs on scikit-learn's digits."""

import csv
import math

import keras
import numpy as np
import pytest

import kerakit as kk
from kerakit.errors import RecipeError

BATCH = 128  # 1,258 training examples of digits: 10 steps per epoch


def _recipe(tmp_path, optimizer="adam", *, callbacks="minimal", epochs=2, **compile_):
    return {
        "name": "schedules",
        "data": {"source": "digits", "batch_size": BATCH},
        "model": {"input_shape": [8, 8, 1],
                  "sequential": ["Flatten", {"Dense": {"units": 10, "activation": "softmax"}}]},
        "compile": {"optimizer": optimizer, **compile_},
        "train": {"epochs": epochs, "callbacks": callbacks},
        "output": {"dir": str(tmp_path)},
    }  # fmt: skip


def _history(run) -> dict:
    with open(run.path / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: [float(r[k]) for r in rows] for k in rows[0]}


@pytest.mark.slow
@pytest.mark.parametrize(
    "callbacks,schedule",
    [
        ("minimal", {"ExponentialDecay": {"initial_learning_rate": 0.05, "decay_steps": 3,
                                          "decay_rate": 0.5}}),
        ("standard", {"CosineDecay": {"initial_learning_rate": 0.0, "decay_steps": "auto",
                                      "warmup_target": 0.05, "warmup_steps": 4}}),
    ],
)  # fmt: skip
def test_a_schedule_by_name_trains_and_logs_the_rate_it_gives(tmp_path, callbacks, schedule):
    run = kk.train(_recipe(tmp_path, {"adam": {"learning_rate": schedule}}, callbacks=callbacks),
                   verbose=0, print_fn=lambda *_: None)  # fmt: skip
    ((name, args),) = run.recipe["compile"]["optimizer"]["adam"]["learning_rate"].items()
    if name == "CosineDecay":
        assert args["decay_steps"] == 2 * 10 - 4  # the run's 20 steps, less the warm-up
    # the schedule evaluated at the steps taken by each epoch's end: 10, 20
    rebuilt = getattr(keras.optimizers.schedules, name)(**args)
    expected = [float(rebuilt(10 * (epoch + 1))) for epoch in range(2)]
    assert _history(run)["learning_rate"] == pytest.approx(expected, rel=1e-6)
    assert run.history["learning_rate"] == pytest.approx(expected, rel=1e-6)
    assert float(run.model.optimizer.learning_rate) == pytest.approx(expected[-1], rel=1e-6)
    names = [next(iter(entry)) for entry in run.recipe["train"]["callbacks"]]
    assert names[0] == "kerakit>LearningRateLog" and "ReduceLROnPlateau" not in names
    assert (run.path / "history.png").is_file()
    resolved = kk.load_recipe(run.path / "recipe.resolved.yaml")
    assert resolved["compile"]["optimizer"] == run.recipe["compile"]["optimizer"]


def test_check_prints_what_decay_steps_auto_comes_to(tmp_path):
    schedule = {"CosineDecayRestarts": {"initial_learning_rate": 0.1, "first_decay_steps": "auto"}}
    lines: list[str] = []
    kk.check(_recipe(tmp_path, {"sgd": {"learning_rate": schedule}}, epochs=3),
             print_fn=lines.append)  # fmt: skip
    assert (
        "compile.optimizer.sgd.learning_rate.CosineDecayRestarts.first_decay_steps: 30 "
        "(auto: 3 epochs x 10 steps per epoch; 1,258 training examples in batches of 128)"
    ) in lines
    assert "callbacks: kerakit>LearningRateLog logs the scheduled learning_rate each epoch" in lines
    # a misspelled schedule, and a number that is not one, at their line and key path
    bad = _recipe(tmp_path, {"sgd": {"learning_rate": {"CosineDecy": {}}}})
    with pytest.raises(RecipeError, match=r"learning_rate\.CosineDecy: unknown learning-rate "
                       r"schedule 'CosineDecy' \(did you mean 'CosineDecay'"):  # fmt: skip
        kk.check(bad, print_fn=lines.append)
    bad = _recipe(tmp_path, {"sgd": {"learning_rate": {"CosineDecay": {"decay_steps": "many"}}}})
    with pytest.raises(RecipeError, match=r"CosineDecay\.decay_steps: expected 'auto' or a "
                       r"number of steps, got a string 'many'"):  # fmt: skip
        kk.check(bad, print_fn=lines.append)


def test_objects_given_to_train_replace_the_recipes_and_are_recorded(tmp_path):
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=5, decay_rate=0.5)
    optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=0.9)
    top3 = keras.metrics.SparseTopKCategoricalAccuracy(k=3, name="top3")
    lines: list[str] = []
    run = kk.train(_recipe(tmp_path, "rmsprop", loss="mse", epochs=1), verbose=0,
                   optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(),
                   metrics=["acc", top3], print_fn=lines.append)  # fmt: skip
    assert run.model.optimizer is optimizer
    assert {"acc", "top3", "learning_rate", "val_acc"} <= set(run.history)
    assert run.history["learning_rate"] == pytest.approx([0.1 * 0.5 ** (10 / 5)])
    stored = kk.load_recipe(run.path / "recipe.resolved.yaml")["compile"]
    assert stored["optimizer"] == {
        "SGD": {
            "learning_rate": {
                "ExponentialDecay": {
                    "initial_learning_rate": 0.1,
                    "decay_steps": 5,
                    "decay_rate": 0.5,
                }
            },
            "momentum": 0.9,
        }
    }
    assert stored["loss"] == {"SparseCategoricalCrossentropy": {}}
    assert stored["metrics"] == ["acc", {"SparseTopKCategoricalAccuracy": {
        "name": "top3", "dtype": "float32", "k": 3}}]  # fmt: skip
    assert stored["from_python"] == ["loss", "metrics", "optimizer"]
    assert any(line.startswith("compile.optimizer: given in Python, recorded") for line in lines)
    # the record builds the same objects again
    again = keras.models.clone_model(run.model)
    kk.models.apply_compile(again, stored)
    assert isinstance(again.optimizer, keras.optimizers.SGD)
    assert again.optimizer.get_config()["learning_rate"] == optimizer.get_config()["learning_rate"]
    # a name given in Python is checked as the recipe's, and said to come from Python
    with pytest.raises(RecipeError, match=r"^kk\.train\(optimizer=\.\.\.\): compile\.optimizer\."
                       r"adam\.learning_rate: expected a positive number"):  # fmt: skip
        kk.train(_recipe(tmp_path), optimizer={"adam": {"learning_rate": "fast"}}, verbose=0)


@keras.saving.register_keras_serializable(package="kerakit_e2e")
class ScaledMSE(keras.losses.Loss):
    def call(self, y_true, y_pred):
        return keras.ops.mean(keras.ops.square(y_true - y_pred), axis=-1)


@keras.saving.register_keras_serializable(package="kerakit_e2e")
class MeanOutput(keras.metrics.Mean):
    def __init__(self, name="mean_output", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(y_pred, sample_weight)


def test_a_logits_head_with_acc_and_registered_names_in_a_recipe(tmp_path):
    recipe = _recipe(tmp_path, {"adam": {"learning_rate": 0.05}}, epochs=2,
                     loss={"SparseCategoricalCrossentropy": {"from_logits": True}},
                     metrics=["acc", "kerakit_e2e>MeanOutput"])  # fmt: skip
    recipe["model"]["sequential"][-1] = {"Dense": {"units": 10}}  # logits
    lines: list[str] = []
    run = kk.train(recipe, verbose=0, print_fn=lines.append)
    assert lines[0] == (
        "compile preset: multiclass (inferred from the loss SparseCategoricalCrossentropy "
        "with from_logits: true and 10 output units)"
    )
    assert {"acc", "val_acc", "mean_output"} <= set(run.history) and "mae" not in run.history
    assert run.metrics["acc"] > 0.8  # argmax of the logits: accuracy reads them as they are
    # a registered loss by its bare class name: a regression on one output
    recipe = _recipe(tmp_path, loss="ScaledMSE", metrics=["MeanOutput"], epochs=1)
    recipe["model"]["sequential"][-1] = {"Dense": {"units": 1}}
    recipe["compile"]["preset"] = "regression"
    lines.clear()
    model = kk.check(recipe, print_fn=lines.append)
    assert isinstance(model.loss, ScaledMSE) and "recipe OK: schedules" in lines
    assert math.isfinite(model.evaluate(np.ones((2, 8, 8, 1)), np.ones(2), verbose=0)[0])
