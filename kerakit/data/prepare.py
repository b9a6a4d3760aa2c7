"""Preparing inputs as training does: resize, rescale, normalize, flatten (for fit and predict)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf


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


def prepares_nothing(element: Any, spec: Mapping, stats: Mapping | None) -> bool:
    """True when `prepare_inputs` would return its float32 inputs unchanged."""
    if stats or spec.get("image_size") or spec.get("flatten"):
        return False
    if spec.get("rescale") not in (None, "auto"):
        return False
    return all(s.dtype == tf.float32 for s in tf.nest.flatten(element))


def feature_stats(ds: tf.data.Dataset) -> dict:
    """Mean and standard deviation of each feature (last axis) over a dataset's x."""
    sums: dict = {}
    for xb, *_ in ds.batch(1024):
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
