"""TFRecord files of `tf.train.Example` records (`tfrecord:GLOB`), parsed with the recipe's
feature spec, so keras.io's TFRecord examples need no hand-written parsing.

    data:
      source: tfrecord:records/train-*.tfrec
      features:
        image: {dtype: string, decode: image, channels: 3}
        target: int64
      target: target
      image_size: [64, 64]

One pass over every file comes first (labels and sizes only, no image is decoded unless
`image_size` is null): it counts the records, finds the classes, and names the file and
record of any mistake (a file that is not TFRecord, a missing feature, a wrong dtype or
shape) before training starts. Validation and test splits the recipe does not give as
files are carved from the training records as the in-memory sources carve theirs
(stratified, fixed by the seed): each record is known by its file and its position in
that file, so the splits never overlap whatever order the files are read in.
"""

from __future__ import annotations

import glob
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import tensorflow as tf

from kerakit.data.images import common_size
from kerakit.data.splits import carve, encode_labels
from kerakit.errors import Where, data_error, did_you_mean
from kerakit.recipe.data import data_path

DTYPES = {"string": tf.string, "int64": tf.int64, "float32": tf.float32}
KINDS = {"bytes_list": "string", "int64_list": "int64", "float_list": "float32"}
SCAN_BATCH = 256  # records parsed at once in the first pass
MAX_READERS = 8  # files read at once (interleaved)


def load_tfrecord(pattern: str, spec: dict, base_dir, seed, where: Where) -> tuple:
    """(datasets by split, sizes, class info) of a `tfrecord:GLOB` source."""
    files = {"train": _glob(pattern, base_dir, where, "source")}
    for part in ("val", "test"):
        given = spec["split"][part]
        files[part] = None if given is None else _glob(given, base_dir, where.at("split"), part)
    for part in ("val", "test"):
        shared = set(files[part] or ()) & set(files["train"])
        if shared:
            raise data_error(
                where.at("split"),
                part,
                f"{len(shared)} file(s) are both training and {part} files (e.g. "
                f"{min(shared)}); make the globs of source and split.{part} match apart",
            )
    reader = _Reader(spec, where)
    keys = {"train": ("source",), "val": ("split", "val"), "test": ("split", "test")}
    sizes_needed = spec["image_size"] is None and bool(reader.images)
    scans = {
        part: None
        if fs is None
        else [reader.scan(f, sizes_needed and part == "train", keys[part]) for f in fs]
        for part, fs in files.items()
    }
    for part, at in keys.items():
        if scans[part] is not None and not sum(s["count"] for s in scans[part]):
            shown = pattern if part == "train" else spec["split"][part]
            raise data_error(where.at(*at[:-1]), at[-1], f"the files of {shown!r} hold no records")
    if sizes_needed:  # null keeps the native size, when every image has it
        spec["image_size"] = common_size(
            sum((s["sizes"] for s in scans["train"]), Counter()), where
        )
    parts = [p for p in scans if scans[p] is not None]
    labels = [np.concatenate([s["labels"] for s in scans[p]]) for p in parts]
    encoded, info = encode_labels(labels, "auto", where)
    reader.set_classes(info["class_names"] if labels[0].dtype.kind == "U" else None)
    reader.peek(next(f for f, s in zip(files["train"], scans["train"]) if s["count"]))

    n = len(labels[0])
    given = {p: None if files[p] is None else () for p in ("val", "test")}
    train, val, test = carve((np.arange(n), encoded[0]), given["val"], given["test"], spec, seed,
                             where)  # fmt: skip
    owner = np.zeros(n, np.uint8)  # 0 train, 1 val, 2 test, by record number
    for code, chosen in ((1, val), (2, test)):
        if chosen:
            owner[chosen[0]] = code
    offsets = np.cumsum([0] + [s["count"] for s in scans["train"]])[:-1]
    carved = owner.any()  # else every training record is read, none skipped
    dss = {"train": reader.dataset(files["train"], *((offsets, owner) if carved else ()))}
    sizes = {"train": len(train[0])}
    for code, part, chosen in ((1, "val", val), (2, "test", test)):
        if files[part] is not None:
            dss[part] = reader.dataset(files[part])
            sizes[part] = sum(s["count"] for s in scans[part])
        else:
            dss[part] = None if not chosen else reader.dataset(files["train"], offsets, owner, code)
            sizes[part] = len(chosen[0]) if chosen else 0
    # the counts made known: Keras knows the steps per epoch (no "ran out of data" warning)
    dss = {
        k: None if d is None else d.apply(tf.data.experimental.assert_cardinality(sizes[k]))
        for k, d in dss.items()
    }
    if spec["rescale"] == "auto":
        spec["rescale"] = 1 / 255 if reader.uint8_images else None
    return dss, sizes, info


