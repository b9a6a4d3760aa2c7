"""`augmentation(...)` and `Augmentation`: run a resolved augment spec on batches.

`augmentation(...)` takes what a recipe's `augment:` section takes (a preset,
ops, ImageDataGenerator keywords; see `kerakit.recipe.augment`) and returns an
`Augmentation`, which runs it on batches:

- the geometric ops (flip, rotation, shift, zoom, shear, crop) are composed
  into one 3x3 matrix per image and applied in ONE
  `ImageProjectiveTransformV3` call per batch (a chain of keras.layers.Random*
  warps the batch once per layer);
- then the color ops (contrast, brightness), then mixup / cutmix (which need
  one-hot labels).

Randomness is stateless and seeded, so one seed repeats the same augmented
batches. The ranges are those of the Keras layers and of ImageDataGenerator
(docs/augment.md has the mapping).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kerakit.augment.layer import AugmentLayer
from kerakit.augment.warp import augment_batch, sample, seed_pair
from kerakit.errors import NOWHERE, Where
from kerakit.recipe.augment import LABEL, resolve_augment

_OPTION_KWARGS = ("placement", "fill_mode", "fill_value", "interpolation", "value_range")


class Augmentation:
    """A resolved augmentation, ready to run on batches of images.

    Made by `augmentation(...)`. Use `apply(ds)` on a batched tf.data dataset,
    `map_fn()` for `kerakit.data.make_pipeline(augment_fn=...)`, or `layer()` to
    put it inside a model (active only while training).

    Attributes:
        spec: the resolved spec (plain values; `resolve_augment` accepts it unchanged).
        needs_labels: True when mixup or cutmix is present (they need one-hot labels).
        placement: "data" (in tf.data) or "model" (as the model's first layer).
        seed: the seed, or None for fresh randomness each time.
    """

    def __init__(self, spec: Mapping):
        self.spec = dict(spec)
        self.seed = self.spec.get("seed")
        self.placement = self.spec["placement"]
        names = [next(iter(op)) for op in self.spec["ops"]]
        self.needs_labels = any(n in LABEL for n in names)

    def __repr__(self) -> str:
        ops = ", ".join(f"{k}={v!r}" for op in self.spec["ops"] for k, v in op.items())
        return f"Augmentation({ops}, placement={self.placement!r}, seed={self.seed!r})"

    def __call__(self, x, y=None, *, seed=None):
        """Augment one batch now: `aug(x)` -> x, `aug(x, y)` -> (x, y)."""
        seed = seed_pair(self.seed if seed is None else seed)
        out = augment_batch(self.spec, x, y, seed)
        return out if y is not None else out[0]

    def apply(self, ds: tf.data.Dataset, *, seed: int | None = None) -> tf.data.Dataset:
        """Augment a BATCHED dataset of `(x, y)` (or `x`) with a parallel map, then prefetch.

        Each batch draws its seed from `tf.data.Dataset.random(seed)`, which
        gives new draws every epoch and the same sequence for the same seed.

        Args:
            ds: batched elements `(x, y)` or `x`; images `(batch, height, width, channels)`.
            seed: overrides the augmentation's own seed.

        Example:
            >>> train = aug.apply(train.batch(32))  # doctest: +SKIP
        """
        seed = self.seed if seed is None else seed
        spec = self.spec
        rand = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        base = tf.constant(int(seed or 0) % 2**62, tf.int64)
        labelled = isinstance(ds.element_spec, tuple) and len(ds.element_spec) == 2

        def fn(elem, r):
            pair = tf.stack([r, base])
            if labelled:
                return augment_batch(spec, elem[0], elem[1], pair)
            return augment_batch(spec, elem, None, pair)[0]

        ds = tf.data.Dataset.zip((ds, rand)).map(
            fn,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True if seed is not None else None,
        )
        return ds.prefetch(tf.data.AUTOTUNE)

    def map_fn(self) -> Callable:
        """A batch function for a tf.data `map`: `fn(x)` -> x, or `fn(x, y)` -> (x, y).

        Its randomness is seeded by the augmentation's seed and a fingerprint of
        the batch, so it needs no state and is safe under a parallel map: the same
        seed and the same (shuffled) batches give the same result. mixup and
        cutmix need the labels: call it as `fn(x, y)`.

        Example:
            >>> ds = ds.map(aug.map_fn(), num_parallel_calls=tf.data.AUTOTUNE)  # doctest: +SKIP
        """
        spec, needs_labels = self.spec, self.needs_labels
        base = self.seed if self.seed is not None else int(np.random.SeedSequence().entropy % 2**31)
        base = tf.constant([base % 2**31, (base >> 31) % 2**31], tf.int32)

        def fn(x, y=None):
            if y is None and needs_labels:
                raise ValueError(
                    "this augmentation has mixup or cutmix, which mix labels too: call the map "
                    "function with (x, y), e.g. ds.map(lambda x, y: fn(x, y))"
                )
            fp = tf.bitcast(tf.reshape(tf.fingerprint(tf.reshape(x, [1, -1])), [2, 4]), tf.int32)
            seed = tf.cast(tf.bitwise.bitwise_xor(fp, base), tf.int64)
            out = augment_batch(spec, x, y, seed)
            return out if y is not None else out[0]

        return fn

    def layer(self, name: str = "augmentation") -> keras.layers.Layer:
        """A Keras layer that augments while training and passes images through otherwise.

        Put it first in the model. `strip_augmentation(model)` removes it for export.

        Example:
            >>> model = keras.Sequential([keras.Input((28, 28, 1)), aug.layer(), ...])  # doctest: +SKIP
        """
        if self.needs_labels:
            raise ValueError("mixup and cutmix mix labels too, so they cannot run inside the model")
        return AugmentLayer(self.spec, name=name)

    def sample(self, shape, *, seed: int | None = None) -> dict[str, np.ndarray]:
        """The random parameters one batch of `shape` would draw (for tests and docs).

        Returns a dict of per-image arrays: `rotation` (degrees), `shift_x`,
        `shift_y` (pixels), `zoom_x`, `zoom_y`, `shear` (degrees), `flip_h`, `flip_v`,
        ... (only those of the ops present).
        """
        b, h, w = (int(s) for s in shape[:3])
        seed = seed_pair(seed if seed is not None else self.seed)
        params = sample(self.spec, b, float(h), float(w), seed)
        return {k: v.numpy() for k, v in params.items()}

    def preview(self, images, n: int = 16, *, seed: int | None = None):
        """A matplotlib Figure: rows of original images, each above its augmented copy.

        mixup and cutmix are left out (they need labels).

        Args:
            images: an array or tensor `(count, height, width[, channels])`.
            n: how many images to show.
            seed: overrides the augmentation's own seed.
        """
        from kerakit.report.plots import show_augmented  # matplotlib only when asked

        x = np.asarray(images)[:n]
        if x.ndim == 3:
            x = x[..., None]
        spec = {**self.spec, "ops": [op for op in self.spec["ops"] if next(iter(op)) not in LABEL]}
        aug = augment_batch(
            spec, tf.convert_to_tensor(x), None, seed_pair(self.seed if seed is None else seed)
        )[0]
        return show_augmented(x, aug.numpy())


def augmentation(
    spec: Any = None, *, seed: int | None = None, where: Where = NOWHERE, **ops
) -> Augmentation:
    """Make an `Augmentation` from a preset, ops, or ImageDataGenerator keywords.

    Args:
        spec: a preset name (`"light"`, `"medium"`, `"heavy"`), a list of ops,
            a mapping (a recipe's `augment:` section, resolved or not), or an
            `Augmentation` (returned as is).
        seed: seeds the random draws; the same seed repeats the same batches.
        where: position of `augment` in a recipe, for error messages.
        **ops: ops in order, e.g. `rotation=30, shift=0.2, zoom=0.2, flip="horizontal"`,
            and options `placement`, `fill_mode`, `fill_value`, `interpolation`, `value_range`.

    Example:
        >>> aug = augmentation(rotation=30, shift=0.2, zoom=0.2, flip="horizontal", seed=1)
        >>> aug.placement
        'data'
    """
    if isinstance(spec, Augmentation):
        return spec
    options = {k: ops.pop(k) for k in _OPTION_KWARGS if k in ops}
    if spec is None:
        if not ops:
            raise where.error(
                "no augmentation ops given; e.g. augmentation(rotation=30, flip='horizontal')"
            )
        spec = {"ops": [{k: v} for k, v in ops.items()]}
    elif ops:
        raise where.error(
            f"give ops either in `spec` or as keywords, not both (got {', '.join(ops)})"
        )
    if options:
        if isinstance(spec, str):
            spec = {"preset": spec}
        elif isinstance(spec, (list, tuple)):
            spec = {"ops": list(spec)}
        spec = {**spec, **options}
    resolved = resolve_augment(spec, where, seed=seed)
    if resolved is None:
        raise where.error("this augmentation has no ops")
    if seed is not None:
        resolved["seed"] = seed
    return Augmentation(resolved)


def _from_image_data_generator(
    *, seed: int | None = None, where: Where = NOWHERE, **kwargs
) -> Augmentation:
    """The same transforms as `ImageDataGenerator(**kwargs)`, with the same ranges.

    A keyword with no faithful equivalent is an error that says why.

    Example:
        >>> aug = augmentation.from_image_data_generator(rotation_range=30, zoom_range=0.2)
        >>> aug.spec["ops"]
        [{'rotation': 30}, {'zoom': {'range': [0.8, 1.2], 'keep_aspect': False}}]
    """
    if not kwargs:
        raise where.error("no ImageDataGenerator keywords given")
    return augmentation(dict(kwargs), seed=seed, where=where)


augmentation.from_image_data_generator = _from_image_data_generator
