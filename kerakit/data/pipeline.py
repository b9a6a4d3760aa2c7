"""Batching for `fit`, `evaluate` and `predict`: cache, shuffle, batch, one-hot, augment, prefetch."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import tensorflow as tf


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
    """Batches an unbatched `(x, y)` or `(x, y, sample_weight)` dataset for `fit`, `evaluate`
    or `predict`.

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
            None / "auto": off when the elements are cached in memory, where it
            has nothing to tune but costs CPU (docs/performance.md has the figures).

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
        ds = ds.map(lambda x, y, *w: (x, _one_hot(y, num_classes), *w))
    if augment_fn is not None and training:
        if augment_labels:  # mixup/cutmix: an example keeps its own sample weight

            def augment(x, y, *w):
                return (*augment_fn(x, y), *w)

        else:

            def augment(x, y, *w):
                return (augment_fn(x), y, *w)

        ds = ds.map(
            augment,
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


def to_numpy(ds: tf.data.Dataset) -> tuple[Any, Any]:
    """An unbatched `(x, y)` dataset as NumPy `(x, y)`; named inputs or outputs stay dicts of
    arrays. Sample weights, if the elements carry them, are left out."""
    xs, ys = [], []
    for x, y, *_ in ds.batch(1024):
        xs.append(tf.nest.map_structure(lambda t: t.numpy(), x))
        ys.append(tf.nest.map_structure(lambda t: t.numpy(), y))
    return tuple(
        tf.nest.map_structure(lambda *parts: np.concatenate(parts), *part) for part in (xs, ys)
    )
