"""Sample weights (npz `w_train`, a CSV column, `kk.train(sample_weight=)`) and data sets given
from Python (`kk.train(x=tf.data.Dataset | keras.utils.PyDataset)`), as Keras's fit takes them."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerakit as kk
from kerakit.data import make_pipeline, to_numpy
from kerakit.errors import DataError, RecipeError
from kerakit.training.fit import _with_class_weight

RNG = np.random.default_rng(0)
X = RNG.normal(size=(60, 3)).astype("float32")
Y = (X[:, 0] > 0).astype("int32")
W = RNG.uniform(0.1, 3.0, size=60).astype("float32")


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(loss="binary_crossentropy", weighted_metrics=["accuracy"])
    return model


def _evaluate(model, split):
    ds = make_pipeline(split, batch_size=8, training=False)
    return model.evaluate(ds, verbose=0, return_dict=True)


def test_npz_weights_reach_keras_as_fit_would_take_them(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=X, y_train=Y, w_train=W)
    bundle = kk.load_data(
        {"source": "npz:d.npz", "validation_split": 0, "test_split": 0.5}, base_dir=tmp_path
    )
    assert bundle.weighted and len(bundle.test.element_spec) == 3
    x, y = to_numpy(bundle.test)
    w = np.concatenate([w.numpy() for *_, w in bundle.test.batch(100)])
    # the carved test split kept each example's own weight
    rows = [int(np.flatnonzero((X == row).all(1))[0]) for row in x]
    np.testing.assert_array_equal(w, W[rows])
    model = _model()
    got = _evaluate(model, bundle.test)
    want = model.evaluate(x, y, sample_weight=w, batch_size=8, verbose=0, return_dict=True)
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)
    unweighted = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    assert got["loss"] != pytest.approx(unweighted["loss"], rel=1e-3)


def test_npz_weights_for_some_splits_only_are_refused(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=X, y_train=Y, w_train=W, x_test=X[:5], y_test=Y[:5])
    with pytest.raises(DataError, match=r"sample weights for train but not w_test"):
        kk.load_data({"source": "npz:d.npz"}, base_dir=tmp_path)
    np.savez(tmp_path / "e.npz", x_train=X, y_train=Y, w_trian=W)
    with pytest.raises(DataError, match=r"'w_trian' \(did you mean 'w_train'"):
        kk.load_data({"source": "npz:e.npz"}, base_dir=tmp_path)


def test_csv_weight_column_is_not_a_feature(tmp_path):
    lines = ["a,b,label,weight"] + [f"{a},{b},{y},{w}" for (a, b, _), y, w in zip(X, Y, W)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    bundle = kk.load_data(
        {"source": "csv:t.csv", "target": "label", "sample_weight": "weight", "test_split": 0},
        base_dir=tmp_path,
    )
    assert bundle.input_shape == (2,) and bundle.weighted
    assert bundle.spec["sample_weight"] == "weight"
    total = sum(float(w.numpy().sum()) for *_, w in bundle.train.concatenate(bundle.val).batch(99))
    assert total == pytest.approx(float(W.sum()), rel=1e-5)
    with pytest.raises(DataError, match=r"no column 'wieght' \(did you mean 'weight'\?\)"):
        kk.load_data(
            {"source": "csv:t.csv", "target": "label", "sample_weight": "wieght"}, base_dir=tmp_path
        )
    (tmp_path / "bad.csv").write_text("a,label,weight\n1,0,2\n2,1,-1\n")
    with pytest.raises(DataError, match=r"row 3, column 'weight': a sample weight must be"):
        kk.load_data(
            {"source": "csv:bad.csv", "target": "label", "sample_weight": "weight"},
            base_dir=tmp_path,
        )


def test_sample_weight_key_is_recorded_only_when_set():
    from kerakit.recipe.data import resolve_data

    assert "sample_weight" not in resolve_data({"source": "csv:t.csv", "target": "y"})
    with pytest.raises(RecipeError, match="'sample_weight' does not apply to source 'digits'"):
        resolve_data({"source": "digits", "sample_weight": "w"})


def test_arrays_weights_and_validation_triplets():
    bundle = kk.load_data(
        "arrays", x=X, y=Y, sample_weight=W, validation_data=(X[:9], Y[:9], W[:9])
    )
    assert bundle.weighted and bundle.sizes["val"] == 9
    with pytest.raises(DataError, match="give the training data .* both or neither"):
        kk.load_data("arrays", x=X, y=Y, validation_data=(X[:9], Y[:9], W[:9]))
    with pytest.raises(DataError, match="sample weights must be finite numbers, 0 or more"):
        kk.load_data("arrays", x=X, y=Y, sample_weight=-W)


def test_class_weight_is_folded_into_sample_weights():
    bundle = kk.load_data("arrays", x=X, y=Y, sample_weight=W, seed=0)
    folded, class_weight = _with_class_weight(bundle, {0: 1.0, 1: 3.0})
    assert class_weight is None  # Keras's fit refuses both; kerakit multiplies them
    for (_, y0, w0), (_, _, w1) in zip(bundle.train.take(20), folded.train.take(20)):
        assert float(w1) == pytest.approx(float(w0) * (3.0 if int(y0) == 1 else 1.0))


def test_batched_dataset_is_taken_as_fit_takes_it():
    ds = tf.data.Dataset.from_tensor_slices((X, np.where(Y == 1, "yes", "no"), W)).batch(12)
    bundle = kk.load_data({"source": "arrays", "test_split": 0.2}, x=ds, seed=0)
    assert bundle.spec["batch_size"] == 12  # the data set's own, as the recipe set none
    assert bundle.class_names == ["no", "yes"] and bundle.weighted
    assert bundle.sizes == {"train": 42, "val": 6, "test": 12}
    assert int(bundle.train.cardinality()) == 42  # known: Keras counts the steps
    _, y = to_numpy(bundle.test)
    np.testing.assert_array_equal(y, Y[:12])  # carved off the front, in the data set's order
    bundle = kk.load_data({"source": "arrays", "batch_size": 5}, x=ds, seed=0)
    assert bundle.spec["batch_size"] == 5  # the recipe's wins


def test_py_dataset_and_validation_dataset():
    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return X[i * 10 : (i + 1) * 10], Y[i * 10 : (i + 1) * 10]

    val = tf.data.Dataset.from_tensor_slices((X[:8], Y[:8])).batch(4)
    bundle = kk.load_data({"source": "arrays", "test_split": 0}, x=Batches(), validation_data=val)
    assert bundle.sizes == {"train": 60, "val": 8, "test": 0} and bundle.num_classes == 2
    with pytest.raises(DataError, match="validation data as a data set too"):
        kk.load_data("arrays", x=Batches(), validation_data=(X, Y))
    with pytest.raises(DataError, match="leave out y= and sample_weight="):
        kk.load_data("arrays", x=val, y=Y)
    features = tf.data.Dataset.from_tensor_slices({"a": X, "label": Y}).batch(4)
    with pytest.raises(DataError, match=r"must yield \(x, y\).*dicts with keys a, label"):
        kk.load_data("arrays", x=features)


@pytest.mark.slow
def test_train_on_a_weighted_dataset_leaves_a_run(tmp_path):
    recipe = {
        "name": "weighted",
        "data": {"source": "arrays"},
        "model": {"sequential": [{"Dense": {"units": 1, "activation": "sigmoid"}}]},
        "train": {"epochs": 2, "class_weight": {0: 1.0, 1: 2.0}, "callbacks": "minimal"},
        "output": {"dir": str(tmp_path)},
    }
    ds = tf.data.Dataset.from_tensor_slices((X, Y, W)).batch(10)
    run = kk.train(recipe, x=ds, verbose=0, print_fn=lambda *a: None)
    assert set(run.history) >= {"loss", "val_loss"} and len(run.history["loss"]) == 2
    assert run.recipe["data"]["source"] == "arrays" and run.recipe["data"]["batch_size"] == 10
    assert (run.path / "model.keras").is_file() and np.isfinite(run.metrics["loss"])
