"""train.tracking: TensorBoard's event files and a real MLflow file store, read back with
their own readers; a tracker that fails never fails the training."""

import json

import pytest
from runs_helpers import digits_recipe

from kerakit.errors import RecipeError, Where
from kerakit.recipe.train import resolve_train
from kerakit.training.tracking import flat_values, mlflow_name


@pytest.mark.parametrize(
    "value, resolved",
    [
        ("mlflow", {"mlflow": {}}),
        (["tensorboard", "mlflow"], {"tensorboard": {}, "mlflow": {}}),
        ([{"mlflow": {"experiment": "x"}}], {"mlflow": {"experiment": "x"}}),
        ({"mlflow": {"tracking_uri": "http://h:5000"}, "tensorboard": None},
         {"mlflow": {"tracking_uri": "http://h:5000"}, "tensorboard": {}}),
    ],
)  # fmt: skip
def test_tracking_forms_resolve_to_one_shape(value, resolved):
    out = resolve_train({"tracking": value}, Where())["tracking"]
    assert out == resolved
    assert resolve_train({"tracking": out}, Where())["tracking"] == resolved  # round trip


def test_no_tracking_key_when_none_is_asked_for():
    assert "tracking" not in resolve_train({}, Where())  # older recipes resolve the same


@pytest.mark.parametrize(
    "value, words",
    [
        ("mlfow", "train.tracking: unknown tracker 'mlfow' (did you mean 'mlflow'?)"),
        ([3], "train.tracking[0]: expected a tracker name (tensorboard, mlflow)"),
        (
            {"mlflow": {"experment": "x"}},
            "unknown key 'experment' in tracking.mlflow (did you mean 'experiment'?)",
        ),
        ({"mlflow": {"experiment": 3}}, "train.tracking.mlflow.experiment: expected a string"),
    ],
)
def test_tracking_mistakes_are_refused_at_their_key(value, words):
    with pytest.raises(RecipeError) as info:
        resolve_train({"tracking": value}, Where().at("train"))
    assert words in str(info.value)


def test_mlflow_names_take_no_brackets_and_no_odd_characters():
    assert mlflow_name("model.sequential[0].Dense.units") == "model.sequential.0.Dense.units"
    assert mlflow_name("train.callbacks[1].kerakit>Log") == "train.callbacks.1.kerakit_Log"


def test_flat_values_name_every_leaf_by_its_key_path():
    assert flat_values({"a": {"b": [1, {"c": None}]}, "d": {}}) == {
        "a.b[0]": 1, "a.b[1].c": None, "d": {}}  # fmt: skip


def _quiet(*args, **kwargs):
    pass


def test_tensorboard_and_mlflow_hold_the_run(tmp_path):
    import mlflow  # noqa: F401 (the test extra has it)
    import tensorflow as tf
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    import kerakit as kk

    recipe = digits_recipe(tmp_path, tmp_path / "out", epochs=2,
                           extra="  tracking: [tensorboard, mlflow]\n")  # fmt: skip
    run = kk.train(recipe, print_fn=_quiet)

    # TensorBoard: the epoch scalars per split, the recipe's values in the HParams plugin
    for split, tag in (("train", "epoch_loss"), ("train", "epoch_accuracy"),
                       ("validation", "epoch_loss")):  # fmt: skip
        events = EventAccumulator(str(run.path / split)).Reload()
        values = events.Tensors(tag)
        assert [e.step for e in values] == [0, 1], (split, tag)
        logged = run.history[tag.replace("epoch_", "val_" if split == "validation" else "")]
        assert [float(tf.make_ndarray(e.tensor_proto)) for e in values] == pytest.approx(logged)
    session = EventAccumulator(str(run.path)).Reload()
    content = session.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
    hparams = metadata.parse_session_start_info_plugin_data(content).hparams
    assert hparams["seed"].number_value == 1 and hparams["compile.optimizer"].string_value == "adam"
    assert hparams["model.sequential[0].Dense.units"].number_value == 8

    # MLflow: a local file store under output.dir, read back with MLflow's client
    kept = json.loads((run.path / "mlflow.json").read_text())
    assert kept["tracking_uri"] == (tmp_path / "out" / "mlruns").as_uri()
    client = MlflowClient(tracking_uri=kept["tracking_uri"])
    found = client.get_run(kept["run_id"])
    assert found.info.status == "FINISHED" and found.info.run_name == run.path.name
    assert client.get_experiment(found.info.experiment_id).name == "tiny-digits"
    params = found.data.params
    assert params["seed"] == "1" and params["model.sequential.0.Dense.units"] == "8"
    assert params["compile.loss"] == "sparse_categorical_crossentropy"
    for name in ("loss", "accuracy", "val_loss"):
        history = client.get_metric_history(kept["run_id"], name)
        assert [m.step for m in history] == [0, 1]
        assert [m.value for m in history] == pytest.approx(run.history[name])
    files = {a.path for a in client.list_artifacts(kept["run_id"])}
    assert {"run.json", "recipe.resolved.yaml", "history.csv", "metrics.json", "model"} <= files
    assert [a.path for a in client.list_artifacts(kept["run_id"], "model")] == ["model/model.keras"]
    assert json.loads((run.path / "run.json").read_text())["status"] == "complete"


