"""Users' own code named by a recipe (`imports:`): trained, evaluated and predicted in a new
process, re-imported only when unchanged (kerakit.recipe.usercode)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from kerakit.cli import main

ANTIRECTIFIER = textwrap.dedent('''
    """keras.io's antirectifier, registered as a user would."""
    import keras
    from keras import ops


    @keras.saving.register_keras_serializable(package="mine")
    class Antirectifier(keras.layers.Layer):
        def __init__(self, initializer="he_normal", **kwargs):
            super().__init__(**kwargs)
            self.initializer = keras.initializers.get(initializer)

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1] * 2, input_shape[-1]),
                                          initializer=self.initializer, name="kernel")

        def call(self, inputs):
            inputs -= ops.mean(inputs, axis=-1, keepdims=True)
            pos, neg = ops.relu(inputs), ops.relu(-inputs)
            return ops.matmul(ops.concatenate([pos, neg], axis=-1), self.kernel)

        def get_config(self):
            return {**super().get_config(),
                    "initializer": keras.initializers.serialize(self.initializer)}


    @keras.saving.register_keras_serializable(package="mine")
    class CustomMSE(keras.losses.Loss):
        """The built-in-methods guide's loss: MSE plus a pull of the outputs toward 0.5."""

        def __init__(self, regularization_factor=0.1, name="custom_mse", **kwargs):
            super().__init__(name=name, **kwargs)
            self.regularization_factor = regularization_factor

        def call(self, y_true, y_pred):
            mse = ops.mean(ops.square(y_true - y_pred), axis=-1)
            reg = ops.mean(ops.square(0.5 - y_pred), axis=-1)
            return mse + reg * self.regularization_factor

        def get_config(self):
            return {**super().get_config(), "regularization_factor": self.regularization_factor}


    @keras.saving.register_keras_serializable(package="mine")
    class ProbabilityOfTruth(keras.metrics.Mean):
        """The mean probability the model gives the true class (one-hot labels)."""

        def __init__(self, name="probability_of_truth", **kwargs):
            super().__init__(name=name, **kwargs)

        def update_state(self, y_true, y_pred, sample_weight=None):
            return super().update_state(ops.sum(y_true * y_pred, axis=-1), sample_weight)
