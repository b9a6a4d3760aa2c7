"""The batch function: one fused warp per batch, then color ops, then mixup / cutmix.

The geometric ops (flip, rotation, shift, zoom, shear, crop) are composed into
one 3x3 matrix per image and applied in ONE `ImageProjectiveTransformV3` call
per batch (a chain of keras.layers.Random* warps the batch once per layer).
All random parameters of a batch come from one stateless draw, so one seed
repeats the same augmented batches. docs/performance.md has the measurements
behind the choices below.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from kerakit.recipe.augment import COLOR, GEOMETRIC, LABEL


def seed_pair(seed: int | None) -> tf.Tensor:
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
    """Every op's uniform parameters in ONE stateless draw: ({name: column}, (batch, n)); the
    fixed work per batch counts at small image sizes (docs/performance.md)."""
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


def sample(spec: Mapping, b, h, w, seed) -> dict[str, tf.Tensor]:
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
