"""Time series (issue 18): `data.windows` over a csv or npz series, split by time, windows made
as `keras.utils.timeseries_dataset_from_array` makes them, normalized with the training part's
statistics, and a saved model that takes raw windows; keras.io's two time-series examples as
recipes (configs/keras_io/timeseries_*.yaml), compared with the examples' own Keras code."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest
from conftest import CONFIGS

import kerakit as kk
from kerakit.cli import main
from kerakit.data import load_data
from kerakit.data.series import timeline
from kerakit.errors import DataError, RecipeError
from kerakit.recipe.data import resolve_data

KERAS_IO = CONFIGS / "keras_io"


# ------------------------------------------------------------------ the examples' own code


def weather_forecasting_model():
    """keras.io timeseries_weather_forecasting ("Training"); inputs.shape is (256, 120, 7)."""
    inputs = keras.layers.Input(shape=(120, 7))
    lstm_out = keras.layers.LSTM(32)(inputs)
    outputs = keras.layers.Dense(1)(lstm_out)
    return keras.Model(inputs=inputs, outputs=outputs)


def timeseries_classification_model(input_shape=(500, 1), num_classes=2):
    """keras.io timeseries_classification_from_scratch ("Build a model": make_model)."""
    input_layer = keras.layers.Input(input_shape)

    conv1 = keras.layers.Conv1D(filters=64, kernel_size=3, padding="same")(input_layer)
    conv1 = keras.layers.BatchNormalization()(conv1)
    conv1 = keras.layers.ReLU()(conv1)

    conv2 = keras.layers.Conv1D(filters=64, kernel_size=3, padding="same")(conv1)
    conv2 = keras.layers.BatchNormalization()(conv2)
    conv2 = keras.layers.ReLU()(conv2)

    conv3 = keras.layers.Conv1D(filters=64, kernel_size=3, padding="same")(conv2)
    conv3 = keras.layers.BatchNormalization()(conv3)
    conv3 = keras.layers.ReLU()(conv3)

    gap = keras.layers.GlobalAveragePooling1D()(conv3)

    output_layer = keras.layers.Dense(num_classes, activation="softmax")(gap)

    return keras.models.Model(inputs=input_layer, outputs=output_layer)


def example_windows(data: np.ndarray, target: int, split_fraction, past, future, step):
    """The example's data preparation ("Data Preprocessing" to "Validation dataset"), with
    pandas as it has it, unbatched; `data` already normalized (or not)."""
    train_split = int(split_fraction * int(data.shape[0]))
    features = pd.DataFrame(data)
    train_data = features.loc[0 : train_split - 1]
    val_data = features.loc[train_split:]
    start = past + future
    end = start + train_split
    x_train = train_data[list(range(data.shape[1]))].values
    y_train = features.iloc[start:end][[target]]
    sequence_length = int(past / step)
    dataset_train = keras.utils.timeseries_dataset_from_array(
        x_train, y_train, sequence_length=sequence_length, sampling_rate=step, batch_size=None
    )
    x_end = len(val_data) - past - future
    label_start = train_split + past + future
    x_val = val_data.iloc[:x_end][list(range(data.shape[1]))].values
    y_val = features.iloc[label_start:][[target]]
    dataset_val = keras.utils.timeseries_dataset_from_array(
        x_val, y_val, sequence_length=sequence_length, sampling_rate=step, batch_size=None
    )
    return dataset_train, dataset_val


def pairs(ds) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(np.asarray(x), np.asarray(y)) for x, y in ds])
    return np.stack(xs), np.stack(ys)


# ------------------------------------------------------------------ a small series


def series(n: int = 300, seed: int = 0) -> np.ndarray:
    """Columns: the row number, a wave, a drift; row i's values tell which row it is."""
    t = np.arange(n, dtype="float64")
    wave = np.sin(t / 9) * 3 + 10 + np.random.default_rng(seed).normal(0, 0.1, n)
    return np.stack([t, wave, 0.5 * t - 20], axis=1).round(4).astype("float32")


def write_csv(path, data: np.ndarray, rows: slice = slice(None)):
    lines = ["Date Time,t,T (degC),drift"]
    lines += [f"d{i},{a:g},{b:g},{c:g}" for i, (a, b, c) in enumerate(data[rows])]
    path.write_text("\n".join(lines) + "\n")
    return path


COLUMNS = ["t", "T (degC)", "drift"]


def windows_section(path, **keys) -> dict:
    w = {"sequence_length": 5, "sampling_rate": 3, "target": "T (degC)", "offset": 4,
         "features": COLUMNS, **keys.pop("windows", {})}  # fmt: skip
    return {"source": f"csv:{path}", "windows": w, "validation_split": 0,
            "test_split": 0, **keys}  # fmt: skip


@pytest.fixture
def csv_series(tmp_path):
    data = series()
    return data, write_csv(tmp_path / "series.csv", data)


