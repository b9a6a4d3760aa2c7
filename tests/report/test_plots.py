"""report.plots and report.figures: real pictures, saved and looked at as PNG files."""

from __future__ import annotations

import os

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread

from kerakit import report
from kerakit.errors import DataError
from kerakit.report import plots
from kerakit.report.figures import displayable

# A small fixed example, worked out by hand below. Class 3 ("d") never occurs
# and is never predicted: every ratio of it divides by zero and must be 0.
Y_TRUE = [0, 0, 0, 1, 1, 2, 2, 2]
NAMES = ["a", "b", "c", "d"]


def assert_real_png(path, min_bytes=3000):
    """The file is a PNG of some size, and the picture is not blank."""
    assert path.is_file() and path.stat().st_size > min_bytes, path
    pixels = imread(path)[..., :3]
    assert pixels.ndim == 3 and pixels.shape[0] > 50 and pixels.shape[1] > 50
    assert pixels.std() > 0.01, "blank picture"
    assert (pixels < 0.9).mean() > 0.002, "nothing but white"
    assert not list(path.parent.glob(".tmp-*")), "temp file left behind"  # kerakit._files


# --- plots: real pictures ------------------------------------------------------


def test_history_from_dict(tmp_path):
    history = {
        "loss": [1.2, 0.8, 0.6, 0.5],
        "accuracy": [0.5, 0.7, 0.8, 0.85],
        "val_loss": [1.3, 0.9, 0.7, 0.75],
        "val_accuracy": [0.4, 0.6, 0.7, 0.72],
        "learning_rate": [1e-3, 1e-3, 1e-4, 1e-4],
    }
    fig = plots.plot_history(history)
    assert isinstance(fig, Figure)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "accuracy", "learning_rate"]
    loss_ax = fig.axes[0]
    assert [line.get_label() for line in loss_ax.lines][:2] == ["train", "validation"]
    assert np.allclose(loss_ax.lines[1].get_ydata(), history["val_loss"])
    assert fig.axes[2].get_yscale() == "log"
    assert_real_png(plots.save_figure(fig, tmp_path / "history.png"))


def test_history_csv_with_stage_column(tmp_path):
    csv = tmp_path / "history.csv"
    csv.write_text(
        "epoch,accuracy,loss,val_accuracy,val_loss,stage\n"
        "0,0.5,1.2,0.45,1.3,head\n"
        "1,0.7,0.8,0.6,0.9,head\n"
        "2,0.6,0.9,0.55,1.0,head\n"
        "0,0.8,0.5,0.7,0.6,fine_tune\n"  # Keras restarts epoch numbers per fit()
        "1,0.9,0.3,0.8,0.5,fine_tune\n"
    )
    fig = plots.plot_history(tmp_path)  # a run folder finds its history.csv
    loss_ax = fig.axes[0]
    assert loss_ax.get_title() == "loss"
    assert loss_ax.lines[0].get_xdata().tolist() == [1, 2, 3, 4, 5]  # one continuous axis
    boundaries = [ln.get_xdata()[0] for ln in loss_ax.lines if ln.get_linestyle() == ":"]
    assert boundaries == [3.5]  # between epoch 3 (head) and 4 (fine_tune)
    assert {"head", "fine_tune"} <= {t.get_text() for t in loss_ax.texts}
    assert any(t.get_text().startswith("best 0.5") for t in loss_ax.texts)
    assert "stage" not in [ax.get_title() for ax in fig.axes]
    assert_real_png(plots.save_figure(fig, tmp_path / "history.png"))


def test_history_dict_as_read_back_from_csv():
    # what a run gets from parsing its history.csv: epoch as floats, stage as strings
    history = {"epoch": [0.0, 1.0, 0.0], "loss": [1.0, 0.8, 0.5], "stage": ["head", "head", "fine"]}
    fig = plots.plot_history(history)
    assert [ax.get_title() for ax in fig.axes] == ["loss"]
    boundaries = [ln.get_xdata()[0] for ln in fig.axes[0].lines if ln.get_linestyle() == ":"]
    assert boundaries == [2.5]


def test_history_missing_file_says_where(tmp_path):
    with pytest.raises(DataError, match="history.csv"):
        plots.plot_history(tmp_path)


