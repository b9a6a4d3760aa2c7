"""`tfrecord:GLOB` sources: tiny TFRecord files written here, loaded, split, trained on."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import tensorflow as tf
import yaml

import kerakit as kk
from kerakit.data import load_data
from kerakit.errors import DataError, RecipeError, Where
from kerakit.recipe.data import resolve_data

HERE = Where(file="recipe.yaml", positions={("data",): (3, 1)}, path=("data",))
IMAGES = {"image": {"dtype": "string", "decode": "image"}, "target": "int64"}


def feature(value) -> tf.train.Feature:
    if isinstance(value, bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
    values = list(np.ravel(value))
    if isinstance(values[0], (float, np.floating)):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def write_records(path, examples, compression=None) -> None:
    options = tf.io.TFRecordOptions(compression_type=compression or "")
    with tf.io.TFRecordWriter(str(path), options) as writer:
        for ex in examples:
            features = tf.train.Features(feature={k: feature(v) for k, v in ex.items()})
            writer.write(tf.train.Example(features=features).SerializeToString())


def image(number: int, label: int, size=(8, 8), jpeg=False) -> bytes:
    """An image whose pixel (0, 0) is the record's number and whose other pixels are its class."""
    pixels = np.full((*size, 3), 60 * label, np.uint8)
    pixels[0, 0] = number
    return (tf.io.encode_jpeg if jpeg else tf.io.encode_png)(pixels).numpy()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """3 shards of 12 PNG records each: `image` (8x8x3), `target` (class 0..2), `id`."""
    root = tmp_path_factory.mktemp("tfrecord")
    (root / "records").mkdir()
    for shard in range(3):
        numbers = range(12 * shard, 12 * shard + 12)
        examples = [{"image": image(n, n % 3), "target": n % 3, "id": n} for n in numbers]
        write_records(root / f"records/train-{shard}.tfrec", examples)
    return root


def ids_and_labels(ds) -> tuple[list, list]:
    x, y = next(iter(ds.batch(1000)))
    return [round(v * 255) for v in x.numpy()[:, 0, 0, 0]], y.numpy().tolist()


# ---------------------------------------------------------------- loading


def test_images_shapes_labels_and_carved_splits(shards):
    section = {"source": "tfrecord:records/train-*.tfrec", "features": IMAGES, "target": "target"}
    bundle = load_data(section, base_dir=shards, seed=3)
    assert bundle.sizes == {"train": 25, "val": 4, "test": 7}
    assert bundle.input_shape == (8, 8, 3)
    assert (bundle.class_names, bundle.num_classes, bundle.task) == (
        ["0", "1", "2"],
        3,
        "multiclass",
    )
    assert bundle.spec["rescale"] == pytest.approx(1 / 255) and bundle.spec["image_size"] == [8, 8]
    assert bundle.value_range == [0, 255] and bundle.spec["input"] == "image"
    parts = {k: ids_and_labels(getattr(bundle, k)) for k in ("train", "val", "test")}
    for ids, labels in parts.values():
        assert labels == [i % 3 for i in ids]  # the label read with each image
    ids = [set(parts[k][0]) for k in parts]
    assert sorted(set.union(*ids)) == list(range(36)) and sum(map(len, ids)) == 36  # disjoint
    assert len(set(parts["test"][1])) == 3  # stratified
    again = load_data(section, base_dir=shards, seed=3)
    assert ids_and_labels(again.test)[0] == parts["test"][0]  # the seed fixes the carve
    other = load_data(section, base_dir=shards, seed=4)
    assert set(ids_and_labels(other.test)[0]) != set(parts["test"][0])


def test_split_files_resize_gzip_and_jpeg(tmp_path):
    for name, numbers in (("train", range(20)), ("val", range(20, 26))):
        examples = [{"img": image(n, n % 2, size=(6 + n % 3, 7), jpeg=True), "y": n % 2}
                    for n in numbers]  # fmt: skip
        write_records(tmp_path / f"{name}.tfrec.gz", examples, compression="GZIP")
    section = {
        "source": "tfrecord:train.tfrec.gz",
        "features": {"img": {"decode": "image", "channels": 1}, "y": {"dtype": "int64"}},
        "target": "y",
        "compression": "gzip",
        "split": {"val": "val.tfrec.gz"},
        "test_split": 0,
    }
    with pytest.raises(DataError, match=r"images differ in size \(3 sizes: .*image_size"):
        load_data(section, base_dir=tmp_path)
    bundle = load_data({**section, "image_size": [4, 5]}, base_dir=tmp_path)
    assert bundle.sizes == {"train": 20, "val": 6, "test": 0} and bundle.test is None
    assert bundle.input_shape == (4, 5, 1) and bundle.task == "binary"
    assert bundle.spec["compression"] == "GZIP"
    x, y = next(iter(bundle.val.batch(10)))
    assert y.numpy().tolist() == [n % 2 for n in range(20, 26)]
    assert 0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 1