# ------------------------------------------------------------------ the examples as recipes


@pytest.mark.parametrize(
    "name, make, params, shape",
    [
        ("timeseries_weather_forecasting", weather_forecasting_model, 5_153, (120, 7)),
        ("timeseries_classification_from_scratch", timeseries_classification_model, 25_858,
         (500, 1)),
    ],
)  # fmt: skip
def test_the_recipes_build_the_examples_models(name, make, params, shape):
    example = make()
    model = kk.build_model(kk.load_recipe(KERAS_IO / f"{name}.yaml"))
    assert example.count_params() == model.count_params() == params
    ours = [layer for layer in model.layers if layer.weights]
    theirs = [layer for layer in example.layers if layer.weights]
    assert [type(a).__name__ for a in theirs] == [type(b).__name__ for b in ours]
    for a, b in zip(theirs, ours):
        b.set_weights(a.get_weights())
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), example.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)  # fmt: skip


def test_the_weather_recipe_reads_the_examples_columns_and_numbers():
    data = kk.load_recipe(KERAS_IO / "timeseries_weather_forecasting.yaml")["data"]
    w = data["windows"]
    assert data["source"] == "csv:jena_climate_2009_2016.csv"
    assert (w["sequence_length"], w["sampling_rate"], w["offset"]) == (120, 6, 72)
    assert w["sequence_length"] * w["sampling_rate"] == 720  # the example's `past`
    assert len(w["features"]) == 7 and w["target"] == w["features"][1] == "T (degC)"
    assert data["normalize"] and 1 - data["validation_split"] == pytest.approx(0.715)
    # the example's 300,693 training rows of Jena's 420,551
    assert timeline(420_551, data["validation_split"], data["test_split"])["train"] == (0, 300_693)


# ------------------------------------------------------------------ windows and targets


def test_windows_and_targets_are_the_examples(csv_series):
    """The same (window, target) pairs as the example's own preparation: its training
    windows all (its targets run past the split, so kerakit's are the ones before), and
    its validation windows, with `validation_split` the example's 1 - split_fraction."""
    data, path = csv_series
    past, future, step, fraction = 15, 4, 3, 0.7
    section = windows_section(path, validation_split=0.3)
    bundle = load_data(section, seed=0)
    theirs_train, theirs_val = (
        pairs(d) for d in example_windows(data, 1, fraction, past, future, step)
    )
    ours_train, ours_val = pairs(bundle.train), pairs(bundle.val)
    assert ours_train[0].shape[1:] == (5, 3) and ours_train[1].shape[1:] == (1,)
    n = len(ours_train[0])
    np.testing.assert_array_equal(ours_train[0], theirs_train[0][:n])
    np.testing.assert_array_equal(ours_train[1], theirs_train[1][:n])
    assert n == int(fraction * len(data)) - past - future  # no target from the validation rows
    m = len(theirs_val[0])
    np.testing.assert_array_equal(ours_val[0][:m], theirs_val[0])
    np.testing.assert_array_equal(ours_val[1][:m], theirs_val[1])
    # the target is `offset` rows after the window's span: row start + 5 * 3 + 4
    assert np.all(ours_train[1][:, 0] == data[ours_train[0][:, 0, 0].astype(int) + 19, 1])


@pytest.mark.parametrize("stride, rate, offset", [(1, 1, 0), (2, 3, 4), (3, 2, 7)])
def test_windows_match_timeseries_dataset_from_array(csv_series, stride, rate, offset):
    data, path = csv_series
    w = {"sampling_rate": rate, "sequence_stride": stride, "offset": offset}
    bundle = load_data(windows_section(path, windows=w), seed=0)
    delay = 5 * rate + offset
    expected = keras.utils.timeseries_dataset_from_array(
        data, data[delay:, 1:2], sequence_length=5, sampling_rate=rate, sequence_stride=stride,
        batch_size=None,
    )  # fmt: skip
    ours, theirs = pairs(bundle.train), pairs(expected)
    assert bundle.sizes["train"] == len(ours[0]) == len(theirs[0])
    np.testing.assert_array_equal(ours[0], theirs[0])
    np.testing.assert_array_equal(ours[1], theirs[1])


def test_the_split_is_by_time_and_no_window_crosses_it(csv_series):
    data, path = csv_series
    bundle = load_data(windows_section(path, validation_split=0.2, test_split=0.1), seed=3)
    parts = timeline(len(data), 0.2, 0.1)
    assert parts == {"train": (0, 210), "val": (210, 270), "test": (270, 300)}
    seen = {}
    for split in ("train", "val", "test"):
        x, y = pairs(getattr(bundle, split))
        first, end = parts[split]
        rows = x[:, :, 0].astype(int)  # column t is the row number
        target_rows = rows[:, 0] + 5 * 3 + 4
        assert rows.min() == first and target_rows.max() == end - 1, split
        assert np.all(np.diff(rows[:, 0]) == 1)  # in time order, every start
        seen[split] = set(rows.ravel()) | set(target_rows)
    assert not seen["train"] & seen["val"] and not seen["val"] & seen["test"]