def _glob(pattern: str, base_dir, where: Where, key: str) -> list[str]:
    """The sorted files a file name or glob names (`**` spans folders)."""
    path = data_path(pattern, base_dir)
    found = sorted(p for p in glob.glob(str(path), recursive=True) if os.path.isfile(p))
    if not found:
        hint = "check the path and the pattern (`*` within a name, `**` across folders)"
        if path.is_dir():
            hint = f"{pattern!r} is a folder: name its files, e.g. {pattern.rstrip('/')}/*.tfrec"
        raise data_error(
            where,
            key,
            f"no files match {path} ({pattern!r} read from {Path(base_dir).resolve()}); {hint}",
        )
    return found


class _Reader:
    """Parsing and decoding by the feature spec, for the first pass and for the data sets."""

    def __init__(self, spec: dict, where: Where):
        self.spec, self.where = spec, where
        self.features = spec["features"]
        self.inputs = spec["input"]
        self.names = self.inputs if isinstance(self.inputs, list) else [self.inputs]
        self.target = spec["target"]
        self.compression = spec["compression"] or ""
        self.parse_specs = {
            name: tf.io.FixedLenFeature([] if f["decode"] else f["shape"], DTYPES[f["dtype"]])
            for name, f in self.features.items()
        }
        self.images = [n for n in self.names if self.features[n]["decode"] == "image"]
        raw_uint8 = [
            n
            for n in self.names
            if self.features[n]["decode"] == "raw"
            and self.features[n]["raw_dtype"] == "uint8"
            and len(self.features[n]["shape"]) == 3
        ]
        self.uint8_images = bool(self.images or raw_uint8)
        self.table = None

    def set_classes(self, names: list[str] | None) -> None:
        """String labels become class ids in the order of `names` (sorted, as encode_labels)."""
        if names is not None:
            keys = tf.constant([n.encode("utf-8", "surrogateescape") for n in names])
            init = tf.lookup.KeyValueTensorInitializer(keys, tf.range(len(names), dtype=tf.int32))
            self.table = tf.lookup.StaticHashTable(init, default_value=-1)

    def decode(self, name: str, value):
        f = self.features[name]
        if f["decode"] == "image":
            image = tf.io.decode_image(value, channels=f["channels"], expand_animations=False)
            image.set_shape([None, None, f["channels"]])
            return image
        if f["decode"] == "raw":
            return tf.reshape(tf.io.decode_raw(value, f["raw_dtype"]), f["shape"])
        return value

    def element(self, record):
        parsed = tf.io.parse_single_example(record, self.parse_specs)
        x = {n: self.decode(n, parsed[n]) for n in self.names}
        y = parsed[self.target]
        if self.table is not None:
            y = self.table.lookup(y)
        else:
            y = tf.cast(y, tf.int32 if y.dtype.is_integer else tf.float32)
        return (x if isinstance(self.inputs, list) else x[self.inputs]), y

    def dataset(self, files: list[str], offsets=None, owner=None, code: int = 0):
        """The records of `files` as `(x, y)`; with `owner`, only those whose record number
        (`offsets` of its file plus its position there) is owned by split `code`."""
        comp = self.compression

        def read(offset, path):
            ds = tf.data.TFRecordDataset(path, compression_type=comp)
            return ds if owner is None else ds.enumerate(offset)

        first = tf.constant(
            np.zeros(len(files), np.int64) if offsets is None else offsets, tf.int64
        )
        ds = tf.data.Dataset.from_tensor_slices((first, files))
        parallel = {"num_parallel_calls": tf.data.AUTOTUNE, "deterministic": True}
        ds = ds.interleave(
            read, cycle_length=min(len(files), MAX_READERS), **(parallel if len(files) > 1 else {})
        )
        if owner is not None:
            owned = tf.constant(owner)
            ds = ds.filter(lambda i, _: tf.gather(owned, i) == code).map(lambda _, r: r)
        element = tf.autograph.experimental.do_not_convert(self.element)
        return ds.map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def scan(self, path: str, sizes: bool, at: tuple = ("source",)) -> dict:
        """Counts a file's records, reads its labels and (with `sizes`) its image sizes."""
        comp = self.compression

        def parse(batch):
            parsed = tf.io.parse_example(batch, self.parse_specs)
            found = {"labels": parsed[self.target]}
            for name in self.images if sizes else ():
                found[name] = tf.map_fn(
                    lambda b, n=name: tf.shape(self.decode(n, b))[:2],
                    parsed[name],
                    fn_output_signature=tf.TensorSpec([2], tf.int32),
                )
            return found

        ds = tf.data.TFRecordDataset(path, compression_type=comp).batch(SCAN_BATCH)
        parse = tf.autograph.experimental.do_not_convert(parse)  # in order: labels by record
        ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        labels, shapes = [], Counter()
        try:
            for found in ds:
                labels.append(found.pop("labels").numpy())
                for hw in found.values():
                    shapes.update(map(tuple, hw.numpy().tolist()))
        except tf.errors.OpError as e:
            raise self.failure(path, e, at) from None
        target = self.features[self.target]
        labels = (
            np.concatenate(labels)
            if labels
            else np.zeros([0, *target["shape"]], DTYPES[target["dtype"]].as_numpy_dtype)
        )
        if target["dtype"] == "string":  # class names as text
            labels = np.array([b.decode("utf-8", "surrogateescape") for b in labels], dtype=str)
        return {"count": len(labels), "labels": labels, "sizes": shapes}

    def peek(self, path: str) -> None:
        """Decodes a file's first record as training will, so a wrong `decode` or raw
        `shape` is named now, not as a stack trace in the first epoch."""
        try:
            for _ in self.dataset([path]).take(1):
                pass
        except tf.errors.OpError as e:
            raise self.failure(path, e) from None

    def failure(self, path: str, error: tf.errors.OpError, at: tuple = ("source",)):
        """The recipe error for a file TensorFlow could not read as the spec says."""
        why = " ".join(str(getattr(error, "message", error)).split())
        why = re.sub(r"\{\{[^}]*\}\}", "", why).split("[[")[0].split("[Op:")[0].strip()[-300:]
        if isinstance(error, tf.errors.DataLossError):
            todo = (
                "it is not a TFRecord file, or it is compressed: set `compression: GZIP` (or ZLIB)"
                if not self.compression
                else f"is it {self.compression}-compressed? set `compression:` to match "
                "(null for none)"
            )
            message = f"cannot read {path} ({why}): {todo}; or leave the file out"
            return data_error(self.where.at(*at[:-1]), at[-1], message)
        found = _first_mismatch(path, self.compression, self.features)
        if found is None:
            return data_error(self.where.at(*at[:-1]), at[-1], f"cannot read {path}: {why}")
        name, message = found
        return data_error(self.where.at("features"), name, message)