def test_numeric_named_inputs_string_classes_and_regression(tmp_path):
    rng = np.random.default_rng(0)
    names = ["cat", "ant", "bee"]
    examples = [
        {"extra": rng.random(4).astype("float32"), "count": n, "kind": names[n % 3].encode(),
         "price": float(n) / 2, "pixels": np.full((4, 4, 1), n, np.uint8).tobytes()}
        for n in range(30)
    ]  # fmt: skip
    write_records(tmp_path / "table.tfrec", examples)
    features = {
        "extra": {"dtype": "float32", "shape": [4]},
        "count": "int64",
        "kind": "string",
        "price": "float32",
        "pixels": {"decode": "raw", "shape": [4, 4, 1]},
    }
    section = {"source": "tfrecord:table.tfrec", "features": features, "target": "kind",
               "input": ["extra", "count"], "validation_split": 0.2}  # fmt: skip
    bundle = load_data(section, base_dir=tmp_path, seed=0)
    assert bundle.input_shape == {"extra": (4,), "count": ()}
    assert bundle.class_names == ["ant", "bee", "cat"] and bundle.spec["rescale"] is None
    x, y = next(iter(bundle.train.batch(100)))
    kinds = [names[int(c) % 3] for c in x["count"].numpy()]
    assert [bundle.class_names[i] for i in y.numpy()] == kinds
    assert x["extra"].dtype == tf.float32 and sum(bundle.sizes.values()) == 30
    # a float target is regression; a raw uint8 image array is rescaled like decoded images
    section = {**section, "target": "price", "input": "pixels"}
    bundle = load_data(section, base_dir=tmp_path, seed=0)
    assert (bundle.task, bundle.num_classes, bundle.input_shape) == ("regression", None, (4, 4, 1))
    assert bundle.spec["rescale"] == pytest.approx(1 / 255)
    x, y = next(iter(bundle.train.batch(100)))
    np.testing.assert_allclose(x.numpy()[:, 0, 0, 0] * 255, y.numpy() * 2, atol=1e-3)


def test_train_end_to_end_leaves_a_run_folder(shards, tmp_path):
    recipe = shards / "recipe.yaml"  # beside the records: the paths below are relative
    recipe.write_text(
        textwrap.dedent(f"""
        name: tfrecord-tiny
        data:
          source: tfrecord:records/train-[01].tfrec
          split: {{val: records/train-2.tfrec}}
          features:
            image: {{dtype: string, decode: image, channels: 3}}
            target: {{dtype: int64}}
          target: target
          image_size: [4, 4]
          batch_size: 8
        model:
          sequential:
            - Flatten: {{}}
            - Dense: {{units: 3, activation: softmax}}
        train: {{epochs: 1, callbacks: minimal}}
        output: {{dir: {tmp_path / "runs"}}}
        """)
    )
    run = kk.train(recipe, verbose=0)
    assert run.path.is_dir() and (run.path / "recipe.resolved.yaml").is_file()
    assert run.recipe["compile"]["preset"] == "multiclass" and "accuracy" in run.metrics
    kept = yaml.safe_load((run.path / "recipe.resolved.yaml").read_text())
    assert kept["data"]["features"]["image"] == {
        "dtype": "string",
        "decode": "image",
        "channels": 3,
    }
    # the kept recipe names the files absolutely: `kerakit evaluate RUN` finds them anywhere
    assert kept["data"]["source"] == f"tfrecord:{shards.resolve()}/records/train-[01].tfrec"
    assert kept["data"]["split"] == {
        "val": f"{shards.resolve()}/records/train-2.tfrec",
        "test": None,
    }
    assert run.data.sizes == {"train": 19, "val": 12, "test": 5}


# ---------------------------------------------------------------- mistakes


def test_resolve_fills_defaults_and_round_trips():
    spec = resolve_data({"source": "tfrecord:r/*.tfrec", "features": IMAGES, "target": "target"})
    assert spec["features"] == {
        "image": {"dtype": "string", "decode": "image", "channels": 3},
        "target": {"dtype": "int64", "shape": [], "decode": None},
    }
    assert spec["input"] == "image" and spec["rescale"] == "auto"
    assert (spec["split"], spec["compression"]) == ({"val": None, "test": None}, None)
    assert resolve_data(yaml.safe_load(yaml.safe_dump(spec))) == spec


