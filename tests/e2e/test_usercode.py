"""Users' own code named by a recipe (`imports:`): trained, evaluated and predicted in a new
process, re-imported only when unchanged (kerakit.recipe.usercode)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

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
''')

RECIPE = """
name: anti
imports: [antirectifier.py]
data: {source: "npz:d.npz", batch_size: 16}
model:
  sequential:
    - Dense: {units: 8}
    - Antirectifier
    - Dense: {units: 2, activation: softmax}
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
    return tmp_path


@pytest.mark.slow
def test_a_custom_layer_trains_evaluates_in_a_new_process_and_refuses_changed_code(project, capsys):
    assert main(["check", "r.yaml"]) == 0
    assert "imported: antirectifier.py" in capsys.readouterr().out
    assert main(["train", "r.yaml"]) == 0
    (run,) = (project / "runs" / "anti").iterdir()
    code = json.loads((run / "code.json").read_text())["code"]
    assert code[0]["import"] == "antirectifier.py" and len(code[0]["sha256"]) == 64
    np.save(project / "x.npy", np.zeros((3, 4), "float32"))
    fresh = subprocess.run(
        [sys.executable, "-m", "kerakit.cli", "evaluate", str(run)], capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert fresh.returncode == 0, fresh.stderr[-1500:]
    assert "accuracy" in fresh.stdout
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