def _first_mismatch(path: str, compression: str, features: dict) -> tuple | None:
    """(feature, what is wrong) of the first record that does not fit the spec, or None.
    Runs only after TensorFlow failed, one record at a time, to say where and why."""
    for i, record in enumerate(tf.data.TFRecordDataset(path, compression_type=compression)):
        example = tf.train.Example()
        try:
            example.ParseFromString(record.numpy())
        except Exception:
            return next(iter(features)), f"record {i} of {path} is not a tf.train.Example"
        have = example.features.feature
        at = f"in record {i} of {path}"
        for name, f in features.items():
            if name not in have:
                guess = did_you_mean(name, list(have))
                return name, (
                    f"record {i} of {path} has no feature {name!r}{guess}; it has: "
                    f"{', '.join(sorted(have)) or 'no features'}. Fix the name in `features:`"
                )
            kind = have[name].WhichOneof("kind")
            values = getattr(have[name], kind).value if kind else []
            if kind and KINDS[kind] != f["dtype"]:
                return name, (
                    f"feature {name!r} {at} holds {KINDS[kind]} values, not {f['dtype']}; "
                    f"set `dtype: {KINDS[kind]}`"
                )
            want = 1 if f["decode"] else int(np.prod(f["shape"]))
            if len(values) != want:
                shape = [] if f["decode"] else f["shape"]
                return name, (
                    f"feature {name!r} {at} holds {len(values)} values; shape {shape} needs "
                    f"{want} (every record needs the same number: set `shape:` to match)"
                )
            problem = _decode_problem(f, values[0]) if f["decode"] else None
            if problem:
                return name, f"feature {name!r} {at} {problem}"
    return None


def _decode_problem(f: dict, data: bytes) -> str | None:
    if f["decode"] == "image":
        try:
            tf.io.decode_image(data, channels=f["channels"], expand_animations=False)
        except (tf.errors.OpError, ValueError):
            return "is not an image TensorFlow can decode (JPEG, PNG, GIF or BMP)"
        return None
    size = np.dtype(f["raw_dtype"]).itemsize
    want = int(np.prod(f["shape"]))
    if len(data) != want * size:
        return (
            f"holds {len(data)} bytes; shape {f['shape']} of {f['raw_dtype']} needs "
            f"{want * size}. Check `shape` and `raw_dtype`"
        )
    return None
