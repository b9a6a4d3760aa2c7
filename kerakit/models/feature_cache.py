"""Stage 1 of a transfer model on cached backbone features: the backbone runs once.

`split_for_feature_cache` splits a model of `kerakit.models.transfer.transfer_model`
into (raw images -> features, features -> outputs), sharing its layers;
`cache_features` runs the first over a dataset once, in memory or on disk.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from kerakit._files import atomic_path
from kerakit.data import without_autotune

# ---- feature caching (stage 1) ------------------------------------------------------


def split_for_feature_cache(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """(raw images → backbone features, features → outputs), sharing the model's layers.

    Training the second model trains the head of ``model`` itself (the same
    layer objects), so after stage 1 on cached features ``model`` predicts
    with the trained head and is saved whole, taking raw images.
    """
    base = model.get_layer("backbone")  # a model of transfer_model: see `transfer_parts`
    head = model.layers[model.layers.index(base) + 1 :]
    inputs = keras.Input(shape=model.input_shape[1:], name="image")
    feats = base(model.get_layer("preprocess")(inputs), training=False)
    feature_model = keras.Model(inputs, feats, name="features")
    x = head_in = keras.Input(shape=feats.shape[1:], dtype=feats.dtype, name="features")
    for layer in head:
        x = layer(x)
    return feature_model, keras.Model(head_in, x, name="head")


def cache_features(
    feature_model: keras.Model,
    ds: tf.data.Dataset,
    *,
    directory: str | None = None,
    batch_size: int | None = None,
    shuffle: bool = False,
    seed: int | None = None,
) -> tf.data.Dataset:
    """Runs the backbone once over ``ds`` and returns a dataset of (features, labels, ...).

    The features are computed now, once, and kept in memory, or written under
    ``directory`` (a later call with the same folder, e.g. after a resume,
    reads them back instead of computing them again).

    Args:
        feature_model: the first model of `split_for_feature_cache`.
        ds: batches of ``(images, labels)`` or ``(images, labels, sample_weights)``.
        directory: a folder for the cache on disk; None keeps it in memory.
        batch_size: the batch size of the result; default: that of ``ds``'s first batch.
        shuffle: reshuffle the cached examples every epoch (for training).
        seed: the shuffle seed.

    Example:
        >>> features, head = split_for_feature_cache(model)
        >>> head.compile("adam", "sparse_categorical_crossentropy")
        >>> head.fit(cache_features(features, train, shuffle=True), epochs=5)
    """
    if directory and os.path.isdir(directory):
        cached = tf.data.Dataset.load(directory)
    else:
        infer = tf.function(lambda x: feature_model(x, training=False), reduce_retracing=True)
        parts: list[list[np.ndarray]] = []
        for batch in ds:
            batch = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
            row = [infer(batch[0]).numpy(), *(np.asarray(t) for t in batch[1:])]
            parts = parts or [[] for _ in row]
            for store, value in zip(parts, row):
                store.append(value)
        if not parts:
            raise ValueError("cache_features: the dataset is empty")
        batch_size = batch_size or len(parts[0][0])
        cached = tf.data.Dataset.from_tensor_slices(tuple(np.concatenate(p) for p in parts))
        if directory:  # written aside, then renamed: a killed run never leaves half a cache
            with atomic_path(directory) as tmp:
                cached.save(str(tmp))
    if batch_size is None:
        first = next(iter(ds))
        batch_size = int((first[0] if isinstance(first, (tuple, list)) else first).shape[0])
    if shuffle:
        n = int(cached.cardinality())
        cached = cached.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)
    # features in memory or a small saved copy: nothing for tf.data's autotuner to tune
    return without_autotune(cached.batch(batch_size).prefetch(tf.data.AUTOTUNE))
