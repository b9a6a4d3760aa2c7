"""`kerakit reproduce`, and the provenance record it checks first."""

import json
import subprocess

import numpy as np
import pytest
from conftest import REPO
from runs_helpers import digits_recipe

from kerakit.cli import main
from kerakit.errors import KerakitError
from kerakit.recipe import load_recipe
from kerakit.runs.reproduce import agrees, check_provenance, reproduce
from kerakit.training.provenance import data_hash, files_hash, git_state, mismatches

OLD_RUN = REPO / "tests" / "fixtures" / "v0_1_0" / "runs" / "tiny" / "complete"


def _quiet(*args, **kwargs):
    pass


def test_a_deterministic_run_reproduces_with_identical_weights(tmp_path, capsys):
    import kerakit as kk

    run = kk.train(digits_recipe(tmp_path, tmp_path / "out"), print_fn=_quiet)
    record = json.loads((run.path / "run.json").read_text())
    assert len(record["fingerprint"]) == 16  # the resume fingerprint, unchanged
    provenance = record["provenance"]
    assert provenance["data"]["method"] == "name" and len(provenance["recipe"]) == 64
    assert {"python", "tensorflow", "keras", "kerakit", "numpy"} <= set(provenance["versions"])
    capsys.readouterr()
    assert main(["reproduce", str(run.path)]) == 0
    text = capsys.readouterr().out
    assert "warning" not in text
    assert "weights: identical, bit for bit" in text and "reproduces: every metric agrees" in text
    assert [line.split()[-1] for line in text.splitlines() if line.startswith("accuracy")] == [
        "yes"
    ]
    new = [p for p in (tmp_path / "out" / "tiny-digits").iterdir() if p != run.path]
    assert len(new) == 1 and (new[0] / "model.keras").is_file()  # a new run folder beside it


def _npz(path, seed):
    rng = np.random.default_rng(seed)
    np.savez(path, x_train=rng.normal(size=(96, 4)).astype("float32"),
             y_train=rng.integers(0, 2, 96), x_test=rng.normal(size=(32, 4)).astype("float32"),
             y_test=rng.integers(0, 2, 32))  # fmt: skip


def test_a_changed_data_file_is_named_before_training_again(tmp_path):
    import kerakit as kk

    _npz(tmp_path / "data.npz", 0)
    recipe = {"name": "npz-run", "seed": 1, "deterministic": True,
              "data": {"source": f"npz:{tmp_path / 'data.npz'}", "batch_size": 32},
              "model": {"input_shape": [4], "sequential": [{"Dense": {"units": 2, "activation": "softmax"}}]},
              "train": {"epochs": 1, "callbacks": "minimal", "verbose": 0},
              "output": {"dir": str(tmp_path / "out")}}  # fmt: skip
    run = kk.train(recipe, print_fn=_quiet)
    data = json.loads((run.path / "run.json").read_text())["provenance"]["data"]
    assert data["method"] == "content" and data["files"] == 1
    _npz(tmp_path / "data.npz", 1)
    said = []
    result = reproduce(run.path, print_fn=said.append)
    assert said[0].startswith(f"warning: the new run cannot match {run.path}: the data changed")
    assert result.warnings and not result.ok and result.weights is False


def test_agreement_is_absolute_up_to_one_and_relative_above():
    assert agrees(0.5, 0.51, 0.02) and not agrees(0.5, 0.53, 0.02)
    assert agrees(100.0, 101.5, 0.02) and not agrees(100.0, 103.0, 0.02)
    assert agrees(float("nan"), float("nan"), 0.0) and not agrees(1.0, None, 1.0)


def test_reproduce_refuses_what_it_cannot_train_again(tmp_path):
    with pytest.raises(KerakitError, match="not a run folder"):
        reproduce(tmp_path)
    (tmp_path / "run.json").write_text("{}")
    (tmp_path / "recipe.resolved.yaml").write_text(
        "data: {source: arrays}\nmodel: {sequential: [{Dense: {units: 1}}]}\n"
    )
    with pytest.raises(KerakitError, match=r"arrays given from Python \(kk.train\(x=...\)\)"):
        reproduce(tmp_path)


