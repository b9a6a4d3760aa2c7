"""A classifier's interpretation: top losses, most-confused pairs, Grad-CAM, test-time
augmentation; each from small arrays, then one tiny run end to end."""

import numpy as np
import pytest
from conftest import CONFIGS

from kerakit import report
from kerakit.errors import DataError
from kerakit.report import interpret, kinds

RNG = np.random.default_rng(0)


def assert_png(path):
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- top losses and most confused, from arrays -------------------------------------------


def test_top_losses_are_the_cross_entropy_highest_first():
    y = [0, 1, 2, 0]
    probs = np.array([[0.9, 0.05, 0.05], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.01, 0.98, 0.01]])
    idx, losses = interpret.top_losses(y, probs, k=3)
    assert idx.tolist() == [3, 1, 2]
    np.testing.assert_allclose(losses, -np.log([0.01, 0.2, 0.8]))
    idx, losses = interpret.top_losses([1, 0], np.array([[0.3], [0.6]]), k=2)  # one sigmoid unit
    assert idx.tolist() == [0, 1]
    np.testing.assert_allclose(losses, -np.log([0.3, 0.4]))


def test_most_confused_counts_a_known_confusion_exactly():
    true = [0] * 5 + [1] * 4 + [2] * 3
    pred = [0, 0, 1, 1, 1] + [1, 0, 2, 2] + [2, 2, 0]
    probs = np.eye(3)[pred] * 0.9 + 0.1 / 3
    assert interpret.most_confused(true, probs) == [(0, 1, 3), (1, 2, 2), (1, 0, 1), (2, 0, 1)]
    names = ["cat", "dog", "fox"]
    assert interpret.most_confused(true, probs, names, min_count=2) == [
        ("cat", "dog", 3), ("dog", "fox", 2),
    ]  # fmt: skip
    assert interpret.most_confused(true, np.asarray(pred)) == [  # class ids work too
        (0, 1, 3), (1, 2, 2), (1, 0, 1), (2, 0, 1),
    ]  # fmt: skip
    table = interpret.format_most_confused_table(interpret.most_confused(true, probs, names))
    assert "| cat | dog | 3 |" in table and "| fox | cat | 1 |" in table


def test_plot_top_losses_titles_images_and_lists_table_rows():
    x = RNG.random((12, 8, 8, 1)).astype("float32")
    y = RNG.integers(0, 3, 12)
    probs = RNG.dirichlet(np.ones(3), 12)
    fig = interpret.plot_top_losses(x, y, probs, ["a", "b", "c"], k=4)
    assert len(fig.axes) == 4 and all(ax.images for ax in fig.axes)
    idx, losses = interpret.top_losses(y, probs, k=1)
    title = fig.axes[0].get_title()
    assert f"{losses[0]:.2f} / {probs[idx[0], y[idx[0]]]:.2f}" in title
    assert title.split(" / ")[1].startswith("abc"[y[idx[0]]])  # predicted / true
    series = interpret.plot_top_losses(RNG.normal(size=(6, 100, 1)), y[:6], probs[:6], k=3)
    assert all(ax.lines and not ax.images for ax in series.axes)
    rows = interpret.plot_top_losses(RNG.normal(size=(6, 4)), y[:6], probs[:6], k=3)
    assert rows.axes[0].tables


def test_plot_gradcam_lays_heat_over_each_image():
    x = RNG.random((3, 10, 10, 3)).astype("float32")
    fig = interpret.plot_gradcam(x, RNG.random((3, 4, 4)), titles=["a", "b", "c"])
    assert len(fig.axes) == 6 and [len(ax.images) for ax in fig.axes] == [1, 2] * 3
    with pytest.raises(DataError, match="heat maps"):
        interpret.plot_gradcam(x, RNG.random((2, 4, 4)))


def test_the_run_report_gets_top_losses_gradcam_and_most_confused(tmp_path):
    x = RNG.random((20, 8, 8, 1)).astype("float32")
    y = RNG.integers(0, 3, 20)
    probs = RNG.dirichlet(np.ones(3), 20)
    heat = (np.arange(4), RNG.random((4, 2, 2)))
    written = report.write_run_pictures(tmp_path, y_true=y, probs=probs, x=x, class_names=list("abc"),
                                        interpret=True, gradcam=heat)  # fmt: skip
    assert sorted(written) == [
        "confusion.png", "errors.png", "gradcam.png", "report.md", "top_losses.png",
    ]  # fmt: skip
    assert_png(written["top_losses.png"])
    assert_png(written["gradcam.png"])
    text = written["report.md"].read_text()
    assert "](top_losses.png)" in text and "](gradcam.png)" in text
    assert "## Most confused classes (true, predicted, count)" in text
    # without heat maps report.md says why; table rows get a top-losses table
    written = report.write_run_pictures(tmp_path / "t", y_true=y, probs=probs, x=x.reshape(20, -1),
                                        task="classification", inputs="table", interpret=True)  # fmt: skip
    text = written["report.md"].read_text()
    assert "top_losses.png" not in written and "## Top losses" in text and "| p(true) |" in text
    assert "`top_losses.png`: this run is a classifier on table rows" in text
    assert kinds.interpretation_for("regression", "image") == ()


