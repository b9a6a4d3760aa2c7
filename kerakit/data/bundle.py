"""`load_data`: a data source's prepared splits as a `DataBundle`.

`load_data` picks the source's reader (`memory`, `images`, `tfds`), prepares
the inputs (`prepare`) and decides whether the data fits in memory; the
package docstring (`kerakit.data`) shows the whole flow. See docs/data.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from kerakit.data.features import encode
from kerakit.data.given import is_dataset, load_given
from kerakit.data.images import load_directory
from kerakit.data.memory import load_in_memory
from kerakit.data.prepare import feature_stats, prepare_inputs, prepares_nothing
from kerakit.data.series import load_series
from kerakit.data.text import load_text_folder, vectorize
from kerakit.data.tfds import load_tfds
from kerakit.data.tfrecord import load_tfrecord
from kerakit.errors import NOWHERE, DataError, Where, data_error
from kerakit.recipe.data import COMMON_DEFAULTS, data_path, resolve_data, source_kind

IN_MEMORY_BYTES = 512 * 2**20  # prepared data up to this size is cached in memory


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
        value_range: `[min, max]` of the raw training inputs (before rescaling) when
            they are one image array: 8-bit pixels are [0, 255], scikit-learn's
            digits [0, 16]. `kerakit predict` maps image files to it. None otherwise.
        feature_space: the adapted `keras.utils.FeatureSpace` of a table with `features:`
            (the splits hold its encoded vectors), else None.
        notes: lines to print about choices made while reading (`features: auto`).
        normalizer: the `keras.layers.Normalization` of a series' windows with `normalize:
            true` (the training part's mean and variance), which a run puts in front of the
            trained model; None otherwise.
        preprocessing: the `keras.layers.TextVectorization` of text inputs (`vectorize:`),
            adapted on the training split (the splits hold its token ids or vectors), which a
            run puts in front of the trained model so that it takes raw strings; else None.
        raw_test: the test split before `preprocessing` (raw strings), for the pictures.
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
    value_range: list | None = None
    feature_space: Any = None
    notes: list = field(default_factory=list)
    normalizer: Any = None
    preprocessing: Any = None
    raw_test: tf.data.Dataset | None = None

    @property
    def raw_layer(self) -> Any:
        """What prepares raw inputs inside the saved model (`feature_space`, `normalizer` or
        `preprocessing`, adapted on the training split), or None."""
        for layer in (self.feature_space, self.normalizer, self.preprocessing):
            if layer is not None:
                return layer
        return None

    @property
    def weighted(self) -> bool:
        """True when the elements are `(x, y, sample_weight)`."""
        return len(self.train.element_spec) == 3

    def preprocess(self, x: Any, batched: bool = True) -> Any:
        """Resizes, rescales and normalizes raw inputs as training did (for predict)."""
        return prepare_inputs(x, self.spec, self.stats, batched=batched)


def load_data(
    data: Mapping | str,
    *,
    base_dir: str | os.PathLike = ".",
    seed: int | None = None,
    where: Where = NOWHERE,
    x: Any = None,
    y: Any = None,
    validation_data: Any = None,
    sample_weight: Any = None,
    batch_given: bool | None = None,
    raw_features: bool = False,
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
            `arrays`; given with another source, they replace it. `x` may also be a
            `tf.data.Dataset` or `keras.utils.PyDataset` of `(x, y)` or
            `(x, y, sample_weight)` batches, as Keras's `fit` takes it (no `y` then).
        validation_data: `(x_val, y_val)` or `(x_val, y_val, w_val)` to use instead of
            carving one; a data set when `x` is one.
        sample_weight: per-example weights for the training arrays (as `fit` takes them).
        batch_given: whether the recipe set `batch_size` (default: whether `data` has the
            key); if not, a batched data set given as `x` keeps its own batch size.
        raw_features: for a table with `features:`, leave the columns raw (a dict of column
            values, as a run's saved model takes them) instead of encoding them; text inputs
            stay raw strings (not vectorized).

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
    if batch_given is None:
        batch_given = isinstance(data, Mapping) and "batch_size" in data
    spec = resolve_data(data, where)
    kind, arg = source_kind(spec["source"], where.at("source"))
    if kind == "arrays" and is_dataset(x):
        if y is not None or sample_weight is not None:
            raise DataError(
                "with x= a data set, the labels (and sample weights) come from the data set: "
                "leave out y= and sample_weight=, as Keras's fit does"
            )
    elif x is not None and is_dataset(validation_data):
        raise DataError("validation_data is a data set but x= is not; give both the same way")
    path = None
    if kind in ("npz", "csv", "directory", "text"):
        path = data_path(arg, base_dir)
        ok = path.is_dir() if kind in ("directory", "text") else path.is_file()
        if not ok:
            what = "folder" if kind in ("directory", "text") else "file"
            raise data_error(
                where,
                "source",
                f"no such {what}: {path} ({arg!r} read from {Path(base_dir).resolve()})",
            )
    series = spec.get("windows") is not None  # a time series cut into windows: data/series.py
    if series:
        dss, sizes, info = load_series(kind, path, spec, where, raw=raw_features)
    elif kind == "arrays" and is_dataset(x):
        dss, sizes, info = load_given(x, validation_data, spec, where, batch_given=batch_given)
    elif kind == "tfds":
        dss, sizes, info = load_tfds(arg, spec, base_dir, where)
    elif kind == "tfrecord":
        dss, sizes, info = load_tfrecord(arg, spec, base_dir, seed, where)
    elif kind == "directory":
        dss, sizes, info = load_directory(path, spec, seed, where)
    elif kind == "text":
        dss, sizes, info = load_text_folder(path, spec, seed, where)
    else:
        dss, sizes, info = load_in_memory(kind, path, spec, seed, where, x=x, y=y,
                                          validation_data=validation_data,
                                          sample_weight=sample_weight)  # fmt: skip
    if spec["rescale"] == "auto":
        spec["rescale"] = None
    from_memory = kind not in ("tfds", "directory", "tfrecord") and not is_dataset(x)
    value_range = raw_value_range(dss["train"], in_memory=from_memory and not series)

    def prepare(stats):
        # plain Python over static shapes: no autograph (it costs ~0.1 s a trace)
        return tf.autograph.experimental.do_not_convert(
            lambda xi, yi, *wi: (prepare_inputs(xi, spec, stats), yi, *wi)
        )

    normalize = spec["normalize"] and not series  # a series' windows are normalized already
    stats = feature_stats(dss["train"].map(prepare(None))) if normalize else None
    space, notes = None, list(info.pop("notes", []))
    preprocessing = None  # text: the adapted TextVectorization
    raw_test = None  # text: the test split's raw strings (the run's pictures show them)
    if kind == "csv" and spec.get("features") is not None:  # a FeatureSpace prepares
        if not raw_features:
            dss, space = encode(dss, spec)
            f = spec["features"]
            notes.append(f"features: {len(f['columns'])} columns and {len(f['crosses'])} "
                         f"crosses, encoded by a FeatureSpace adapted on the {sizes['train']:,} "
                         f"training rows")  # fmt: skip
    elif spec.get("vectorize") is not None:  # text: a TextVectorization prepares (data/text.py)
        if not raw_features:
            raw_test = dss["test"]
            dss, preprocessing = vectorize(dss, spec)
            size = preprocessing.vocabulary_size()
            notes.append(f"vectorize: a vocabulary of {size:,} tokens, adapted on the "
                         f"{sizes['train']:,} training texts")  # fmt: skip
    elif not prepares_nothing(dss["train"].element_spec[0], spec, stats):
        dss = {k: None if d is None else d.map(prepare(stats)) for k, d in dss.items()}
    element = dss["train"].element_spec[0]
    shapes = tf.nest.map_structure(lambda s: tuple(s.shape), element)
    for part in tf.nest.flatten(element):
        if not part.shape.is_fully_defined():
            raise data_error(
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
        value_range=value_range,
        feature_space=space,
        notes=notes,
        preprocessing=preprocessing,
        raw_test=raw_test,
        **info,
    )


def raw_value_range(ds: tf.data.Dataset, *, in_memory: bool) -> list | None:
    """[min, max] of a dataset's raw inputs when they are one image array (rank 3 or more per
    example): [0, 255] for 8-bit pixels; read from the values when they are in memory."""
    spec = ds.element_spec[0]
    if isinstance(spec, Mapping) or not isinstance(spec, tf.TensorSpec) or spec.shape.rank < 2:
        return None
    if spec.dtype == tf.uint8:
        return [0, 255]
    if not in_memory or not spec.dtype.is_floating and not spec.dtype.is_integer:
        return None
    low, high = np.inf, -np.inf
    for x, *_ in ds.batch(4096):
        low, high = min(low, float(tf.reduce_min(x))), max(high, float(tf.reduce_max(x)))
    return [low, high] if np.isfinite(low) and np.isfinite(high) else None


def load_recipe_data(recipe: Any, **kwargs: Any) -> DataBundle:
    """`load_data` for a `Recipe`: its data section, folder, seed and position.

    Args:
        recipe: a loaded `kerakit.recipe.Recipe`.
        **kwargs: `x`, `y`, `validation_data`, `sample_weight` as `load_data` takes them.
    """
    kwargs.setdefault("batch_given", ("data", "batch_size") in recipe.positions)
    return load_data(recipe["data"], base_dir=recipe.base_dir, seed=recipe["seed"],
                     where=recipe.where.at("data"), **kwargs)  # fmt: skip
