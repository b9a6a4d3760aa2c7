"""recipe.callbacks: bundles and callback specs, with no TensorFlow."""

from __future__ import annotations

import pytest
import yaml

from kerakit.errors import RecipeError, Where
from kerakit.recipe.callbacks import BUNDLES, list_bundles, resolve_callbacks

# ---------------------------------------------------------------- spec (no TF)


@pytest.mark.parametrize("name", list(BUNDLES))
def test_every_bundle_resolves_and_round_trips_through_yaml(name):
    spec = resolve_callbacks(name)
    assert yaml.safe_load(yaml.safe_dump(spec)) == spec
    assert resolve_callbacks(spec) == spec
    assert [next(iter(e)) for e in spec] == [next(iter(e)) for e in BUNDLES[name]["callbacks"]]


def test_bundle_members_match_the_issue():
    names = {b: [next(iter(e)) for e in resolve_callbacks(b)] for b in BUNDLES}
    assert names["none"] == []
    assert names["minimal"] == ["TerminateOnNaN", "CSVLogger"]
    assert set(names["standard"]) == {
        "EarlyStopping",
        "ModelCheckpoint",
        "ReduceLROnPlateau",
        "CSVLogger",
        "TerminateOnNaN",
        "BackupAndRestore",
    }
    assert names["full"] == names["standard"] + ["TensorBoard"]
    assert resolve_callbacks("standard")[0]["EarlyStopping"]["restore_best_weights"] is True
    assert all(list_bundles()[b] for b in BUNDLES)


def test_overrides_drop_and_add():
    spec = resolve_callbacks(
        {
            "bundle": "standard",
            "EarlyStopping": {"patience": 9},
            "ReduceLROnPlateau": False,
            "TensorBoard": None,
        }
    )
    names = [next(iter(e)) for e in spec]
    assert "ReduceLROnPlateau" not in names and names[-1] == "TensorBoard"
    assert spec[0] == {"EarlyStopping": {"patience": 9, "restore_best_weights": True}}
    assert resolve_callbacks(["TerminateOnNaN", {"EarlyStopping": {"patience": 2}}]) == [
        {"TerminateOnNaN": {}},
        {"EarlyStopping": {"patience": 2}},
    ]


@pytest.mark.parametrize(
    "value, text",
    [
        ("standrd", "did you mean 'standard'"),
        ("EarlyStopping", "write it as a list"),
        (3, "expected a bundle name"),
        ({"bundel": "standard"}, "did you mean 'bundle'"),
        ({"bundle": "minimal", "EarlyStopping": False}, "cannot drop 'EarlyStopping'"),
        ([{"ModelCheckpoint": {"save_freq": False}}], "save_freq"),
        ([{"ModelCheckpoint": {"save_freq": 0}}], "save_freq"),
        ([{"BackupAndRestore": {"save_freq": -1}}], "save_freq"),
        ([{"EarlyStopping": 5}], "must be a mapping"),
        ([{"EarlyStopping": {"monitor": 3}}], "monitor must be"),
        ([{"a": 1, "b": 2}], "one class name"),
    ],
)
def test_bad_specs_say_where_and_what(value, text):
    where = Where("r.yaml", {("train", "callbacks"): (7, 3)}, ("train", "callbacks"))
    with pytest.raises(RecipeError, match=text) as err:
        resolve_callbacks(value, where)
    assert "r.yaml:7:3" in str(err.value) and "train.callbacks" in str(err.value)


# ---------------------------------------------------------------- hostile callback specs


@pytest.mark.parametrize(
    "path",
    [
        "{epoch.__doc__[3]}/victim.keras",  # an attribute lookup spells any character
        "{epoch[0]}.keras",
        "best-{epoch!r}.keras",
        "best-{epoch:{width}}.keras",
        "best-{.keras",
    ],
)
def test_a_checkpoint_path_holds_plain_placeholders_only(path):
    with pytest.raises(RecipeError, match="train.callbacks") as err:
        resolve_callbacks(
            [{"ModelCheckpoint": {"filepath": path}}], Where(path=("train", "callbacks"))
        )
    assert "placeholder" in str(err.value) or "template" in str(err.value)


@pytest.mark.parametrize("path", ["best-{epoch:02d}-{val_loss:.3f}.keras", "best.keras", "logs"])
def test_plain_placeholders_are_kept(path):
    assert resolve_callbacks([{"ModelCheckpoint": {"filepath": path}}])[0]["ModelCheckpoint"] == {
        "filepath": path
    }


@pytest.mark.parametrize("name", ["LambdaCallback", "LearningRateScheduler", "RemoteMonitor"])
def test_callbacks_that_run_code_or_reach_the_network_are_refused_in_a_recipe(name):
    with pytest.raises(RecipeError, match=f"{name} cannot be used in a recipe.*kk.train"):
        resolve_callbacks([{name: {"schedule": "lambda e: 0.1"}}])
    with pytest.raises(RecipeError, match=name):
        resolve_callbacks({"bundle": "minimal", name: {}})


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_callback_arguments_are_refused(value):
    with pytest.raises(RecipeError, match="factor.*give a finite number"):
        resolve_callbacks([{"ReduceLROnPlateau": {"factor": value}}])