# --- Grad-CAM and TTA on tiny models -------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_cnn():
    import keras

    inp = keras.Input((12, 12, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    h = keras.layers.Conv2D(6, 3, strides=2, padding="same", name="last_conv")(h)
    h = keras.layers.ReLU(name="after")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inp, keras.layers.Dense(3, activation="softmax")(h))


def test_gradcam_of_a_tiny_cnn_is_normalized_at_the_last_conv(tiny_cnn):
    from kerakit.training.interpret import gradcam, last_conv_layer

    assert last_conv_layer(tiny_cnn)[1] == "after"  # the activation right after it
    heat = gradcam(tiny_cnn, RNG.random((5, 12, 12, 1)))
    assert heat.shape == (5, 6, 6) and heat.dtype == np.float32
    assert heat.min() >= 0 and np.all(
        np.isclose(heat.max(axis=(1, 2)), 1) | (heat.max(axis=(1, 2)) == 0)
    )
    assert gradcam(tiny_cnn, RNG.random((12, 12, 1)), class_index=2).shape == (1, 6, 6)


def test_gradcam_finds_the_conv_inside_a_nested_frozen_backbone():
    import keras

    from kerakit.training.interpret import gradcam, last_conv_layer

    inner = keras.Input((16, 16, 3))
    b = keras.layers.Conv2D(4, 3, strides=2, padding="same")(inner)
    b = keras.layers.Conv2D(8, 3, padding="same", name="top_conv")(b)
    backbone = keras.Model(inner, keras.layers.Activation("relu", name="top_act")(b), name="bb")
    backbone.trainable = False
    outer = keras.Input((16, 16, 3))
    z = backbone(keras.layers.Rescaling(1 / 255)(outer), training=False)
    z = keras.layers.GlobalAveragePooling2D()(z)
    model = keras.Model(outer, keras.layers.Dense(1, activation="sigmoid")(z))
    assert last_conv_layer(model)[1] == "bb/top_act"
    heat = gradcam(model, RNG.random((3, 16, 16, 3)) * 255)
    assert heat.shape == (3, 8, 8) and heat.min() >= 0 and heat.max() <= 1
    assert not hasattr(backbone.get_layer("top_act"), "__dict__") or "call" not in vars(
        backbone.get_layer("top_act")
    )  # the capture hook is gone
    flat = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    with pytest.raises(DataError, match="convolution"):
        last_conv_layer(flat)


def test_tta_averages_the_plain_pass_with_augmented_ones(tiny_cnn):
    from kerakit.training.interpret import check_tta, tta_predict

    x = RNG.random((4, 12, 12, 1)).astype("float32")
    plain = np.asarray(tiny_cnn(x))
    np.testing.assert_allclose(tta_predict(tiny_cnn, x, 0), plain, rtol=1e-5)
    flipped = np.asarray(tiny_cnn(x[:, :, ::-1]))
    got = tta_predict(tiny_cnn, x, 1)  # a random flip: each image flipped or left as it is
    for row, p, f in zip(got, plain, flipped):
        assert np.allclose(row, (p + f) / 2, atol=1e-5) or np.allclose(row, p, atol=1e-5)
    import keras

    with pytest.raises(DataError, match="not images"):
        check_tta(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))


# --- one tiny run --------------------------------------------------------------------------


@pytest.mark.slow
def test_a_digits_run_has_its_interpretation_and_evaluates_with_tta(tmp_path, capsys):
    import kerakit as kk
    from kerakit.cli import main

    run = kk.train(CONFIGS / "digits_cnn.yaml", epochs=1, verbose=0,
                   overrides=[f"output.dir={tmp_path}", "train.callbacks=minimal"])  # fmt: skip
    for name in ("top_losses.png", "gradcam.png"):
        assert_png(run.path / name)
    text = (run.path / "report.md").read_text()
    assert "](top_losses.png)" in text and "](gradcam.png)" in text and "## Most confused" in text
    pairs = run.most_confused()
    assert all(t != p and n >= 1 for t, p, n in pairs)
    assert [n for *_, n in pairs] == sorted((n for *_, n in pairs), reverse=True)
    assert run.plot_top_losses(k=4).axes
    x, _ = kk.data.to_numpy(run.data.test.take(2))
    assert run.gradcam(x).shape[0] == 2
    capsys.readouterr()
    assert main(["evaluate", str(run.path), "--tta", "2"]) == 0
    out = capsys.readouterr().out
    assert "accuracy_no_tta: " in out and "accuracy_tta: " in out
    assert kk.evaluate(run, tta=1)["tta"] == 1