@pytest.mark.parametrize("normalize", [False, True])
def test_confusion_picture(tmp_path, normalize):
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 4, 60)
    probs = rng.random((60, 4))
    fig = plots.plot_confusion(y_true, probs, class_names=NAMES, normalize=normalize)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == NAMES
    counts = [int(t.get_text().split("(")[-1].rstrip(")")) for t in ax.texts]
    assert sum(counts) == 60 and len(counts) == 16
    cm = report.confusion_matrix(y_true, probs, 4)
    assert ax.get_title().startswith(f"{np.trace(cm)}/60 correct")
    assert_real_png(plots.save_figure(fig, tmp_path / "confusion.png"))


def test_confusion_counts_match_keras_evaluate():
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(2)
    x = rng.random((64, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, 64)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3, "softmax")]
    )
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    accuracy = model.evaluate(x, y, verbose=0, return_dict=True)["accuracy"]
    probs = model.predict(x, verbose=0)
    cm = report.confusion_matrix(y, probs, 3)
    assert cm.sum() == 64
    assert np.trace(cm) / cm.sum() == pytest.approx(accuracy, abs=1e-6)
    r = report.classification_report(y, probs, num_classes=3)
    assert r["accuracy"] == pytest.approx(accuracy, abs=1e-6)


def test_show_errors_picks_most_confidently_wrong(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.random((6, 8, 8, 1))
    y_true = [0, 1, 2, 0, 1, 2]
    probs = np.array(
        [
            [0.9, 0.05, 0.05],  # right
            [0.6, 0.3, 0.1],  # wrong: pred a at 0.60
            [0.05, 0.9, 0.05],  # wrong: pred b at 0.90
            [0.2, 0.1, 0.7],  # wrong: pred c at 0.70
            [0.1, 0.8, 0.1],  # right
            [0.34, 0.33, 0.33],  # wrong: pred a at 0.34
        ]
    )
    fig = plots.show_errors(x, y_true, probs, class_names=["a", "b", "c"], n=3)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        "true: c\npred: b (0.90)",
        "true: a\npred: c (0.70)",
        "true: b\npred: a (0.60)",
    ]
    assert_real_png(plots.save_figure(fig, tmp_path / "errors.png"))


def test_show_errors_tabular_and_none_wrong(tmp_path):
    x = np.arange(24, dtype=float).reshape(4, 6)  # rows of a table, not images
    fig = plots.show_errors(x, [0, 1, 0, 1], [0.9, 0.8, 0.1, 0.2], n=4)
    assert fig.axes[0].tables  # drawn as a table
    assert_real_png(plots.save_figure(fig, tmp_path / "tab.png"), min_bytes=2000)
    fig = plots.show_errors(x, [1, 1, 0, 0], [0.9, 0.8, 0.1, 0.2])
    assert "No misclassified" in fig.texts[0].get_text()
    assert_real_png(plots.save_figure(fig, tmp_path / "none.png"), min_bytes=1000)


def test_show_batch_digits_dataset(tmp_path):
    tf = pytest.importorskip("tensorflow")
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    x = digits.images[:40, :, :, None].astype("float32")  # 8x8x1, values 0-16
    y = digits.target[:40]
    names = [f"digit {i}" for i in range(10)]
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(7)
    fig = plots.show_batch(ds, class_names=names, n=16)  # spans three batches
    assert [ax.get_title() for ax in fig.axes] == [names[v] for v in y[:16]]
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (8, 8) and image.min() >= 0 and image.max() > 0.5
    assert_real_png(plots.save_figure(fig, tmp_path / "batch.png"))
    # unbatched, one-hot labels: same pictures
    onehot = tf.data.Dataset.from_tensor_slices((x, tf.one_hot(y, 10)))
    fig = plots.show_batch(onehot, class_names=names, n=5)
    assert [ax.get_title() for ax in fig.axes] == [names[v] for v in y[:5]]


