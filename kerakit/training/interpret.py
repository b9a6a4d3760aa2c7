"""What needs the model to interpret a classifier: Grad-CAM heat maps (keras.io's "Grad-CAM
class activation visualization", with `tf.GradientTape` on the last convolutional layer,
found inside a nested backbone too) and test-time augmentation. The pictures are drawn by
`kerakit.report.interpret`, which imports no TensorFlow.

    heat = gradcam(model, x_test[:4])            # (4, h', w') in [0, 1]
    probs = tta_predict(model, x_test, n=4)      # the plain pass and 4 augmented ones, averaged
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kerakit.errors import DataError

# Layers after the last convolution that keep its feature map (the keras.io example takes the
# activation after the convolution, e.g. "block14_sepconv2_act").
_SAME_MAP = ("Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "BatchNormalization")


def last_conv_layer(model) -> tuple[Any, str]:
    """The layer whose 4-D output Grad-CAM looks at, and its path (`"efficientnetb0/top_activation"`).

    The last convolution of the model in graph order, searching inside nested models (a
    transfer model's backbone), followed by the activations and BatchNormalization right
    after it.

    Raises:
        DataError: the model has no 2-D convolution.
    """
    found: list[tuple[Any, str]] = []

    def walk(m, prefix: str) -> None:
        after_conv = False
        for layer in m.layers:
            path = f"{prefix}{layer.name}"
            if hasattr(layer, "layers") and layer.layers:  # a nested Sequential / Functional
                walk(layer, path + "/")
                after_conv = False
            elif "Conv" in type(layer).__name__ and _rank(layer) == 4:
                found.append((layer, path))
                after_conv = True
            elif after_conv and type(layer).__name__ in _SAME_MAP and _rank(layer) == 4:
                found[-1] = (layer, path)
            else:
                after_conv = False

    walk(model, "")
    if not found:
        raise DataError(
            "Grad-CAM looks at the last 2-D convolution of an image classifier; "
            f"this model ({model.name}) has none"
        )
    return found[-1]


def gradcam(model, x: Any, class_index: Any = None, *, layer: Any = None,
            batch_size: int = 32) -> np.ndarray:  # fmt: skip
    """Grad-CAM heat maps of images: where the model looked for a class.

    keras.io's recipe: the gradient of the class score with respect to the last
    convolutional feature map, averaged over the map (one weight per channel), weights
    times the map summed over channels, negatives dropped, divided by the maximum. The
    layer's output is captured while the model runs, so a backbone nested in a transfer
    model works as a plain CNN does.

    Args:
        model: a Keras image classifier (softmax rows, or one sigmoid unit).
        x: images as the model takes them, `(n, h, w, c)` (one image `(h, w, c)` too).
        class_index: the class to explain, one for all or one per image; None: the
            predicted class of each image.
        layer: a layer (or its name in `model`) to look at; None: `last_conv_layer`.
        batch_size: images per gradient pass.

    Returns:
        `(n, h', w')` float32 heat maps in [0, 1] (the layer's resolution).

    Example:
        >>> heat = gradcam(model, x_test[:4])  # doctest: +SKIP
    """
    import tensorflow as tf

    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 3 and len(model.input_shape) == 4:
        x = x[None]
    if layer is None:
        layer, _ = last_conv_layer(model)
    elif isinstance(layer, str):
        layer = model.get_layer(layer)
    n = len(x)
    classes = None if class_index is None else np.broadcast_to(np.asarray(class_index), (n,))
    maps = []
    for start in range(0, n, batch_size):
        part = tf.convert_to_tensor(x[start : start + batch_size])
        chosen = None if classes is None else classes[start : start + batch_size]
        maps.append(_heatmaps(model, layer, part, chosen))
    return np.concatenate(maps) if maps else np.zeros((0, 0, 0), np.float32)


def _heatmaps(model, layer, x, classes) -> np.ndarray:
    import tensorflow as tf

    seen: dict = {}
    tape = tf.GradientTape()
    original = layer.call

    def call(*args, **kwargs):  # keep the feature map and watch it (frozen layers too)
        out = original(*args, **kwargs)
        tape.watch(out)
        seen["map"] = out
        return out

    object.__setattr__(layer, "call", call)
    try:
        with tape:
            preds = tf.convert_to_tensor(model(x, training=False))
            preds = tf.reshape(preds, (tf.shape(preds)[0], -1))
            if preds.shape[-1] == 1:  # one sigmoid unit: class 1 is the score, class 0 its opposite
                chosen = (preds[:, 0] >= 0.5) if classes is None else tf.constant(classes == 1)
                score = tf.where(chosen, preds[:, 0], -preds[:, 0])
            else:
                idx = tf.argmax(preds, axis=-1) if classes is None else tf.constant(classes)
                score = tf.gather(preds, tf.cast(idx, tf.int32), axis=1, batch_dims=1)
            total = tf.reduce_sum(score)
    finally:
        object.__delattr__(layer, "call")
    if "map" not in seen:
        raise DataError(f"the layer {layer.name} did not run when the model was called")
    fmap = seen["map"]
    grads = tape.gradient(total, fmap)
    weights = tf.reduce_mean(grads, axis=(1, 2))  # one weight per channel, per image
    heat = tf.nn.relu(tf.einsum("nhwc,nc->nhw", fmap, weights))
    peak = tf.reduce_max(heat, axis=(1, 2), keepdims=True)
    heat = tf.math.divide_no_nan(heat, peak)
    return np.asarray(heat, dtype=np.float32)


def tta_augmentation(augment: Any = None, *, seed: int | None = 42):
    """The augmentation of test-time augmentation: the recipe's `augment:` ops without mixup
    and cutmix (they need labels), or a horizontal flip when there are none."""
    from kerakit.augment import augmentation
    from kerakit.recipe.augment import LABEL

    ops = [op for op in (augment or {}).get("ops", []) if next(iter(op)) not in LABEL]
    if not ops:
        return augmentation(flip="horizontal", seed=seed)
    keep = {k: v for k, v in augment.items() if k not in ("ops", "placement", "preset")}
    return augmentation({**keep, "ops": ops}, seed=seed)


def tta_predict(model, x: Any, n: int = 4, *, augment: Any = None, seed: int = 42,
                batch_size: int = 256) -> np.ndarray:  # fmt: skip
    """fastai's `tta`: the model's outputs on `x` averaged over the plain pass and `n`
    augmented passes (`tta_augmentation(augment)`), each pass with its own seed.

    Args:
        model: a Keras image model.
        x: images `(n, h, w, c)` as the model takes them.
        n: how many augmented passes.
        augment: a recipe's resolved `augment:` section, an `Augmentation`, or None (flips).
        seed: the first pass's seed.
    """
    import tensorflow as tf

    from kerakit.augment import Augmentation

    x = np.asarray(x, dtype=np.float32)
    if len(model.input_shape) != 4 or x.ndim != 4:
        raise DataError(
            "test-time augmentation augments images; this model takes inputs of shape "
            f"{tuple(model.input_shape[1:])}"
        )
    aug = augment if isinstance(augment, Augmentation) else tta_augmentation(augment, seed=seed)

    def outputs(images) -> np.ndarray:
        parts = [np.asarray(model(images[i : i + batch_size], training=False), np.float32)
                 for i in range(0, len(images), batch_size)]  # fmt: skip
        return np.concatenate(parts)

    total = outputs(x)
    for k in range(int(n)):
        total = total + outputs(np.asarray(aug(tf.constant(x), seed=seed + k + 1)))
    return total / (int(n) + 1)


def _rank(layer) -> int | None:
    try:
        return len(layer.output.shape)
    except Exception:  # a layer never called in a graph has no output
        return None


def top_loss_gradcam(model, x: Any, y_true: Any, probs: Any, *, k: int = 6,
                     from_logits: bool | None = None) -> tuple[np.ndarray, np.ndarray] | str:  # fmt: skip
    """(indices, heat maps) of the `k` test images with the highest loss, for a run's
    `gradcam.png`; or why there are none (a model with no convolution)."""
    from kerakit.report.interpret import top_losses

    idx, _ = top_losses(y_true, probs, k, from_logits=from_logits)
    try:
        return idx, gradcam(model, np.asarray(x)[idx])
    except DataError as exc:
        return str(exc)


def check_tta(model) -> None:
    """Refuse test-time augmentation of a model that does not take images (a DataError)."""
    shape = model.input_shape
    if isinstance(shape, (list, dict)) or len(shape) != 4:
        raise DataError(
            "--tta augments images (flips, the recipe's augment: ops); this model takes inputs "
            f"of shape {shape if isinstance(shape, (list, dict)) else tuple(shape[1:])}, not "
            "images: evaluate it without --tta"
        )


def tta_metrics(model, split, n: int, *, augment: Any = None, seed: int = 42,
                from_logits: bool = False) -> dict:  # fmt: skip
    """Accuracy of a classifier on a split (an unbatched `(x, y)` dataset) without and with
    test-time augmentation: `{"accuracy_no_tta", "accuracy_tta", "tta"}`."""
    from kerakit.data import to_numpy
    from kerakit.report.metrics import to_labels, to_probabilities

    check_tta(model)
    x, y = to_numpy(split)
    true = to_labels(y)

    def accuracy(outputs) -> float:
        return float(np.mean(to_labels(to_probabilities(outputs, from_logits)) == true))

    plain = tta_predict(model, x, 0)
    augmented = tta_predict(model, x, n, augment=augment, seed=seed)
    return {"accuracy_no_tta": accuracy(plain), "accuracy_tta": accuracy(augmented), "tta": int(n)}
