"""`kerakit smoke` and `pytest --kerakit`: every recipe still builds, learns, saves and
reloads, in seconds, on a tiny slice of its data (kerakit.smoke, kerakit.pytest_plugin).

tests/smoke_recipes holds one recipe that passes and three that fail one check each: a
learning rate that diverges, a model with nothing to train, a layer that cannot be saved
(tests/smoke_recipes/smoke_layers.py, imported first as a user's conftest would)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from conftest import CONFIGS, REPO

from kerakit.cli import main
from kerakit.smoke.checks import SmokeFailure, overfit_one_batch
from kerakit.smoke.run import CHECKS, looks_like_recipe, recipe_files, smoke
from kerakit.testing import tiny_image_folder

RECIPES = REPO / "tests" / "smoke_recipes"
# what each recipe of tests/smoke_recipes must report, in the words of the failure line
EXPECTED = {
    "good.yaml": None,
    "diverges.yaml": ["FAIL overfit: diverged at step", "diverges.yaml:14:3 (compile.optimizer)"],
    "frozen.yaml": ["FAIL overfit: the model has no trainable weights", "frozen.yaml:8:1 (model)"],
    "unsaveable.yaml": [
        "FAIL save: cannot save as keras: its layer 'unsaveable' (Unsaveable) cannot be serialized",
        "unsaveable.yaml:10:7 (model.sequential[0])",
    ],
}


@pytest.fixture(scope="module", autouse=True)
def smoke_layers():
    """The layer of unsaveable.yaml, registered with Keras as a user's conftest would."""
    if "smoke_layers" not in sys.modules:
        spec = importlib.util.spec_from_file_location("smoke_layers", RECIPES / "smoke_layers.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["smoke_layers"] = module
    return sys.modules["smoke_layers"]


def _listing(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def _private_tmp(tmp_path: Path) -> Path:
    """A temporary folder of this test's own (tests run side by side with pytest -n 2: the
    shared one holds the other worker's smoke folders)."""
    folder = tmp_path.parent / f"{tmp_path.name}-tmp"
    folder.mkdir()
    return folder


@pytest.mark.slow
def test_cli_reports_one_pass_three_failures_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a run folder written relative to the working folder lands here
    temps = _private_tmp(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(temps))  # smoke's temporary folders go here
    recipes = _listing(RECIPES)
    assert main(["smoke", str(RECIPES)]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["recipe", *CHECKS, "total"]
    for name, words in EXPECTED.items():
        row = next(line for line in lines if line.startswith(name))
        if words is None:
            assert row.split()[1:15:2] == ["ok"] * len(CHECKS), row
        else:
            failure = next(line for line in lines if words[0] in line)
            assert words[1] in failure, failure
    assert lines[-1].startswith("smoke: 1 passed, 3 failed, 0 invalid (4 recipes")
    assert "note: data: a slice of digits (train 32, val 16, test 16)" in out
    assert list(tmp_path.iterdir()) == []  # nothing written outside a temporary folder
    assert _listing(RECIPES) == recipes and list(temps.glob("kerakit-smoke-*")) == []


def test_an_invalid_recipe_exits_2_with_its_line(write_recipe, capsys):
    bad = write_recipe(
        """
        data: {source: digits, flatten: true}
        model:
          sequential:
            - Dense: {units: 10, activation: softmax}
        train:
          epochs: 0
        """,
        "bad.yaml",
    )
    assert main(["smoke", str(bad), str(RECIPES / "frozen.yaml")]) == 2  # invalid beats failed
    out = capsys.readouterr().out
    assert (
        f"INVALID recipe: 0 is out of range: expected an integer >= 1 [{bad}:6:11 (train.epochs)]"
        in out
    )
    assert out.splitlines()[-1].startswith("smoke: 0 passed, 1 failed, 1 invalid")


def test_a_folder_without_recipes_exits_2(tmp_path, capsys):
    (tmp_path / "notes.yaml").write_text("title: not a recipe\n")
    assert main(["smoke", str(tmp_path)]) == 2
    assert "no recipes found" in capsys.readouterr().err


def test_recipes_are_yaml_files_with_data_and_model(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "r.yml").write_text("# a recipe\ndata:\n  source: digits\nmodel: {}\n")
    (tmp_path / "other.yaml").write_text("data: 1\n")
    (tmp_path / "x.txt").write_text("data:\nmodel:\n")
    assert recipe_files([tmp_path]) == [tmp_path / "sub" / "r.yml"]
    assert all(looks_like_recipe(p) for p in CONFIGS.glob("*.yaml"))
    assert not looks_like_recipe(tmp_path / "missing.yaml")


TINY = """
seed: 3
data: {{source: {source}, batch_size: 8{extra}}}
model:
  {shape}sequential:
    - Flatten
    - Dense: {{units: 4, activation: softmax}}
compile: {{preset: multiclass, optimizer: {{adam: {{learning_rate: 0.01}}}}}}
train: {{callbacks: minimal}}
"""


@pytest.mark.parametrize(
    "source, extra, shape, words",
    [
        ("tfds:mnist", ", data_dir: tfds", "input_shape: [28, 28, 1]\n  ",
         "tfds:mnist is not prepared under"),
        ("npz:missing.npz", "", "input_shape: [6]\n  ", "no such file"),
        ("directory:missing", ", image_size: [6, 6]", "",
         "stand-in images of 6x6x3 (from data.image_size)"),
    ],
    ids=["tfds-not-prepared", "missing-file", "missing-folder"],
)  # fmt: skip
def test_out_of_reach_data_gets_a_synthetic_stand_in_said_so(source, extra, shape, words,
                                                             write_recipe, tmp_path):  # fmt: skip
    recipe = write_recipe(TINY.format(source=source, extra=extra, shape=shape))
    result = smoke(recipe, steps=10, batches=1)
    assert result.passed, result.explain()
    notes = " ".join(result.notes)
    assert "synthetic stand-in" in notes and words in notes, notes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.yaml"]  # no download, no cache


def test_an_image_folder_is_sampled_not_read_whole(write_recipe, tmp_path):
    tiny_image_folder(tmp_path / "images", classes="abcd", per_class=25, size=(6, 6))
    recipe = write_recipe(TINY.format(source="directory:images", extra="", shape=""))
    result = smoke(recipe, steps=10, batches=1)
    assert result.passed, result.explain()
    # 8 examples needed after the splits: ceil(8 / 0.7) + 2 = 14, so 4 per class of 25
    assert "data: 16 images of images, a seeded sample of each class" in result.notes
    assert len(list((tmp_path / "images").rglob("*.png"))) == 100  # the folder is untouched


def test_overfit_rule_needs_the_loss_to_fall():
    import keras

    keras.utils.set_random_seed(0)  # the same start whichever tests ran before (pytest -n 2)
    x = np.random.default_rng(0).random((16, 4)).astype("float32")
    y = (x[:, 0] > 0.5).astype(int)  # learnable: a linear model can fit it
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(keras.optimizers.SGD(learning_rate=0.0), "sparse_categorical_crossentropy")
    with pytest.raises(SmokeFailure, match="did not fall on one batch") as info:
        overfit_one_batch(model, x, y, steps=5)
    assert info.value.key == ("model",)
    model.compile(keras.optimizers.Adam(learning_rate=0.1), "sparse_categorical_crossentropy")
    losses = overfit_one_batch(model, x, y, steps=20)
    assert len(losses) == 20 and np.mean(losses[-3:]) < 0.9 * losses[0]


def _junit(path: Path) -> dict:
    """{item name: (failure message or None, seconds)} of a --junitxml report."""
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        failure = case.find("failure")
        out[case.get("name")] = (None if failure is None else failure.get("message"),
                                 float(case.get("time")))  # fmt: skip
    return out


# Shipped configs left out of the smoke run here: keras.io's "image classification from
# scratch" (2.8M parameters on 180x180 images) overfits one batch of 128 in minutes on a CPU;
# tests/e2e/test_keras_io.py builds it and compares it with the example's own model.
# The two transfer-learning configs of keras.io likewise (their smoke takes 40-60 s: two
# fine-tuning stages of Xception at 150x150, of EfficientNetB0 at 224x224);
# tests/models/test_transfer_guides.py builds and counts both.
HEAVY_CONFIGS = {
    "image_classification_from_scratch.yaml",
    "transfer_learning_guide.yaml",
    "efficientnet_fine_tuning.yaml",
}


@pytest.mark.slow
def test_pytest_plugin_reports_the_same_and_every_shipped_config_passes(tmp_path):
    """One pytest process collects tests/smoke_recipes and configs/ as recipes: the same
    pass and failures as `kerakit smoke`, and every shipped config passes offline."""
    cwd, report = tmp_path / "cwd", tmp_path / "report.xml"
    cwd.mkdir()
    before = {folder: _listing(folder) for folder in (RECIPES, CONFIGS)}
    home_tfds, temps = (Path.home() / "tensorflow_datasets").exists(), _private_tmp(tmp_path)
    env = {
        **os.environ,
        "TMPDIR": str(temps),
        "PYTHONPATH": os.pathsep.join([str(RECIPES), os.environ.get("PYTHONPATH", "")]),
    }
    configs = [c for c in sorted(CONFIGS.rglob("*.yaml")) if c.name not in HEAVY_CONFIGS]
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:benchmark", "-p", "smoke_layers", "-q",
           "--kerakit", str(RECIPES), *(a for c in configs for a in ("--kerakit", str(c))),
           "--junitxml", str(report)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"3 failed, {len(configs) + 1} passed" in proc.stdout, proc.stdout[-3000:]
    cases = _junit(report)
    for name, words in EXPECTED.items():
        message, _ = cases[Path(name).stem]
        assert (message is None) if words is None else all(w in message for w in words), message
    for config in configs:
        message, seconds = cases[config.stem]
        assert message is None, message
        assert seconds < 20, (config.name, seconds)  # under 10 s here; room for a busy machine
    assert list(cwd.iterdir()) == [] and list(temps.glob("kerakit-smoke-*")) == []
    assert {folder: _listing(folder) for folder in before} == before
    assert home_tfds or not (Path.home() / "tensorflow_datasets").exists()


@pytest.mark.slow
def test_the_plugin_collects_nothing_and_imports_no_tensorflow_without_the_option():
    code = (
        "import sys, pytest\n"
        f"code = pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', {str(RECIPES)!r}])\n"
        "print('tensorflow' in sys.modules)\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 5, proc.stdout + proc.stderr  # 5: no tests collected
    assert proc.stdout.splitlines()[-1] == "False"
    help_text = subprocess.run([sys.executable, "-m", "pytest", "--help"], capture_output=True,
                               text=True, timeout=120).stdout  # fmt: skip
    assert "--kerakit=PATH" in help_text and "--kerakit-steps=N" in help_text