''')

RECIPE = """
name: anti
imports: [antirectifier.py]
data: {source: "npz:d.npz", batch_size: 16}
model:
  sequential:
    - Dense: {units: 8}
    - mine>Antirectifier              # the full name: other tests register an Antirectifier too
    - Dense: {units: 2, activation: softmax}
compile:
  preset: multiclass_onehot          # CustomMSE compares one-hot labels with the outputs
  loss: {mine>CustomMSE: {regularization_factor: 0.2}}
  metrics: [accuracy, mine>ProbabilityOfTruth]
train: {epochs: 2, callbacks: minimal}
output: {dir: runs}
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 4)).astype("float32")
    np.savez(tmp_path / "d.npz", x_train=x, y_train=(x[:, 0] > 0).astype("int64"))
    (tmp_path / "antirectifier.py").write_text(ANTIRECTIFIER)
    (tmp_path / "r.yaml").write_text(RECIPE)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    # what these tests' code registered goes, so that other tests' bare names stay unambiguous
    for name in [n for n in keras.saving.get_custom_objects() if n.startswith(("mine>", "twin>"))]:
        del keras.saving.get_custom_objects()[name]


def _killed_after_epochs(cmd: list, project, epochs: int):
    """Runs `cmd` (a kerakit train) and kills it with SIGKILL once `epochs` rows are logged."""
    import signal
    import time

    proc = subprocess.Popen(cmd, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            runs = list((project / "runs" / "anti").glob("*"))
            history = runs[0] / "history.csv" if runs else None
            if history and history.is_file() and len(history.read_text().splitlines()) > epochs:
                proc.send_signal(signal.SIGKILL)
                return runs[0]
            assert proc.poll() is None, (
                "training ended before the kill: " + proc.stdout.read()[-2000:]
            )
            time.sleep(0.05)
        raise AssertionError("timed out waiting for the epochs")
    finally:
        proc.kill()
        proc.wait(timeout=60)


@pytest.mark.slow
def test_custom_layer_loss_and_metric_train_resume_evaluate_and_refuse_changed_code(
    project, capsys
):
    assert main(["check", "r.yaml"]) == 0
    assert "imported: antirectifier.py" in capsys.readouterr().out
    # killed (kill -9) in a process of its own, then resumed by the same command
    train = [sys.executable, "-m", "kerakit.cli", "train", "r.yaml", "--epochs", "30",
             "--set", "train.callbacks={bundle: standard, EarlyStopping: false}"]  # fmt: skip
    run = _killed_after_epochs(train, project, 2)
    assert main(train[3:]) == 0
    out = capsys.readouterr().out
    assert f"resuming the interrupted run runs/anti/{run.name}" in out and "Epoch 1/30" not in out
    assert len((run / "history.csv").read_text().strip().splitlines()) == 31
    assert "probability_of_truth" in (run / "history.csv").read_text().splitlines()[0]
    code = json.loads((run / "code.json").read_text())["code"]
    assert code[0]["import"] == "antirectifier.py" and len(code[0]["sha256"]) == 64
    np.save(project / "x.npy", np.zeros((3, 4), "float32"))
    fresh = subprocess.run(
        [sys.executable, "-m", "kerakit.cli", "evaluate", str(run)], capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert fresh.returncode == 0, fresh.stderr[-1500:]
    assert "accuracy" in fresh.stdout and "probability_of_truth" in fresh.stdout
    # a bare model file imports nothing by itself; --import names the code
    bare = subprocess.run(
        [sys.executable, "-m", "kerakit.cli", "--import", "antirectifier.py", "predict",
         str(run / "model.keras"), "x.npy"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bare.returncode == 0, bare.stderr[-1500:]
    assert "imported: antirectifier.py" in bare.stdout
    # the code changes: a run folder no longer loads, and the run no longer resumes
    (project / "antirectifier.py").write_text(ANTIRECTIFIER + "\n# changed\n")
    capsys.readouterr()
    assert main(["predict", str(run), "x.npy"]) == 2
    assert "which changed since" in capsys.readouterr().err
    assert main(["train", "r.yaml", "--resume", str(run)]) == 2
    assert "antirectifier.py changed since the run started" in capsys.readouterr().err


def test_imports_are_checked_without_running_anything(project, capsys):
    (project / "bad.yaml").write_text(RECIPE.replace("[antirectifier.py]", "[missing.py]"))
    assert main(["check", "bad.yaml"]) == 2
    assert "imports[0]: no such file" in capsys.readouterr().err
    (project / "broken.py").write_text("raise RuntimeError('the user code is broken')\n")
    (project / "b.yaml").write_text(RECIPE.replace("[antirectifier.py]", "[broken.py]"))
    assert main(["check", "b.yaml"]) == 2
    assert "importing 'broken.py' failed: RuntimeError: the user code is broken" in (
        capsys.readouterr().err
    )


def test_code_inside_a_run_folder_from_elsewhere_is_not_run(project, tmp_path, capsys):
    run = tmp_path / "stranger"
    run.mkdir()
    evil = run / "evil.py"
    evil.write_text(f"open({str(tmp_path / 'canary')!r}, 'w').write('ran')\n")
    import hashlib

    digest = hashlib.sha256(evil.read_bytes()).hexdigest()
    (run / "code.json").write_text(json.dumps({"code": [{"import": str(evil), "file": str(evil),
                                                         "sha256": digest}]}))  # fmt: skip
    (run / "run.json").write_text("{}")
    assert main(["evaluate", str(run)]) == 2
    assert "inside the run folder itself" in capsys.readouterr().err
    assert not (tmp_path / "canary").exists()


def test_a_bare_name_registered_twice_is_refused_with_the_full_names(project, capsys):
    (project / "twin.py").write_text(ANTIRECTIFIER.replace('package="mine"', 'package="twin"'))
    (project / "twins.yaml").write_text(
        RECIPE.replace("[antirectifier.py]", "[antirectifier.py, twin.py]").replace(
            "mine>Antirectifier", "Antirectifier"
        )
    )
    assert main(["check", "twins.yaml"]) == 2
    err = capsys.readouterr().err
    assert "twins.yaml:8:7: model.sequential[1].Antirectifier: " in err
    assert "'Antirectifier' is registered under several packages" in err
    assert "mine>Antirectifier" in err and "twin>Antirectifier" in err
