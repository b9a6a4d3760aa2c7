"""Data sets given from Python: `kk.train(x=dataset)` with a `tf.data.Dataset` or a
`keras.utils.PyDataset`, as Keras's `fit` takes them.

A data set for `fit` yields batches of `(x, y)` or `(x, y, sample_weight)`.
kerakit unbatches it, so that its own pipeline (cache, shuffle, batch,
augmentation) and its splits work as for every other source; the batch size is
the recipe's `data.batch_size`, or the data set's own when the recipe does not
set one. Validation data may be given the same way; the test split (and the
validation split when none is given) is carved off the front with take/skip,
in the data set's own order.

    load_given(ds.batch(64), None, spec, where)   # -> (datasets, sizes, class info)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from kerakit.data.splits import carve_dataset, count_examples, encode_labels
from kerakit.errors import DataError, Where, data_error


def is_dataset(x: Any) -> bool:
    """True for a `tf.data.Dataset` or a `keras.utils.PyDataset` (what `load_given` takes)."""
    if isinstance(x, tf.data.Dataset):
        return True
    import keras

    return isinstance(x, keras.utils.PyDataset)


def _from_py_dataset(data: Any, what: str) -> tf.data.Dataset:
    """A PyDataset's batches as a `tf.data.Dataset` (its `__getitem__` called in order)."""
    try:
        count = len(data)
    except Exception as exc:
        raise DataError(f"{what}: len() of the PyDataset failed ({exc})") from None
    if not count:
        raise DataError(f"{what}: the PyDataset has no batches (len() is 0)")
    first = data[0]

    def spec(value):
        value = np.asarray(value)
        return tf.TensorSpec((None, *value.shape[1:]), tf.as_dtype(value.dtype))

    signature = tf.nest.map_structure(spec, _as_tuple(first))

    def batches():
        for i in range(count):
            yield tf.nest.map_structure(np.asarray, _as_tuple(data[i]))

    return tf.data.Dataset.from_generator(batches, output_signature=signature)


def _as_tuple(batch: Any) -> Any:
    return tuple(batch) if isinstance(batch, list) else batch


def _looks_batched(spec: Any) -> bool:
    """Keras's fit takes batches; an element whose label is a scalar was never batched."""
    if not isinstance(spec, tuple):
        return True
    labels = tf.nest.flatten(spec[1]) if len(spec) > 1 else []
    return not any(s.shape.rank == 0 for s in labels)


def _unbatched(data: Any, what: str, where: Where) -> tuple[tf.data.Dataset, int | None]:
    """(unbatched elements, the data set's batch size when it was batched)."""
    ds = _from_py_dataset(data, what) if not isinstance(data, tf.data.Dataset) else data
    spec = ds.element_spec
    if not isinstance(spec, tuple) or len(spec) not in (2, 3):
        raise data_error(
            where,
            "source",
            f"{what} must yield (x, y) or (x, y, sample_weight), as Keras's fit takes it; "
            f"its elements are {_describe(spec)}. Map it first, e.g. "
            "ds.map(lambda ex: (ex['image'], ex['label']))",
        )
    if not _looks_batched(spec):
        return ds, None
    size = None
    for batch in ds.take(1):
        size = int(tf.nest.flatten(batch)[0].shape[0])
    return ds.unbatch(), size


def _describe(spec: Any) -> str:
    if isinstance(spec, Mapping):
        return "dicts with keys " + ", ".join(map(str, spec))
    if isinstance(spec, tuple):
        return f"tuples of {len(spec)}"
    return f"single tensors of shape {tuple(spec.shape)}"


def _class_info(ds: tf.data.Dataset, where: Where) -> tuple[Any, dict]:
    """(a map from the labels to class ids, the class information), read in one pass."""
    label_spec = ds.element_spec[1]
    if isinstance(label_spec, Mapping):
        return None, {"class_names": None, "num_classes": None, "task": None}
    labels = np.concatenate([y.numpy().reshape(len(y), -1) for _, y, *_ in ds.batch(4096)])
    labels = labels.reshape(len(labels), *label_spec.shape)
    if label_spec.dtype == tf.string:
        labels = labels.astype(str)
    (_,), info = encode_labels([labels], "auto", where)
    if label_spec.dtype == tf.string:
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(info["class_names"]), tf.range(len(info["class_names"]))
            ),
            default_value=-1,
        )
        return (lambda x, y, *w: (x, table.lookup(y), *w)), info
    dtype = tf.float32 if info["task"] == "regression" else tf.int32
    return (lambda x, y, *w: (x, tf.cast(y, dtype), *w)), info


def load_given(
    x: Any, validation_data: Any, spec: dict, where: Where, *, batch_given: bool
) -> tuple[dict, dict, dict]:
    """(datasets by split, sizes by split, class info) of data sets given from Python.

    `batch_given` tells whether the recipe set `data.batch_size`; if not, the data set's
    own batch size becomes `spec["batch_size"]`.
    """
    train, size = _unbatched(x, "x", where)
    if size and not batch_given:
        spec["batch_size"] = size
    val = None
    if validation_data is not None:
        if not is_dataset(validation_data):
            raise DataError(
                "validation_data: with x= a data set, give the validation data as a data set too "
                "(a tf.data.Dataset or keras.utils.PyDataset of (x, y) batches)"
            )
        val, _ = _unbatched(validation_data, "validation_data", where)
        if len(val.element_spec) != len(train.element_spec):
            raise DataError(
                "x= and validation_data= disagree on sample weights: one yields (x, y, w), "
                "the other (x, y); give both or neither"
            )
    to_ids, info = _class_info(train, where)
    if to_ids is not None:
        train = train.map(to_ids)
        val = None if val is None else val.map(to_ids)
    dss = carve_dataset({"train": train, "val": val, "test": None}, spec, where)
    sizes = {k: 0 if d is None else count_examples(d) for k, d in dss.items()}
    # the count made known: Keras then knows the steps per epoch (and does not warn that the
    # first epoch "ran out of data")
    dss = {
        k: None if d is None else d.apply(tf.data.experimental.assert_cardinality(sizes[k]))
        for k, d in dss.items()
    }
    if not sizes["train"]:
        raise data_error(where, "source", "x= yields no training examples")
    if spec["rescale"] == "auto":
        first = tf.nest.flatten(dss["train"].element_spec[0])
        spec["rescale"] = 1 / 255 if all(s.dtype == tf.uint8 for s in first) else None
    return dss, sizes, info
