"""The pictures that fit a run's task and inputs (report.kinds, report.samples,
report.outputs): the table, each picture from small arrays, report.md's lines, and two
tiny runs (a regression on a CSV, an image-to-image autoencoder on npz)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from kerakit import report
from kerakit.errors import DataError
from kerakit.report import kinds, plots, samples
from kerakit.report.outputs import file_names, write_outputs

RNG = np.random.default_rng(7)


def assert_png(path):
    """A PNG that is not blank (and no temp file left behind)."""
    assert path.is_file() and path.stat().st_size > 2000, path
    pixels = imread(path)[..., :3]
    assert pixels.std() > 0.01 and (pixels < 0.9).mean() > 0.002, f"{path.name} is blank"
    assert not list(path.parent.glob(".tmp-*"))


def not_drawn(text: str) -> dict[str, str]:
    """report.md's "Pictures not drawn" lines, {picture: why}."""
    tail = text.split("## Pictures not drawn", 1)[1] if "## Pictures not drawn" in text else ""
    lines = [line[3:] for line in tail.splitlines() if line.startswith("- `")]
    return dict(line.split("`: ", 1) for line in lines)


# --- the table: task x input kind -> pictures --------------------------------------------


@pytest.mark.parametrize(
    "preset, shape, dtype, out, options, task, kind, pictures",
    [
        ("multiclass", (28, 28, 1), "float32", (10,), {}, "classification", "image", ("confusion.png", "errors.png")),
        ("multiclass", (28, 28), "uint8", (10,), {}, "classification", "image", ("confusion.png", "errors.png")),
        ("binary", (500, 1), "float32", (1,), {}, "classification", "series", ("confusion.png", "errors.png")),
        ("binary", (500,), "float32", (1,), {}, "classification", "series", ("confusion.png", "errors.png")),
        ("multiclass", (30,), "float64", (3,), {}, "classification", "table", ("confusion.png", "errors table")),
        ("multiclass", (200,), "int64", (3,), {}, "classification", "table", ("confusion.png", "errors table")),
        ("multiclass", (120,), "float32", (3,), {"encoded": True}, "classification", "table", ("confusion.png", "errors table")),
        ("multiclass", (784,), "float32", (10,), {"flattened": True}, "classification", "flat", ("confusion.png",)),
        ("binary", (), "object", (1,), {}, "classification", "text", ("confusion.png", "errors table")),
        ("binary", (1,), "string", (1,), {}, "classification", "text", ("confusion.png", "errors table")),
        ("multiclass", {"age": (1,), "thal": ()}, None, (2,), {}, "classification", "table", ("confusion.png", "errors table")),
        ("multiclass", {"image": (8, 8, 1), "meta": (3,)}, None, (2,), {}, "classification", "named", ("confusion.png",)),
        ("regression", (4,), "float32", (1,), {}, "regression", "table", ("predictions.png",)),
        ("regression", (28, 28, 3), "float32", (1,), {}, "regression", "image", ("predictions.png",)),
        ("regression", (120, 7), "float32", (1,), {}, "regression", "series", ("predictions.png", "forecast.png")),
        ("regression", (24, 1), "bfloat16", (6,), {}, "regression", "series", ("predictions.png", "forecast.png")),
        ("binary", (28, 28, 1), "float32", (28, 28, 1), {}, "same_shape", "image", ("samples.png",)),
        ("regression", (28, 28, 1), "float32", (28, 28, 1), {}, "same_shape", "image", ("samples.png",)),
        ("regression", (100, 2), "float32", (100, 2), {}, "same_shape", "series", ("samples.png",)),
        ("multiclass", (32, 32, 3), "float32", (32, 32, 4), {}, "other", "image", ()),  # segmentation
        ("multilabel", (28, 28, 1), "float32", (5,), {}, "multilabel", "image", ()),
    ],
)  # fmt: skip
def test_the_table_picks_pictures_by_task_and_input_kind(
    preset, shape, dtype, out, options, task, kind, pictures
):
    assert kinds.task_kind(preset, shape, out) == task
    assert kinds.input_kind(shape, dtype, **options) == kind
    assert kinds.pictures_for(task, kind) == pictures