def test_an_unreachable_tracking_server_does_not_fail_the_training(tmp_path, capsys):
    import kerakit as kk

    extra = "  tracking: {mlflow: {tracking_uri: 'http://127.0.0.1:1'}}\n"
    run = kk.train(digits_recipe(tmp_path, tmp_path / "out", extra=extra), print_fn=_quiet)
    assert json.loads((run.path / "run.json").read_text())["status"] == "complete"
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "tracking stopped" in line]
    assert len(warnings) == 1 and "mlflow tracking stopped (ConnectionError" in warnings[0]
    assert "training goes on" in warnings[0]


def test_a_tracker_that_raises_mid_run_warns_once_and_training_goes_on(tmp_path, capsys,
                                                                       monkeypatch):  # fmt: skip
    import kerakit as kk
    from kerakit.training.tracking import MLflowTracker

    def boom(self, epoch, logs):
        raise RuntimeError("the store went away")

    monkeypatch.setattr(MLflowTracker, "_log_epoch", boom)
    recipe = digits_recipe(tmp_path, tmp_path / "out", epochs=2, extra="  tracking: [mlflow]\n")
    run = kk.train(recipe, print_fn=_quiet)
    assert json.loads((run.path / "run.json").read_text())["status"] == "complete"
    assert (run.path / "model.keras").is_file()
    err = capsys.readouterr().err
    assert err.count("tracking stopped") == 1
    assert "mlflow tracking stopped (RuntimeError: the store went away)" in err


def test_a_missing_tracker_package_names_the_extra_before_any_run_folder(tmp_path,
                                                                          monkeypatch):  # fmt: skip
    import importlib.util

    import kerakit as kk
    from kerakit.training import tracking

    real = importlib.util.find_spec
    monkeypatch.setattr(tracking.importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real(name, *a))  # fmt: skip
    recipe = digits_recipe(tmp_path, tmp_path / "out", extra="  tracking: [mlflow]\n")
    with pytest.raises(RecipeError) as info:
        kk.train(recipe, print_fn=_quiet)
    assert 'pip install "kerakit[mlflow]"' in str(info.value)
    assert "train.tracking" in str(info.value) and str(recipe) in str(info.value)
    assert not (tmp_path / "out" / "tiny-digits").exists()


def test_a_resumed_run_continues_its_mlflow_run(tmp_path):
    from mlflow.tracking import MlflowClient

    from kerakit.recipe import load_recipe
    from kerakit.training.tracking import MLflowTracker

    recipe = load_recipe({"name": "resumed", "data": "digits", "model": {"sequential": [{"Dense": {"units": 1}}]},
                          "output": {"dir": str(tmp_path / "out")}})  # fmt: skip
    folder = tmp_path / "out" / "resumed" / "1"
    folder.mkdir(parents=True)
    first = MLflowTracker(recipe, folder, {})
    first.on_train_begin()
    first.on_epoch_end(0, {"loss": 1.0})
    first.close("interrupted")
    second = MLflowTracker(recipe, folder, {})  # the same folder, another process
    second.on_train_begin()
    second.on_epoch_end(1, {"loss": 0.5})
    second.close("complete")
    assert not first.failed and not second.failed and second.run_id == first.run_id
    client = MlflowClient(tracking_uri=first.uri)
    assert [m.step for m in client.get_metric_history(first.run_id, "loss")] == [0, 1]
    assert client.get_run(first.run_id).info.status == "FINISHED"
    assert len(client.search_runs([client.get_experiment_by_name("resumed").experiment_id])) == 1