def test_normalization_uses_the_training_rows_only(csv_series):
    data, path = csv_series
    section = windows_section(path, validation_split=0.2, test_split=0.1, normalize=True)
    bundle = load_data(section, seed=0)
    train_rows = data[:210].astype("float64")
    layer = bundle.normalizer
    np.testing.assert_allclose(np.ravel(layer.input_mean), train_rows.mean(0), rtol=1e-6)
    np.testing.assert_allclose(np.ravel(layer.input_variance), train_rows.var(0), rtol=1e-5)
    assert bundle.stats is None  # nothing left for predict to apply: the model holds it
    raw = load_data(section, seed=0, raw_features=True)
    for split in ("train", "test"):
        (xn, yn), (xr, yr) = pairs(getattr(bundle, split)), pairs(getattr(raw, split))
        np.testing.assert_array_equal(yn, yr)  # the target stays in its own units
        np.testing.assert_allclose(xn, (xr - train_rows.mean(0)) / train_rows.std(0), atol=1e-4)
        np.testing.assert_allclose(layer(xr), xn, atol=1e-5)  # the layer does the same


def test_an_npz_series_by_column_index(tmp_path):
    data = series()
    np.savez(tmp_path / "s.npz", series=data)
    section = {"source": f"npz:{tmp_path / 's.npz'}", "validation_split": 0.1, "test_split": 0,
               "windows": {"sequence_length": 4, "target": 1, "features": [0, 2]}}  # fmt: skip
    bundle = load_data(section, seed=0)
    x, y = pairs(bundle.train)
    assert bundle.input_shape == (4, 2) and bundle.task == "regression"
    np.testing.assert_array_equal(x[0], data[0:4][:, [0, 2]])
    assert y[0, 0] == data[4, 1]  # offset 0: the next row
    np.savez(tmp_path / "x.npz", x_train=data)
    with pytest.raises(DataError, match=r"has no array 'series' \(it holds \['x_train'\]\)"):
        load_data({**section, "source": f"npz:{tmp_path / 'x.npz'}"}, seed=0)


# ------------------------------------------------------------------ mistakes


@pytest.mark.parametrize(
    "windows, extra, message",
    [
        ("{sequence_lenght: 4, target: T}", "", "data.windows.sequence_lenght: unknown key "
         "'sequence_lenght'"),
        ("{sequence_length: 4}", "", "data.windows: missing required key 'target'"),
        ("{sequence_length: 4, sampling_rate: 0, target: T}", "",
         "data.windows.sampling_rate: 0 is out of range"),
        ("{sequence_length: 4, target: T, features: t}", "", "data.windows.features: expected "
         "a list of column names"),
        ("{sequence_length: 4, target: T, features: [t, t]}", "", "'t' is listed twice"),
        ("{sequence_length: 4, target: T}", "  target: T\n", "data.target: target does not "
         "apply with `windows:`"),
        ("{sequence_length: 4, target: T}", "  rescale: 0.1\n", "data.rescale: rescale does "
         "not apply with `windows:`"),
    ],
)  # fmt: skip
def test_recipe_mistakes_name_the_key(write_recipe, windows, extra, message):
    path = write_recipe(
        f"data:\n  source: csv:s.csv\n  windows: {windows}\n{extra}model:\n  sequential: [Dense]\n"
    )
    with pytest.raises(RecipeError) as info:
        kk.load_recipe(path)
    text = str(info.value)
    assert text.startswith(f"{path}:") and message in text, text
    if "lenght" in message:
        assert "did you mean 'sequence_length'" in text


def test_a_key_of_windows_is_recorded_only_when_set():
    assert "windows" not in resolve_data({"source": "csv:t.csv", "target": "y"})
    assert "windows" not in resolve_data({"source": "npz:t.npz"})
    with pytest.raises(RecipeError, match=r"windows.target: expected a column index \(of the npz"):
        resolve_data({"source": "npz:t.npz", "windows": {"sequence_length": 2, "target": "T"}})


