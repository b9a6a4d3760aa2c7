"""The command line: in-process through main(argv), and as a real subprocess."""

import re
import subprocess
import sys

import pytest
from conftest import CONFIGS, REPO

from kerakit import __version__
from kerakit.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"kerakit {__version__}"


# `kerakit check`'s steps on every shipped config run in `pytest --kerakit configs`
# (tests/test_smoke.py), with training, saving and reloading besides.


def test_check_prints_inferred_preset(write_recipe, tmp_path, capsys):
    import numpy as np

    x = np.random.default_rng(0).normal(size=(40, 8, 8, 1)).astype("float32")
    np.savez(tmp_path / "two.npz", x_train=x, y_train=(x.mean((1, 2, 3)) > 0).astype("int64"))
    path = write_recipe("""
        data: {source: npz:two.npz}
        model:
          input_shape: [8, 8, 1]
          sequential: [Flatten, {Dense: {units: 1, activation: sigmoid}}]
        """)
    assert main(["check", str(path)]) == 0
    assert (
        "compile preset: binary (inferred: the output layer is one sigmoid unit)"
        in capsys.readouterr().out
    )


def test_check_with_set_override(capsys):
    assert (
        main(
            [
                "check",
                str(CONFIGS / "digits_cnn.yaml"),
                "--set",
                "model.sequential[5].Dense.units=32",
            ]
        )
        == 0
    )
    assert "(None, 32)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "text,words",
    [
        (
            "data: {source: digits}\nmodel: {sequential: [{Dense: {units: -1}}], input_shape: [4]}\n",
            "model.sequential[0].Dense",
        ),
        (
            "data: {source: digits}\nmodel: {sequential: [Denze], input_shape: [4]}\n",
            "did you mean 'Dense'",
        ),
        ("data: {source: digits}\nmodel: {sequential: [Flatten]\n", "not valid YAML"),
        (
            "data: {source: digits}\nmodel: {sequential: [Flatten], input_shape: [4]}\ncompile: {loss: msee}\n",
            "did you mean 'mse'",
        ),
    ],
)
def test_bad_recipe_exits_2_with_one_message(text, words, write_recipe, capsys):
    path = write_recipe(text)
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}:") and words in err
    assert "Traceback" not in err


def test_set_without_equals_exits_2(capsys):
    assert main(["check", str(CONFIGS / "digits_cnn.yaml"), "--set", "train.epochs"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_list_presets(capsys):
    assert main(["list", "presets"]) == 0
    out = capsys.readouterr().out
    assert "multiclass" in out and "regression" in out


@pytest.mark.slow
def test_subprocess_bad_recipe_no_traceback_and_debug_shows_one(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "data: {source: digits}\nmodel:\n  input_shape: [4]\n  sequential:\n    - Conv2D: {filters: 2, kernel_size: 3}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "kerakit.cli", "check", str(bad)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{bad}:5:" in proc.stderr and "model.sequential[0].Conv2D" in proc.stderr
    debug = subprocess.run(
        [sys.executable, "-m", "kerakit.cli", "--debug", "check", str(bad)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_missing_recipe_file(capsys):
    assert main(["check", "no/such.yaml"]) == 2
    assert "recipe file not found" in capsys.readouterr().err


@pytest.mark.slow
def test_console_script_exits_quickly_with_everything_written(tmp_path):
    # The `kerakit` script leaves with os._exit after main() (TensorFlow's own
    # shutdown takes about a second); stdout through a pipe and the run folder
    # must still be complete, and the exit status main()'s. Its stderr shows none of
    # TensorFlow's C++ start-up lines (kerakit._stderr).
    import os
    from pathlib import Path

    from kerakit._stderr import is_chatter

    fast_exit = "1"

    script = Path(sys.executable).parent / "kerakit"
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "kerakit.cli"]
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "data: {source: digits, batch_size: 64, flatten: true}\nmodel:\n  sequential:\n"
        "    - Dense: {units: 10, activation: softmax}\ntrain: {epochs: 1, callbacks: minimal}\n"
        f"output: {{dir: {tmp_path / 'runs'}}}\n"
    )
    env = {**os.environ, "KERAKIT_FAST_EXIT": fast_exit}
    proc = subprocess.run([*cmd, "train", str(recipe)], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [line for line in proc.stderr.splitlines() if is_chatter(line)] == [], proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("run folder: ")
    run = Path(last[len("run folder: ") :])
    for name in ("model.keras", "report.md", "history.csv", "metrics.json", "history.png"):
        assert (run / name).stat().st_size > 0, name
    assert '"status": "complete"' in (run / "run.json").read_text()
    bad = subprocess.run([*cmd, "evaluate", str(run / "nothing.keras")], capture_output=True,
                         text=True, cwd=tmp_path, env=env, timeout=300)  # fmt: skip
    assert bad.returncode == 2 and "error:" in bad.stderr


def test_predict_of_a_logits_model_prints_probabilities(write_recipe, tmp_path, capsys):
    import numpy as np

    x = np.random.default_rng(0).normal(size=(40, 4)).astype("float32")
    np.savez(tmp_path / "two.npz", x_train=x, y_train=(x[:, 0] > 0).astype("int64"))
    path = write_recipe(f"""
        data: {{source: npz:two.npz, batch_size: 8}}
        model: {{input_shape: [4], sequential: [{{Dense: {{units: 1}}}}]}}
        compile: {{loss: {{BinaryCrossentropy: {{from_logits: true}}}}}}
        train: {{epochs: 1, callbacks: minimal}}
        output: {{dir: {tmp_path / "runs"}}}
        """)
    assert main(["train", str(path)]) == 0
    (run,) = [p for p in (tmp_path / "runs").rglob("run.json")]
    np.save(tmp_path / "x.npy", np.full((2, 4), [[-50.0], [50.0]], "float32"))
    capsys.readouterr()
    assert main(["predict", str(run.parent), str(tmp_path / "x.npy"), "--top", "1"]) == 0
    out = capsys.readouterr().out
    assert "probabilities: a sigmoid of the model's outputs (its loss takes logits)" in out
    probabilities = [float(v) for v in re.findall(r"\((-?[\d.]+)\)", out)]
    assert len(probabilities) == 2 and all(0.0 <= p <= 1.0 for p in probabilities)