@pytest.mark.parametrize(
    "change, path, text",
    [
        ({"features": None}, "data", "needs `features:`"),
        ({"target": None}, "data", "needs `target: FEATURE`"),
        ({"target": "targt"}, "data.target", "did you mean 'target'"),
        ({"input": ["image", "imgae"]}, "data.input[1]", "did you mean 'image'"),
        ({"input": "target"}, "data.input", "is the target"),
        ({"features": {"image": "string", "target": "int64"}}, "data.input", "decode: image"),
        ({"features": {"image": "bytes", "t": "int64"}}, "data.features.image.dtype", "'string'"),
        ({"features": {"image": "int32", "t": "int64"}}, "data.features.image.dtype", "'int64'"),
        ({"features": {"image": "float", "t": "int64"}}, "data.features.image.dtype", "'float32'"),
        ({"features": {"image": {"decode": "img"}}}, "data.features.image.decode", "'image'"),
        ({"features": {"image": {"decode": "raw"}}}, "data.features.image", "needs `shape:`"),
        (
            {"features": {**IMAGES, "image": {"decode": "image", "shape": [8, 8]}}},
            "data.features.image.shape",
            "image_size",
        ),  # fmt: skip
        (
            {"features": {**IMAGES, "image": {"decode": "image", "channels": 2}}},
            "data.features.image.channels",
            "3 (RGB)",
        ),  # fmt: skip
        (
            {"features": {**IMAGES, "image": {"dtype": "int64", "decode": "image"}}},
            "data.features.image.decode",
            "must be string",
        ),  # fmt: skip
        (
            {"features": {**IMAGES, "target": {"dtype": "string", "decode": "raw", "shape": [1]}}},
            "data.features.target.decode",
            "cannot be decoded",
        ),  # fmt: skip
        ({"split": {"train": "a"}}, "data.split.train", "the training files are the source"),
        ({"split": {"vall": "a"}}, "data.split.vall", "did you mean 'val'"),
        ({"compression": "zip"}, "data.compression", "GZIP, ZLIB"),
        ({"target_type": "class"}, "data.target_type", "csv"),
    ],
)
def test_resolve_errors_name_the_key(change, path, text):
    section = {"source": "tfrecord:r.tfrec", "features": IMAGES, "target": "target", **change}
    with pytest.raises(RecipeError) as info:
        resolve_data(section, HERE)
    message = str(info.value)
    assert message.startswith("recipe.yaml:3:1: " + path + ":"), message
    assert text in message


def test_files_that_do_not_fit_are_named(shards, tmp_path):
    def fails(section, base_dir=shards, **change):
        section = {"source": "tfrecord:records/train-*.tfrec", "features": IMAGES,
                   "target": "target", **section, **change}  # fmt: skip
        with pytest.raises(DataError) as info:
            load_data(section, base_dir=base_dir, where=HERE)
        return str(info.value)

    text = fails({"source": "tfrecord:records/tain-*.tfrec"})
    assert "data.source: no files match" in text and "records/tain-*.tfrec" in text
    assert "folder: name its files" in fails({"source": "tfrecord:records"})
    (tmp_path / "bad.tfrec").write_bytes(b"not a TFRecord file at all")
    text = fails({"source": "tfrecord:bad.tfrec"}, base_dir=tmp_path)
    assert "cannot read " + str(tmp_path / "bad.tfrec") in text
    assert "not a TFRecord file, or it is compressed: set `compression: GZIP`" in text
    assert "is it GZIP-compressed?" in fails({"compression": "GZIP"})
    text = fails({"split": {"val": str(tmp_path / "bad.tfrec")}})
    assert "data.split.val: cannot read " + str(tmp_path / "bad.tfrec") in text
    text = fails({"features": {**IMAGES, "label": "int64"}, "target": "label"})
    assert text.startswith("recipe.yaml:3:1: data.features.label: record 0 of ")
    assert "train-0.tfrec has no feature 'label'; it has: id, image, target" in text
    text = fails({"features": {**IMAGES, "target": "float32"}})
    assert "data.features.target: feature 'target' in record 0 of " in text
    assert "holds int64 values, not float32" in text
    assert "set `dtype: int64`" in text
    text = fails({"features": {**IMAGES, "id": {"dtype": "int64", "shape": [2]}}})
    assert "train-0.tfrec holds 1 values; shape [2] needs 2" in text
    text = fails({"features": {"image": {"decode": "raw", "shape": [5, 5, 3]}, "target": "int64"}})
    assert "data.features.image: feature 'image' in record 0 of " in text
    assert "shape [5, 5, 3] of uint8 needs 75" in text
    write_records(tmp_path / "junk.tfrec", [{"image": b"junk", "target": 0}] * 20)
    text = fails({"source": "tfrecord:junk.tfrec", "image_size": [4, 4]}, base_dir=tmp_path)
    assert "data.features.image: feature 'image' in record 0 of " in text
    assert "junk.tfrec is not an image TensorFlow can decode" in text
    write_records(tmp_path / "neg.tfrec", [{"x": 1.0, "y": -1}, {"x": 2.0, "y": 1}] * 10)
    text = fails({"source": "tfrecord:neg.tfrec", "features": {"x": "float32", "y": "int64"},
                  "target": "y"}, base_dir=tmp_path)  # fmt: skip
    assert "class labels must be 0 or more" in text
    text = fails({"split": {"val": "records/train-2.tfrec"}})
    assert "data.split.val: 1 file(s) are both training and val files" in text