def test_a_run_of_an_earlier_kerakit_has_no_provenance_to_check():
    recipe = load_recipe(str(OLD_RUN / "recipe.resolved.yaml"))
    (line,) = check_provenance(OLD_RUN, recipe)
    assert "records no provenance" in line


def test_mismatches_name_the_data_the_versions_and_the_code():
    old = {"data": {"hash": "a" * 64}, "versions": {"keras": "3.0", "numpy": "2.0"}, "code": "c"}
    new = {"data": {"hash": "b" * 64}, "versions": {"keras": "3.1", "numpy": "2.0"}, "code": "d"}
    assert mismatches(old, new) == [
        "the data changed (hash aaaaaaaaaaaa then, bbbbbbbbbbbb now)",
        "keras 3.0 then, 3.1 now",
        "the imported user code changed",
    ]
    assert mismatches(old, old) == []


def test_files_hash_reads_contents_within_the_budget_then_sizes(tmp_path):
    for name, text in (("b.txt", "bb"), ("a/c.txt", "c")):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    full = files_hash(files, tmp_path)
    assert full["method"] == "content" and full["files"] == 2 and full["bytes"] == 3
    assert files_hash(files, tmp_path, budget=1)["method"] == "content+stat"
    (tmp_path / "b.txt").write_text("bx")  # same size, other content
    assert files_hash(files, tmp_path)["hash"] != full["hash"]
    assert files_hash([], tmp_path)["method"] == "missing"


def test_data_hash_of_a_folder_and_of_a_named_data_set(tmp_path):
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    (tmp_path / "imgs" / "cat" / "1.png").write_bytes(b"x")
    recipe = load_recipe({"data": {"source": f"directory:{tmp_path / 'imgs'}"},
                          "model": {"sequential": [{"Dense": {"units": 1}}]}})  # fmt: skip
    first = data_hash(recipe)
    (tmp_path / "imgs" / "cat" / "2.png").write_bytes(b"y")
    assert data_hash(recipe)["hash"] != first["hash"] and data_hash(recipe)["files"] == 2
    named = load_recipe(
        {"data": {"source": "tfds:mnist"}, "model": {"sequential": [{"Dense": {"units": 1}}]}}
    )
    assert data_hash(named)["method"] == "name"


def test_git_state_of_the_recipe_checkout(tmp_path):
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("a: 1\n")
    subprocess.run([*git, "add", "r.yaml"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)
    state = git_state(recipe)
    assert len(state["commit"]) == 40 and state["dirty"] is False
    (tmp_path / "untracked.txt").write_text("runs are untracked")
    assert git_state(recipe)["dirty"] is False
    recipe.write_text("a: 2\n")
    assert git_state(recipe)["dirty"] is True
    assert git_state(None) is None and git_state(tmp_path.parent / "elsewhere" / "r.yaml") is None


def test_arrays_given_from_python_are_hashed_by_their_bytes(tmp_path):
    import kerakit as kk

    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    recipe = {"data": {"source": "arrays"}, "seed": 1,
              "model": {"sequential": [{"Dense": {"units": 2, "activation": "softmax"}}]},
              "train": {"epochs": 1, "callbacks": "minimal", "verbose": 0},
              "output": {"dir": str(tmp_path)}}  # fmt: skip
    run = kk.train(recipe, x=x, y=(x[:, 0] > 0).astype("int64"), print_fn=_quiet)
    data = json.loads((run.path / "run.json").read_text())["provenance"]["data"]
    assert data["method"] == "bytes" and len(data["hash"]) == 64
    with pytest.raises(KerakitError, match="arrays given from Python"):
        reproduce(run.path)