def test_several_outputs_get_no_test_pictures_and_every_absence_has_a_reason():
    assert kinds.task_kind("multiclass", (8, 8, 1), (10,), outputs=2) == "other"
    for task in kinds.TASKS:
        for kind in kinds.INPUTS:
            for name in kinds.TEST_PICTURES:
                if name not in kinds.pictures_for(task, kind):
                    assert kinds.why_not(name, task, kind), (name, task, kind)


# --- each picture, from small arrays -----------------------------------------------------


def test_a_series_classifier_s_errors_are_line_plots(tmp_path):
    x = RNG.normal(size=(20, 100, 1)).astype("float32")
    y = RNG.integers(0, 2, 20)
    probs = RNG.random((20, 1))
    fig = plots.show_errors(x, y, probs, ["normal", "abnormal"], n=6)
    assert all(ax.lines and not ax.images for ax in fig.axes)  # lines, not a 100x1 image
    assert fig.axes[0].get_title().startswith("true: ")
    written = report.write_run_pictures(
        tmp_path, y_true=y, probs=probs, x=x, class_names=["normal", "abnormal"],
        task="classification", inputs="series",
    )  # fmt: skip
    assert sorted(written) == ["confusion.png", "errors.png", "report.md"]
    assert_png(written["errors.png"])
    why = not_drawn(written["report.md"].read_text())
    assert set(why) == {"predictions.png", "forecast.png", "samples.png"}


def test_a_regression_gets_predicted_vs_true_and_its_numbers(tmp_path):
    x = RNG.normal(size=(60, 4))
    y = x @ np.array([1.0, -2.0, 0.5, 0.0])
    pred = y + RNG.normal(scale=0.3, size=60)
    fig = samples.plot_predictions(y, pred[:, None])
    scatter, residuals = fig.axes
    assert scatter.get_title().startswith("R² ") and len(scatter.lines) == 1  # the diagonal
    assert residuals.patches  # the histogram
    written = report.write_run_pictures(
        tmp_path, history={"loss": [2.0, 1.0]}, y_true=y, probs=pred[:, None], x=x,
        metrics={"loss": 0.09, "mae": 0.24}, task="regression", title="house",
    )  # fmt: skip
    assert sorted(written) == ["history.png", "predictions.png", "report.md"]
    assert_png(written["predictions.png"])
    text = written["report.md"].read_text()
    r = report.regression_report(y, pred)
    assert f"| MAE | {r['mae']:.4g} |" in text and "| R² |" in text and "| samples | 60 |" in text
    assert "](predictions.png)" in text and "Per-class" not in text
    why = not_drawn(text)
    assert set(why) == {"confusion.png", "errors.png", "forecast.png", "samples.png"}
    assert (
        "classifier" in why["confusion.png"] and "a regression on table rows" in why["errors.png"]
    )


def test_regression_numbers_by_hand():
    r = report.regression_report([1.0, 2.0, 3.0], [[1.0], [2.0], [4.0]])
    assert r == {"mae": pytest.approx(1 / 3), "rmse": pytest.approx(np.sqrt(1 / 3)),
                 "r2": pytest.approx(1 - 1 / 2), "support": 3}  # fmt: skip
    assert report.regression_report([2.0, 2.0], [2.0, 3.0])["r2"] == 0.0  # no variance


def test_a_forecaster_gets_its_windows_with_forecast_and_truth(tmp_path):
    t = np.arange(80 + 12)
    series = np.sin(t / 5.0)[:, None] + 0.1 * RNG.normal(size=(len(t), 1))
    x = np.stack([series[i : i + 12] for i in range(80)])
    y = series[12:92, 0]
    pred = y + 0.1
    fig = samples.show_forecasts(x, y, pred, n=4)
    assert len(fig.axes) == 4 and fig.axes[0].get_title().startswith("window 0: error 0.1")
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert "true" in labels and "forecast" in labels
    written = report.write_run_pictures(tmp_path, y_true=y, probs=pred, x=x, task="regression")
    assert sorted(written) == ["forecast.png", "predictions.png", "report.md"]
    assert_png(written["forecast.png"])
    text = written["report.md"].read_text()
    assert "](forecast.png)" in text and "forecast.png`" not in text
    # several features: the target on an axis of its own; a horizon: a line after the window
    fig = samples.show_forecasts(RNG.normal(size=(5, 12, 3)), RNG.normal(size=(5, 4)),
                                 RNG.normal(size=(5, 4)), n=2)  # fmt: skip
    assert len(fig.axes) == 4 and len(fig.axes[1].lines[0].get_xdata()) == 4


