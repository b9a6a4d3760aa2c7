"""Files written by kerakit 0.1.0 keep loading, evaluating and resuming (tests/fixtures/v0_1_0)."""

import csv
import json
import shutil

import numpy as np
import pytest
from conftest import REPO

import kerakit as kk
from kerakit.cli import main

FIXTURE = REPO / "tests" / "fixtures" / "v0_1_0"
WRITTEN_AT = "/work/main/tests/fixtures/v0_1_0"  # where make_v0_1_0.py ran


@pytest.fixture
def old(tmp_path, monkeypatch):
    """A copy of the fixture, its run folders' absolute data paths pointing at the copy."""
    copy = tmp_path / "v0_1_0"
    shutil.copytree(FIXTURE, copy)
    for kept in copy.glob("runs/tiny/*/recipe.resolved.yaml"):
        kept.write_text(kept.read_text().replace(WRITTEN_AT, str(copy)))
    monkeypatch.chdir(copy)
    return copy


def test_a_keras_file_with_kerakits_layers_loads_by_their_registered_names(old):
    model = kk.load_model(old / "layers" / "model.keras")
    kinds = {type(layer).__name__ for layer in model.layers}
    assert {"AugmentLayer", "BackbonePreprocess"} <= kinds
    assert model.predict(np.zeros((2, 8, 8, 3), "float32"), verbose=0).shape == (2, 2)


@pytest.mark.parametrize("name", ["model.keras", "model.h5"])
def test_a_finished_runs_models_load_with_their_optimizer_state(old, name):
    model = kk.load_model(old / "runs" / "tiny" / "complete" / name)
    assert type(model.optimizer).__name__ == "Adam"
    assert int(model.optimizer.iterations) > 0


def test_a_finished_run_evaluates_and_predicts_from_the_command_line(old, capsys):
    run = old / "runs" / "tiny" / "complete"
    assert main(["evaluate", str(run)]) == 0
    assert "accuracy" in capsys.readouterr().out
    np.save(old / "x.npy", np.zeros((3, 6), "float32"))
    assert main(["predict", str(run), str(old / "x.npy"), "--output", str(old / "p.json")]) == 0
    assert len(json.loads((old / "p.json").read_text())) == 3


@pytest.mark.slow
def test_an_interrupted_run_resumes_to_its_epoch_count(old, capsys):
    run = old / "runs" / "tiny" / "interrupted"
    assert main(["train", "recipe.yaml"]) == 0
    assert f"resuming the interrupted run {run.relative_to(old)}" in capsys.readouterr().out
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    with open(run / "history.csv", newline="") as f:
        epochs = [int(row["epoch"]) for row in csv.DictReader(f)]
    assert epochs == [0, 1, 2, 3]
    assert (run / "model.keras").is_file()
