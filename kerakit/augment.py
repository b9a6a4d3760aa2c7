"""Image augmentation: one fused warp per batch, in tf.data or inside the model.

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

import math
from collections.abc import Callable, Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kerakit.recipe.augment import COLOR, GEOMETRIC, LABEL, resolve_augment
from kerakit.errors import NOWHERE, Where

__all__ = ["Augmentation", "augmentation", "strip_augmentation", "AugmentLayer"]

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
        seed = _seed_pair(self.seed if seed is None else seed)
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
        seed = _seed_pair(seed if seed is not None else self.seed)
        params = _sample(self.spec, b, float(h), float(w), seed)
        return {k: v.numpy() for k, v in params.items()}

    def preview(self, images, n: int = 16, *, seed: int | None = None):
        """A matplotlib Figure: rows of original images, each above its augmented copy.

        mixup and cutmix are left out (they need labels).

        Args:
            images: an array or tensor `(count, height, width[, channels])`.
            n: how many images to show.
            seed: overrides the augmentation's own seed.
        """
        from kerakit.plots import _displayable, _figure

        x = np.asarray(images)[:n]
        if x.ndim == 3:
            x = x[..., None]
        spec = {**self.spec, "ops": [op for op in self.spec["ops"] if next(iter(op)) not in LABEL]}
        aug = augment_batch(
            spec, tf.convert_to_tensor(x), None, _seed_pair(self.seed if seed is None else seed)
        )[0]
        both, cmap = _displayable(np.concatenate([x.astype("float32"), aug.numpy()]))
        count = len(x)
        ncols = min(count, 8)
        nrows = math.ceil(count / ncols)
        fig = _figure(1.3 * ncols, 2.7 * nrows)
        for i in range(count):
            r, c = divmod(i, ncols)
            for k, title in ((0, "original"), (1, "augmented")):
                ax = fig.add_subplot(2 * nrows, ncols, (2 * r + k) * ncols + c + 1)
                ax.imshow(both[i + k * count], cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
                if c == 0:
                    ax.set_title(title, fontsize="small", loc="left")
                ax.set_axis_off()
        return fig


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


@keras.saving.register_keras_serializable(package="kerakit")
class AugmentLayer(keras.layers.Layer):
    """Runs a resolved augmentation spec while training; the identity at inference."""

    def __init__(self, spec: Mapping, **kwargs):
        super().__init__(**kwargs)
        self.spec = dict(spec)
        self.seed_generator = keras.random.SeedGenerator(self.spec.get("seed"))

    def call(self, inputs, training=None):
        if not training:
            return tf.cast(inputs, self.compute_dtype)
        seed = tf.cast(self.seed_generator.next(), tf.int64)
        return tf.cast(augment_batch(self.spec, inputs, None, seed)[0], self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "spec": self.spec}


def strip_augmentation(model: keras.Model) -> keras.Model:
    """A copy of `model` with every `AugmentLayer` replaced by `Identity` (weights shared).

    Export this: it needs no kerakit to load, and behaves the same at inference.
    """

    def clone(layer):
        if isinstance(layer, AugmentLayer):
            return keras.layers.Identity(name=layer.name)
        return layer

    return keras.models.clone_model(model, clone_function=clone)


# --------------------------------------------------------------------------- the batch function


def _seed_pair(seed: int | None) -> tf.Tensor:
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % 2**62)
    return tf.constant([int(seed) % 2**62, 0], tf.int64)


def _plan(spec: Mapping) -> tuple[list, list]:
    """The uniform draws every op needs, as static columns: (names, bounds).

    Each bound is `(lo, hi, scale)`: the column is drawn from [lo, hi) and
    multiplied by `scale` ("w", "h", "w-1", "h-1" or None: a share of the
    image's width or height, known only per batch).
    """
    names: list[str] = []
    bounds: list[tuple] = []

    def add(name, lo, hi, scale=None):
        names.append(name)
        bounds.append((float(lo), float(hi), scale))

    for op in spec["ops"]:
        ((name, arg),) = op.items()
        if name == "flip":
            if arg in ("horizontal", "both"):
                add("flip_h", 0, 1)
            if arg in ("vertical", "both"):
                add("flip_v", 0, 1)
        elif name in ("rotation", "shear"):
            add(name, -float(arg), float(arg))
        elif name == "shift":
            add("shift_x", -float(arg[0]), float(arg[0]), "w")
            add("shift_y", -float(arg[1]), float(arg[1]), "h")
        elif name == "zoom":
            add("zoom_x", *arg["range"])
            if not arg["keep_aspect"]:
                add("zoom_y", *arg["range"])
        elif name == "crop":
            half = (1 - float(arg)) / 2
            add("crop_x", -half, half, "w-1")
            add("crop_y", -half, half, "h-1")
        elif name == "contrast":
            add("contrast", 1 - float(arg), 1 + float(arg))
        elif name == "brightness":
            add("brightness", *arg["range"])
    return names, bounds


def _draw(spec: Mapping, b, h, w, seed) -> tuple[dict[str, int], tf.Tensor | None]:
    """Every op's uniform parameters in ONE stateless draw: ({name: column}, (batch, n)).

    At 28x28 a batch's whole warp is about 2 ms of CPU, so the fixed work per
    batch counts: one draw and one scaling, whatever the ops are.
    """
    names, bounds = _plan(spec)
    if not names:
        return {}, None
    lo = np.array([lo for lo, _, _ in bounds], "float32")
    span = np.array([hi - lo for lo, hi, _ in bounds], "float32")
    u = tf.random.stateless_uniform([b, len(names)], seed)
    scales = [sc for _, _, sc in bounds]
    if any(scales):
        size = {"w": w, "h": h, "w-1": w - 1, "h-1": h - 1, None: 1.0}
        factor = [size[sc] for sc in scales]
        if all(isinstance(f, float) for f in factor):
            factor = np.array(factor, "float32")
        else:
            factor = tf.stack([tf.cast(f, tf.float32) for f in factor])
        lo, span = lo * factor, span * factor
    vals = u * span + lo
    cols = {n: i for i, n in enumerate(names)}
    if "flip_h" in cols or "flip_v" in cols:  # a coin: 1.0 where flipped
        flips = np.array([n.startswith("flip_") for n in names])
        vals = tf.where(flips, tf.cast(vals < 0.5, tf.float32), vals)
    if "zoom_x" in cols and "zoom_y" not in cols:  # keep_aspect: one zoom for both
        cols["zoom_y"] = cols["zoom_x"]
    return cols, vals


def _sample(spec: Mapping, b, h, w, seed) -> dict[str, tf.Tensor]:
    """Per-image random parameters of every op, from one stateless seed."""
    cols, vals = _draw(spec, b, h, w, seed)
    p = {n: vals[:, i] for n, i in cols.items()}
    if "flip_h" in p or "flip_v" in p:  # both, 0.0 for the axis never flipped
        for name in ("flip_h", "flip_v"):
            p.setdefault(name, tf.zeros([b]))
    p.update(_label_params(spec, b, h, w, seed))
    return p


def _label_params(spec: Mapping, b, h, w, seed) -> dict[str, tf.Tensor]:
    p: dict[str, tf.Tensor] = {}
    for i, op in enumerate(spec["ops"]):
        ((name, arg),) = op.items()
        if name not in LABEL:
            continue
        s = tf.random.experimental.stateless_fold_in(seed, i)
        g = tf.random.stateless_gamma([2, b], s, alpha=float(arg))
        p[f"{name}_lambda"] = g[0] / (g[0] + g[1] + 1e-12)
        p[f"{name}_perm"] = tf.argsort(tf.random.stateless_uniform([b], s + 1))
        if name == "cutmix":
            cy, cx = tf.unstack(tf.random.stateless_uniform([2, b], s + 2), num=2)
            p["cutmix_y"], p["cutmix_x"] = cy * h, cx * w
    return p


# The 3x3 matrix of each geometric op as indexes into the table of
# `_matrices`: [draws..., cos, sin, -sin, 1 - 2*flip_v, 1 - 2*flip_h, crop, 1, 0]
_MATRIX = {
    "flip": ("flip_v'", 0, 0, 0, "flip_h'", 0),
    "rotation": ("cos:rotation", "-sin:rotation", 0, "sin:rotation", "cos:rotation", 0),
    "shift": (1, 0, "shift_y", 0, 1, "shift_x"),
    "zoom": ("zoom_y", 0, 0, 0, "zoom_x", 0),
    # ImageDataGenerator's shear, as it really acts on images: along the width
    "shear": ("cos:shear", 0, 0, "-sin:shear", 1, 0),
    # a smaller window at a random place, stretched to the whole image
    "crop": ("crop", 0, "crop_y", 0, "crop", "crop_x"),
}


def _matrices(spec: Mapping, cols: Mapping, vals, b, h, w) -> tf.Tensor | None:
    """The (batch, 8) ImageProjectiveTransform rows: output pixel -> input pixel.

    Built in (row, col) coordinates about the image centre, in ImageDataGenerator's
    own convention; ops compose in list order (the first op is applied first).
    Every op's matrix comes out of one gather from a table of the drawn values,
    so the op count stays small whatever the ops are.
    """
    geo = [op for op in spec["ops"] if next(iter(op)) in GEOMETRIC]
    if not geo:
        return None
    n = 0 if vals is None else int(vals.shape[1])
    parts, index = ([vals] if vals is not None else []), {}
    angles = [a for a in ("rotation", "shear") if a in cols]
    if angles:
        t = tf.gather(vals, [cols[a] for a in angles], axis=1) * (math.pi / 180)
        cos, sin = tf.cos(t), tf.sin(t)
        parts += [cos, sin, -sin]
        for k, a in enumerate(angles):
            index[f"cos:{a}"] = n + k
            index[f"sin:{a}"] = n + len(angles) + k
            index[f"-sin:{a}"] = n + 2 * len(angles) + k
        n += 3 * len(angles)
    flips = [f for f in ("flip_v", "flip_h") if f in cols]
    if flips:
        parts.append(1 - 2 * tf.gather(vals, [cols[f] for f in flips], axis=1))
        index.update({f"{f}'": n + k for k, f in enumerate(flips)})
        n += len(flips)
    crops = sorted({float(op["crop"]) for op in geo if "crop" in op})
    consts = [*crops, 1.0, 0.0]
    parts.append(tf.ones([b, 1]) * tf.constant([consts], tf.float32))
    index.update({1: n + len(crops), 0: n + len(crops) + 1})
    index.update(cols)

    rows = []
    for op in geo:
        ((name, arg),) = op.items()
        six = _MATRIX[name]
        if name == "flip":
            six = tuple(x if x not in ("flip_h'", "flip_v'") or x[:-1] in cols else 1 for x in six)
        entries = [(n + crops.index(float(arg))) if x == "crop" else index[x] for x in six]
        rows += [*entries, index[0], index[0], index[1]]  # the last row: 0 0 1
    table = tf.concat(parts, axis=1)
    ms = tf.reshape(tf.gather(table, rows, axis=1), [b, len(geo), 3, 3])
    ms = tf.unstack(ms, num=len(geo), axis=1)
    m = ms[0]
    for k in ms[1:]:
        m = _matmul3(m, k)
    # centre: O m O^-1, with O a shift by (cy, cx); then (row, col) -> TF's (x=col, y=row)
    if isinstance(h, float) and isinstance(w, float):
        cy, cx = (h - 1) / 2, (w - 1) / 2
        o = tf.constant([[1, 0, cy], [0, 1, cx], [0, 0, 1]], tf.float32)
        o_inv = tf.constant([[1, 0, -cy], [0, 1, -cx], [0, 0, 1]], tf.float32)
    else:
        cy, cx = (tf.cast(h, tf.float32) - 1) / 2, (tf.cast(w, tf.float32) - 1) / 2
        one, zero = tf.constant(1.0), tf.constant(0.0)
        o = tf.reshape(tf.stack([one, zero, cy, zero, one, cx, zero, zero, one]), [3, 3])
        o_inv = tf.reshape(tf.stack([one, zero, -cy, zero, one, -cx, zero, zero, one]), [3, 3])
    m = _matmul3(_matmul3(o, m), o_inv)
    return tf.gather(tf.reshape(m, [b, 9]), [4, 3, 5, 1, 0, 2, 6, 7], axis=1)


def _matmul3(a, b):
    """(..., 3, 3) @ (..., 3, 3) as a broadcast multiply and a sum: for stacks of 3x3
    matrices this is several times cheaper than a batched matmul kernel call."""
    return tf.reduce_sum(a[..., :, :, None] * b[..., None, :, :], axis=-2)


def augment_batch(spec: Mapping, x, y, seed) -> tuple:
    """Augment one batch `x` (batch, height, width, channels) and its labels `y` (or None)."""
    x = tf.convert_to_tensor(x)
    if x.dtype != tf.uint8 and x.dtype != tf.float32:
        x = tf.cast(x, tf.float32)  # uint8 stays uint8 through the warp: a quarter of the bytes
    if x.shape.rank == 3:
        x = x[..., None]
    static, shape = x.shape, tf.shape(x)
    b = shape[0]
    h, w = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    if x.shape[1] is not None and x.shape[2] is not None:  # static sizes fold into constants
        h, w = float(x.shape[1]), float(x.shape[2])
    cols, vals = _draw(spec, b, h, w, seed)
    transforms = _matrices(spec, cols, vals, b, h, w)
    if transforms is not None:
        x = tf.raw_ops.ImageProjectiveTransformV3(
            images=x,
            transforms=transforms,
            output_shape=shape[1:3],
            fill_value=tf.constant(spec["fill_value"], tf.float32),
            interpolation=spec["interpolation"].upper(),
            fill_mode=spec["fill_mode"].upper(),
        )
    x = tf.cast(x, tf.float32)
    x.set_shape(static)  # the warp's output shape is dynamic; keep what is known
    names = [next(iter(op)) for op in spec["ops"]]
    if any(n in COLOR for n in names):
        if spec["value_range"] == "auto":
            hi = tf.where(tf.reduce_max(x) > 1.0, 255.0, 1.0)
            lo = tf.constant(0.0)
        else:
            lo, hi = (float(v) for v in spec["value_range"])
        for op in spec["ops"]:
            ((name, arg),) = op.items()
            if name == "contrast":  # keras.layers.RandomContrast
                mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
                x = (x - mean) * vals[:, cols["contrast"], None, None, None] + mean
            elif name == "brightness":
                f = vals[:, cols["brightness"], None, None, None]
                # add: keras.layers.RandomBrightness (a share of the value range);
                # multiply: ImageDataGenerator(brightness_range=...)
                x = x + f * (hi - lo) if arg["mode"] == "add" else x * f
            else:
                continue
            x = tf.clip_by_value(x, lo, hi)
    if any(n in LABEL for n in names):
        y = _check_labels(y)
        p = _label_params(spec, b, h, w, seed)
        for name in (n for n in names if n in LABEL):
            x, y = (_mixup if name == "mixup" else _cutmix)(x, y, p)
    return x, y


def _check_labels(y):
    y = None if y is None else tf.convert_to_tensor(y)
    if y is None or (y.shape.rank is not None and y.shape.rank < 2):
        raise ValueError(
            "mixup and cutmix mix the labels too, so they need one-hot labels (batch, classes); "
            "use categorical_crossentropy and one-hot labels (data label_mode 'onehot')"
        )
    return tf.cast(y, tf.float32)


def _mixup(x, y, p):
    lam, perm = p["mixup_lambda"], p["mixup_perm"]
    lx = lam[:, None, None, None]
    x = lx * x + (1 - lx) * tf.gather(x, perm)
    ly = tf.reshape(lam, [-1] + [1] * (y.shape.rank - 1))
    return x, ly * y + (1 - ly) * tf.gather(y, perm)


def _cutmix(x, y, p):
    lam, perm = p["cutmix_lambda"], p["cutmix_perm"]
    shape = tf.shape(x)
    h, w = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    r = tf.sqrt(1.0 - lam)
    y1 = tf.round(tf.clip_by_value(p["cutmix_y"] - r * h / 2, 0, h))
    y2 = tf.round(tf.clip_by_value(p["cutmix_y"] + r * h / 2, 0, h))
    x1 = tf.round(tf.clip_by_value(p["cutmix_x"] - r * w / 2, 0, w))
    x2 = tf.round(tf.clip_by_value(p["cutmix_x"] + r * w / 2, 0, w))
    rows = tf.range(h)[None, :, None]
    cols = tf.range(w)[None, None, :]
    box = (
        (rows >= y1[:, None, None]) & (rows < y2[:, None, None])
        & (cols >= x1[:, None, None]) & (cols < x2[:, None, None])
    )  # fmt: skip
    x = tf.where(box[..., None], tf.gather(x, perm), x)
    kept = 1.0 - (y2 - y1) * (x2 - x1) / (h * w)  # the label weight is the area really kept
    ly = tf.reshape(kept, [-1] + [1] * (y.shape.rank - 1))
    return x, ly * y + (1 - ly) * tf.gather(y, perm)