def test_show_batch_rgb_arrays(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (10, 12, 12, 3), dtype=np.uint8)
    y = np.eye(3)[rng.integers(0, 3, 10)]  # one-hot
    fig = plots.show_batch((x, y), class_names=["r", "g", "b"], n=6)
    assert len(fig.axes) == 6
    shown = fig.axes[0].images[0].get_array()
    assert shown.shape == (12, 12, 3)
    assert np.allclose(shown, x[0] / 255, atol=1e-6)  # 0-255 pixels scaled, not stretched
    assert_real_png(plots.save_figure(fig, tmp_path / "rgb.png"))


@pytest.mark.parametrize(
    "pixels, expected",
    [
        ([0.0, 0.5, 0.8], [0.0, 0.5, 0.8]),  # already [0, 1]: unchanged
        ([-1.0, 0.0, 0.8], [0.0, 0.5, 0.9]),  # [-1, 1]: (x + 1) / 2
        (np.array([0, 51, 204], "uint8"), [0.0, 0.2, 0.8]),  # raw pixels: / 255
        ([0.0, 4.0, 16.0], [0.0, 0.25, 1.0]),  # sklearn digits (0-16): stretched
        ([-3.0, 0.0, 3.0], [0.0, 0.5, 1.0]),  # standardized: stretched
    ],
)
def test_displayable_scales_to_unit_range(pixels, expected):
    x = np.asarray(pixels).reshape(1, 1, 3)  # one 1x3 grayscale image
    images, cmap = displayable(x)
    assert cmap == "gray"
    assert images.ravel() == pytest.approx(expected, abs=1e-6)


def test_save_figure_is_atomic_and_overwrites(tmp_path):
    target = tmp_path / "deep" / "fig.png"
    plots.save_figure(plots.plot_history({"loss": [1.0]}), target)
    first = target.stat().st_size
    plots.save_figure(plots.plot_history({"loss": [3.0, 2.0, 1.0]}), target)
    assert target.stat().st_size != first
    assert_real_png(target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["fig.png"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600


def test_write_run_pictures_end_to_end(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.random((30, 8, 8, 1))
    y = rng.integers(0, 3, 30)
    probs = rng.dirichlet(np.ones(3), 30)
    written = report.write_run_pictures(
        tmp_path,
        history={"loss": [1.0, 0.5], "val_loss": [1.1, 0.8]},
        y_true=y,
        probs=probs,
        x=x,
        class_names=["a", "b", "c"],
        metrics={"loss": 0.8, "accuracy": 0.4},
        title="tiny",
    )
    assert sorted(written) == ["confusion.png", "errors.png", "history.png", "report.md"]
    for name in ("confusion.png", "errors.png", "history.png"):
        assert_real_png(written[name])
    text = written["report.md"].read_text()
    for name in ("history.png", "confusion.png", "errors.png"):
        assert f"]({name})" in text
    assert "| a |" in text and "**macro avg**" in text


def test_figures_display_inline_in_ipython():
    interactiveshell = pytest.importorskip("IPython.core.interactiveshell")
    shell = interactiveshell.InteractiveShell.instance()
    try:
        data, _ = shell.display_formatter.format(plots.plot_history({"loss": [1.0, 0.5]}))
        assert data["image/png"][:4] == b"\x89PNG"
    finally:
        interactiveshell.InteractiveShell.clear_instance()


def test_run_pictures_of_a_logits_model(tmp_path):
    x = np.random.default_rng(0).random((4, 8, 8, 1))
    logits = np.array([[-3.0], [0.4], [-0.2], [2.0]])  # classes 0, 1, 0, 1
    fig = plots.plot_confusion([0, 1, 1, 1], logits, ["no", "yes"], from_logits=True)
    assert fig.axes[0].get_title() == "3/4 correct (accuracy 0.750)"  # at 0.5: 2/4
    fig = plots.show_errors(x, [0, 0, 1, 0], logits, ["no", "yes"], from_logits=True)
    assert [ax.get_title() for ax in fig.axes] == [
        "true: no\npred: yes (0.88)", "true: no\npred: yes (0.60)", "true: yes\npred: no (0.55)",
    ]  # fmt: skip
    report.write_run_pictures(tmp_path, y_true=[0, 1, 1, 1], probs=logits, x=x, from_logits=True)
    assert "| **accuracy** | | | 0.750 | 4 |" in (tmp_path / "report.md").read_text()