def test_a_text_classifier_s_errors_are_a_table_in_report_md(tmp_path):
    texts = np.array([b"great film, would watch again", b"boring | long\nand <br /> dull " * 8,
                      b"fine", "na\xefve but sweet".encode()], dtype=object)  # fmt: skip
    y = np.array([1, 0, 1, 1])
    probs = np.array([[0.1], [0.95], [0.8], [0.3]])  # wrong: 0 (0.9), 1 (0.95), 3 (0.7)
    written = report.write_run_pictures(
        tmp_path, y_true=y, probs=probs, x=texts, class_names=["neg", "pos"]
    )
    assert sorted(written) == ["confusion.png", "report.md"]  # no image of a text
    text = written["report.md"].read_text()
    table = text.split("## Most confidently wrong test samples", 1)[1].strip().splitlines()
    assert table[0] == "| sample | input | true | predicted | probability |"
    assert table[2].startswith("| 1 | boring \\| long and &lt;br /> dull boring")
    assert table[2].endswith("… | neg | pos | 0.950 |") and len(table[2]) < 140
    assert table[3] == "| 0 | great film, would watch again | pos | neg | 0.900 |"
    assert table[4] == "| 3 | na\xefve but sweet | pos | neg | 0.700 |"
    assert "the most confidently wrong samples are the table above" in not_drawn(text)["errors.png"]


def test_an_image_to_image_model_gets_input_target_output_triplets(tmp_path):
    clean = (RNG.random((10, 12, 12, 1)) > 0.6).astype("float32")
    noisy = np.clip(clean + 0.3 * RNG.normal(size=clean.shape), 0, 1)
    output = 0.5 * noisy + 0.25
    fig = samples.show_samples(noisy, clean, output, n=4)
    assert len(fig.axes) == 12 and [ax.get_title() for ax in fig.axes[:3]] == [
        "input", "target", "output",
    ]  # fmt: skip
    written = report.write_run_pictures(tmp_path, y_true=clean, probs=output, x=noisy)
    assert sorted(written) == ["report.md", "samples.png"]  # the task from the shapes
    assert_png(written["samples.png"])
    text = written["report.md"].read_text()
    assert "](samples.png)" in text and "| RMSE |" in text and "Per-class" not in text
    assert set(not_drawn(text)) == {
        "confusion.png",
        "errors.png",
        "predictions.png",
        "forecast.png",
    }
    fig = samples.show_samples(RNG.normal(size=(3, 50, 1)), *RNG.normal(size=(2, 3, 50, 1)))
    assert len(fig.axes) == 3 and len(fig.axes[0].lines) == 3  # series: three lines each


def test_without_a_test_split_report_md_says_so(tmp_path):
    written = report.write_run_pictures(
        tmp_path, history={"loss": [1.0, 0.5]}, task="classification", inputs="image"
    )
    why = not_drawn(written["report.md"].read_text())
    assert why["confusion.png"].startswith("no test split") and why["errors.png"].startswith(
        "no test split"
    )
    assert "regression" in why["predictions.png"]


