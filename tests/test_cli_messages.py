"""What `kerakit evaluate` and `kerakit predict` say, and the exit status of a full disk."""

import errno
import json
import re

import pytest

import kerakit.recipe
from kerakit.cli import main

RECIPE = """\
data: {source: digits, batch_size: 64}
model:
  input_shape: [8, 8, 1]
  sequential: [Flatten, {Dense: {units: 10, activation: softmax}}]
compile: {preset: multiclass}
"""


def _model(path, shape):
    """A tiny compiled classifier taking `shape`, saved at `path`."""
    import keras

    model = keras.Sequential(
        [keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.save(path)
    return path


def test_evaluate_a_model_on_data_of_another_shape_exits_2_naming_both(tmp_path, capsys):
    model = _model(tmp_path / "mnist.keras", (28, 28, 1))
    assert main(["evaluate", str(model), "--data", "digits"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "unexpected" not in err and "report it" not in err
    assert "(28, 28, 1)" in err and "(8, 8, 1)" in err and "digits" in err


def test_evaluate_says_which_split_it_measured(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    _model(run / "model.keras", (8, 8, 1))
    (run / "run.json").write_text('{"status": "complete"}\n')
    (run / "recipe.resolved.yaml").write_text(RECIPE)
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    said = re.search(r"^evaluated on the test split of digits \((\d+) examples\)$", out, re.M)
    assert said and 300 < int(said[1]) < 400, out  # digits: 1,797 examples, test_split 0.2
    assert "accuracy: " in out
    saved = json.loads((run / "evaluate.json").read_text())
    assert saved["split"] == "test" and saved["examples"] == int(said[1]) and "accuracy" in saved
    assert main(["evaluate", str(run / "model.keras"), "--data", "digits"]) == 0
    assert said[0] in capsys.readouterr().out


def test_predict_on_a_file_that_is_not_an_image_names_it(tmp_path, capsys):
    model = _model(tmp_path / "m.keras", (8, 8, 1))
    fake = tmp_path / "photo.png"
    fake.write_text("this is not a picture\n")
    assert main(["predict", str(model), str(fake)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {fake}: not a readable image")
    assert "BytesIO" not in err and " at 0x" not in err


@pytest.mark.parametrize(
    "error,said",
    [
        (OSError(errno.ENOSPC, "No space left on device", "/data/runs/x/history.csv"),
         "disk full: /data/runs/x/history.csv: No space left on device"),
        # the atomic writer's temporary beside the target: the message names the target
        (OSError(errno.ENOSPC, "No space left on device", "/r/x/.tmp-41-0123abcd-model.keras"),
         "disk full: /r/x/model.keras: No space left on device"),
        (OSError(errno.ENOSPC, "No space left on device"), "disk full: No space left on device"),
        # TensorFlow's own error, raised from the OSError, or with the words only
        (RuntimeError("could not save the checkpoint"), "disk full: /ckpt: No space left"),
        (RuntimeError("/tmp/x.h5: write failed; No space left on device"),
         "disk full: /tmp/x.h5: write failed; No space left on device"),
    ],
)  # fmt: skip
def test_a_full_disk_exits_2_and_says_so(error, said, monkeypatch, capsys):
    def full(*args, **kwargs):
        if str(error) == "could not save the checkpoint":
            raise error from OSError(errno.ENOSPC, "No space left on device", "/ckpt")
        raise error

    monkeypatch.setattr(kerakit.recipe, "registries", full)
    assert main(["list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {said}") and "free some space" in err
    assert "unexpected" not in err and "report it" not in err


def test_other_os_errors_are_still_unexpected(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error", "/dev/sdz")

    monkeypatch.setattr(kerakit.recipe, "registries", broken)
    assert main(["list"]) == 1
    assert "unexpected" in capsys.readouterr().err