def test_data_mistakes_name_the_row_the_column_and_the_rows_needed(tmp_path, csv_series):
    data, path = csv_series
    with pytest.raises(DataError, match=r"has no column 'T \(degF\)'.*T \(degC\)"):
        load_data(windows_section(path, windows={"target": "T (degF)"}))
    bad = tmp_path / "bad.csv"
    bad.write_text(path.read_text().replace("d7,7,", "d7,,"))
    with pytest.raises(DataError, match=r"bad.csv row 9, column 't': the cell is empty"):
        load_data(windows_section(bad))
    with pytest.raises(DataError, match=r"'Date Time': the cell is 'd0', not a number"):
        load_data(windows_section(path, windows={"features": None}))
    short = write_csv(tmp_path / "short.csv", data, slice(0, 50))
    with pytest.raises(DataError) as info:
        load_data(windows_section(short, validation_split=0.2, test_split=0.1))
    text = str(info.value)
    assert (
        "short.csv has 50 rows, too few for these windows: each split needs at least 20 rows"
        in text
    )
    assert "the split by time gives train 35, val 10, test 5; this needs at least 195 rows" in text
    assert len(pairs(load_data(windows_section(write_csv(tmp_path / "ok.csv", data, slice(0, 195)),
               validation_split=0.2, test_split=0.1)).test)[0]) == 1  # fmt: skip


# ------------------------------------------------------------------ end to end


RECIPE = """
name: forecast
data:
  source: csv:series.csv
  windows: {sequence_length: 5, sampling_rate: 3, target: "T (degC)", offset: 4,
            features: [t, "T (degC)", drift]}
  validation_split: 0.2
  test_split: 0.1
  normalize: true
  batch_size: 16
model:
  input_shape: [5, 3]
  sequential:
    - LSTM: {units: 4}
    - Dense: {units: 1}
compile: {optimizer: adam, loss: mse}
train: {epochs: 2, callbacks: minimal}
"""


@pytest.mark.slow
def test_train_predict_raw_rows_evaluate_and_load_in_a_fresh_process(
    tmp_path, csv_series, write_recipe, capsys
):
    data, _ = csv_series
    recipe = write_recipe(RECIPE)
    assert main(["train", str(recipe), "--set", f"output.dir={tmp_path}/runs"]) == 0
    (run,) = (tmp_path / "runs" / "forecast").iterdir()
    capsys.readouterr()
    rows = write_csv(tmp_path / "last.csv", data, slice(100, 130))  # 30 raw rows, 15 needed
    assert main(["predict", str(run), str(rows)]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert out.startswith("last.csv[last window]: ")
    printed = float(out.rsplit(" ", 1)[1])
    window = data[115:130:3]  # the last 5 * 3 rows, one in 3
    np.save(tmp_path / "window.npy", window[None])
    code = ("import sys, numpy as np, kerakit as kk\n"
            f"m = kk.load_model({str(run)!r})\n"
            f"print(float(m.predict(np.load({str(tmp_path / 'window.npy')!r}), verbose=0)[0, 0]))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.split()[-1]) == pytest.approx(printed, abs=1e-4)
    assert main(["predict", str(run), str(tmp_path / "window.npy")]) == 0
    assert float(capsys.readouterr().out.split()[-1]) == pytest.approx(printed, abs=1e-4)
    # the saved model = Normalization in front of the trained model, on raw windows
    trained = kk.load_model(run)
    assert type(trained.layers[1]).__name__ == "Normalization"
    assert main(["evaluate", str(run)]) == 0
    evaluated = json.loads((run / "evaluate.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert evaluated["split"] == "test" and evaluated["loss"] == pytest.approx(
        metrics["loss"], rel=1e-4
    )
    capsys.readouterr()
    short = write_csv(tmp_path / "short.csv", data, slice(0, 10))
    assert main(["predict", str(run), str(short)]) == 2
    err = capsys.readouterr().err
    assert "short.csv has 10 rows; this run's windows need the last 15 rows" in err


@pytest.mark.slow
def test_series_classification_from_arrays(tmp_path, capsys):
    """keras.io's FordA example as an npz of (n, steps, 1) series: trains, predicts an .npy."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 48)
    t = np.linspace(0, 6, 40)
    x = (np.sin(t[None] * (1 + y[:, None])) + rng.normal(0, 0.2, (48, 40)))[..., None]
    np.savez(tmp_path / "FordA.npz", x_train=x[:40].astype("float32"), y_train=y[:40],
             x_test=x[40:].astype("float32"), y_test=y[40:])  # fmt: skip
    sets = ["--set", f"data.source=npz:{tmp_path / 'FordA.npz'}", "--set", "model.input_shape=[40, 1]",
            "--set", "train.epochs=2", "--set", f"output.dir={tmp_path}/runs"]  # fmt: skip
    config = KERAS_IO / "timeseries_classification_from_scratch.yaml"
    assert main(["train", str(config), *sets]) == 0, capsys.readouterr().err
    (run,) = (tmp_path / "runs" / "keras-io-timeseries-classification").iterdir()
    np.save(tmp_path / "series.npy", x[40:42].astype("float32"))
    capsys.readouterr()
    assert main(["predict", str(run), str(tmp_path / "series.npy")]) == 0
    out = capsys.readouterr().out
    assert "series.npy[0]: " in out and "series.npy[1]: " in out