def test_image_outputs_are_written_as_png_files_or_one_npy(tmp_path):
    outputs = RNG.random((3, 12, 12, 1)).astype("float32")
    labels = ["a/img01.png", "noisy.npy[1]", "noisy.npy[2]"]
    assert file_names(labels) == ["img01", "noisy-1", "noisy-2"]
    lines = []
    rows = write_outputs(outputs, labels, tmp_path / "out", print_fn=lines.append)
    assert [r["file"] for r in rows] == [
        str(tmp_path / "out" / f"{n}.png") for n in file_names(labels)
    ]
    assert imread(rows[0]["file"]).shape[:2] == (12, 12)
    write_outputs(outputs, labels, tmp_path / "out.npy", print_fn=lines.append)
    assert np.array_equal(np.load(tmp_path / "out.npy"), outputs)
    lines.clear()
    write_outputs(outputs, labels, None, print_fn=lines.append)
    assert lines[0].startswith("a/img01.png: an output of shape (12, 12, 1), values ")
    assert len(lines) == 4 and "--output" in lines[-1]  # not 144 numbers per input
    with pytest.raises(DataError, match=r"give a folder \(PNG files\) or a \.npy file"):
        write_outputs(outputs, labels, tmp_path / "out.csv", print_fn=lines.append)


# --- two tiny runs ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_regression_run_on_a_csv_gets_predictions_png(tmp_path):
    import kerakit as kk

    x = RNG.normal(size=(120, 3))
    y = x @ np.array([1.0, 2.0, -1.0])
    rows = ["a,b,c,price"] + [",".join(f"{v:.4f}" for v in (*r, t)) for r, t in zip(x, y)]
    (tmp_path / "house.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "house.yaml").write_text(
        "data: {source: csv:house.csv, target: price, batch_size: 32}\n"
        "model: {sequential: [{Dense: {units: 4, activation: relu}}, {Dense: 1}]}\n"
        f"train: {{epochs: 1, callbacks: minimal, verbose: 0}}\noutput: {{dir: {tmp_path / 'runs'}}}\n"
    )
    run = kk.train(tmp_path / "house.yaml")
    assert run.recipe["compile"]["preset"] == "regression"
    assert_png(run.path / "predictions.png")
    assert not (run.path / "confusion.png").exists() and not (run.path / "errors.png").exists()
    text = (run.path / "report.md").read_text()
    assert "](predictions.png)" in text and "| R² |" in text and "| mae |" in text
    assert set(not_drawn(text)) == {"confusion.png", "errors.png", "forecast.png", "samples.png"}


@pytest.mark.slow
def test_an_image_to_image_run_on_npz_gets_samples_png_and_predicts_images(tmp_path, capsys):
    import kerakit as kk
    from kerakit.cli import main

    clean = (RNG.random((48, 12, 12, 1)) > 0.6).astype("float32")
    noisy = np.clip(clean + 0.3 * RNG.normal(size=clean.shape), 0, 1).astype("float32")
    np.savez(tmp_path / "noisy.npz", x_train=noisy, y_train=clean)
    (tmp_path / "denoise.yaml").write_text(
        "data: {source: npz:noisy.npz, batch_size: 16}\n"
        "model:\n  input_shape: [12, 12, 1]\n  sequential:\n"
        "    - Conv2D: {filters: 4, kernel_size: 3, padding: same, activation: relu}\n"
        "    - Conv2D: {filters: 1, kernel_size: 3, padding: same, activation: sigmoid}\n"
        "compile: {loss: binary_crossentropy}\n"
        f"train: {{epochs: 1, callbacks: minimal, verbose: 0}}\noutput: {{dir: {tmp_path / 'runs'}}}\n"
    )
    run = kk.train(tmp_path / "denoise.yaml")
    assert_png(run.path / "samples.png")
    assert not (run.path / "confusion.png").exists()  # it used to fail on (12, 12, 1) labels
    text = (run.path / "report.md").read_text()
    assert "](samples.png)" in text and "| RMSE |" in text and "Per-class" not in text
    assert "confusion.png" in not_drawn(text)
    np.save(tmp_path / "q.npy", noisy[:3])
    capsys.readouterr()
    assert main(["predict", str(run.path), str(tmp_path / "q.npy")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("q.npy[0]: an output of shape (12, 12, 1)") and len(out) == 4
    assert (
        main(["predict", str(run.path), str(tmp_path / "q.npy"), "--output", str(tmp_path / "png")])
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["q-0.png", "q-1.png", "q-2.png"]
    assert (
        main(
            ["predict", str(run.path), str(tmp_path / "q.npy"), "--output", str(tmp_path / "o.npy")]
        )
        == 0
    )
    assert np.load(tmp_path / "o.npy").shape == (3, 12, 12, 1)
