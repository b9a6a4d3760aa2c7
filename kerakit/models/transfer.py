"""Transfer learning: a frozen `keras.applications` backbone, a small head, two stages.

The model takes raw 0-255 images: the backbone's own ``preprocess_input`` is a
layer inside it, so a saved model needs no preprocessing code. The backbone is a
nested model named ``"backbone"``, called with ``training=False`` so its
BatchNorm layers stay in inference mode in both stages. The backbone knows
nothing of classes and the head knows nothing of VGG16; `transfer_model` joins them.

    model = kk.transfer_model("vgg16", classes=5, input_shape=(96, 96, 3),
                              head={"pooling": "avg", "dense": [256], "dropout": 0.5})
    model.compile("adam", "sparse_categorical_crossentropy")   # stage 1: head only
    model.fit(train, epochs=5)
    set_stage(model, 2, unfreeze_from="block5_conv1")          # stage 2: top block too
    model.compile(keras.optimizers.Adam(1e-5), "sparse_categorical_crossentropy")
    model.fit(train, epochs=5)

Stage 1 can train the head on cached backbone features (`split_for_feature_cache`,
`cache_features`): every epoch after the features are computed costs only the head.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from kerakit._files import atomic_path
from kerakit.data import without_autotune
from kerakit.errors import NOWHERE, ModelFileError, Where, did_you_mean
from kerakit.models.backbones import build_backbone
from kerakit.models.layers import BackbonePreprocess
from kerakit.recipe.transfer import BACKBONES, Backbone, resolve_transfer


def _output_units(classes: int, activation: str | None, preset: str | None) -> tuple[int, str]:
    if preset == "binary" or (preset is None and classes <= 2 and activation in (None, "sigmoid")):
        return 1, activation or "sigmoid"
    if preset == "multilabel":
        return classes, activation or "sigmoid"
    if preset == "regression":
        return classes, activation or "linear"
    return classes, activation or "softmax"


POOLING_LAYERS = {
    "avg": keras.layers.GlobalAveragePooling2D,
    "max": keras.layers.GlobalMaxPooling2D,
    "flatten": keras.layers.Flatten,
}


def transfer_model(
    backbone: str,
    classes: int,
    input_shape: Sequence[int] = (224, 224, 3),
    weights: str = "imagenet",
    head: Mapping | None = None,
    activation: str | None = None,
    *,
    preset: str | None = None,
    where: Where = NOWHERE,
) -> keras.Model:
    """A frozen pretrained backbone plus a new head, taking raw 0-255 images.

    Input → ``preprocess_input`` of the backbone → backbone (frozen, called with
    ``training=False``) → pooling → Dense layers (relu) → Dropout → output Dense
    (float32 even under a mixed policy).

    Args:
        backbone: a registered name: ``vgg16``, ``resnet50``, ``mobilenetv2``, ``efficientnetb0``.
        classes: number of classes (1 or 2 with no preset: one sigmoid unit, binary).
        input_shape: ``(height, width, 3)``, at least 32x32.
        weights: ``"imagenet"``, ``"none"`` or the path to a weights file.
        head: ``{pooling: avg|max|flatten, dense: [units, ...], dropout: rate}``.
        activation: the output activation; default from ``preset`` or ``classes``.
        preset: the compile preset (``binary``, ``multiclass``, ``multilabel``,
            ``regression``); it fixes the output units and activation.
        where: where ``model.transfer`` sits in the recipe.

    Example:
        >>> model = transfer_model("vgg16", 5, (32, 32, 3), weights="none")
        >>> model.output_shape
        (None, 5)
    """
    head = dict(head or {})
    head.update(classes=classes, activation=activation or head.get("activation"))
    section = {"backbone": backbone, "weights": weights, "input_shape": list(input_shape)}
    spec = resolve_transfer({**section, "head": head}, where)
    head = spec["head"]
    units, act = _output_units(head["classes"], head["activation"], preset)
    try:
        keras.activations.get(act)
    except ValueError:
        names = [n for n in dir(keras.activations) if n.islower() and not n.startswith("_")]
        raise where.at("head", "activation").error(
            f"unknown activation {act!r}{did_you_mean(act, names)}"
        ) from None

    base = build_backbone(spec["backbone"], spec["input_shape"], spec["weights"], where)
    inputs = keras.Input(shape=tuple(spec["input_shape"]), name="image")
    x = BackbonePreprocess(spec["backbone"], name="preprocess")(inputs)
    x = base(x, training=False)  # BatchNorm in inference mode, whatever stage
    x = POOLING_LAYERS[head["pooling"]](name="head_pool")(x)
    for i, n in enumerate(head["dense"]):
        x = keras.layers.Dense(n, activation="relu", name=f"head_dense{i}")(x)
    if head["dropout"]:
        x = keras.layers.Dropout(head["dropout"], name="head_dropout")(x)
    outputs = keras.layers.Dense(units, activation=act, dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name=f"{spec['backbone']}_transfer")


def build_transfer(spec: Mapping, *, preset: str | None = None, where: Where = NOWHERE):
    """`transfer_model` from a resolved ``model.transfer`` section (``head.classes`` set)."""
    head = spec["head"]
    if head.get("classes") is None:
        raise where.at("head", "classes").error(
            "the number of classes is unknown; set model.transfer.head.classes"
        )
    return transfer_model(
        spec["backbone"],
        head["classes"],
        spec["input_shape"],
        spec["weights"],
        head=head,
        activation=head.get("activation"),
        preset=preset,
        where=where,
    )


# ---- stages -----------------------------------------------------------------------


def _parts(model: keras.Model) -> tuple[keras.Model, Backbone, list]:
    try:
        base = model.get_layer("backbone")
        name = model.get_layer("preprocess").backbone
    except (ValueError, AttributeError):
        raise ModelFileError(
            f"model {model.name!r} is not a kerakit transfer model (it needs layers "
            f"'preprocess' and 'backbone'); build it with transfer_model"
        ) from None
    head = model.layers[model.layers.index(base) + 1 :]
    return base, BACKBONES[name], head


def _first_unfrozen(model, unfreeze_from, unfreeze_blocks, where: Where) -> int:
    base, info, _ = _parts(model)
    names = [layer.name for layer in base.layers]
    if (unfreeze_from is None) == (unfreeze_blocks is None):
        raise where.at("fine_tune").error(
            "stage 2 needs exactly one of unfreeze_from: LAYER_NAME or unfreeze_blocks: N"
        )
    if unfreeze_from is not None:
        if unfreeze_from not in names:
            raise where.at("fine_tune", "unfreeze_from").error(
                f"{info.name} has no layer {unfreeze_from!r}{did_you_mean(unfreeze_from, names)}"
            )
        return names.index(unfreeze_from)
    starts: dict[str, int] = {}
    for i, name in enumerate(names):
        m = re.match(info.block_pattern, name)
        if m:
            starts.setdefault(m.group(1), i)
    if not 1 <= unfreeze_blocks <= len(starts):
        raise where.at("fine_tune", "unfreeze_blocks").error(
            f"{info.name} has {len(starts)} blocks ({', '.join(starts)}); "
            f"got unfreeze_blocks: {unfreeze_blocks!r}"
        )
    return list(starts.values())[-unfreeze_blocks]


def set_stage(
    model: keras.Model,
    stage: int,
    *,
    unfreeze_from: str | None = None,
    unfreeze_blocks: int | None = None,
    where: Where = NOWHERE,
) -> keras.Model:
    """Freezes the backbone (stage 1) or unfreezes its top (stage 2); compile again after.

    In stage 2 the layers from ``unfreeze_from`` (a layer name of the backbone)
    or of the top ``unfreeze_blocks`` blocks on become trainable, except
    BatchNorm layers, which stay frozen (and in inference mode). The head is
    trainable in both stages.

    Args:
        model: a model from `transfer_model`.
        stage: 1 or 2.
        unfreeze_from / unfreeze_blocks: stage 2 only; exactly one.
        where: where ``model.transfer`` sits in the recipe.

    Example:
        >>> set_stage(model, 2, unfreeze_from="block5_conv1")
    """
    base, _, head = _parts(model)
    for layer in head:
        layer.trainable = True
    if stage == 1:
        base.trainable = False
        return model
    if stage != 2:
        raise ValueError(f"stage must be 1 or 2, got {stage!r}")
    start = _first_unfrozen(model, unfreeze_from, unfreeze_blocks, where)
    base.trainable = True
    for i, layer in enumerate(base.layers):
        layer.trainable = i >= start and not isinstance(layer, keras.layers.BatchNormalization)
    return model


def stage_report(model: keras.Model, fine_tune: Mapping | None = None) -> list[dict]:
    """Per stage: the trainable layers and the trainable parameter count.

    The model's own trainable flags are left as they were.

    Args:
        model: a model from `transfer_model`.
        fine_tune: the resolved ``fine_tune`` section (None: stage 1 only).

    Returns:
        ``[{"stage": 1, "trainable_layers": [...], "trainable_params": N,
        "frozen_params": M}, ...]``; backbone layers are named ``backbone/NAME``.
    """
    base, _, head = _parts(model)
    saved = [(layer, layer.trainable) for layer in [base, *base.layers, *head]]
    stages = [1] if not fine_tune else [1, 2]
    report = []
    try:
        for stage in stages:
            extra = (
                {}
                if stage == 1
                else {
                    "unfreeze_from": fine_tune.get("unfreeze_from"),
                    "unfreeze_blocks": fine_tune.get("unfreeze_blocks"),
                }
            )
            set_stage(model, stage, **extra)
            layers = [layer.name for layer in base.layers if layer.trainable_weights]
            layers = [f"backbone/{n}" for n in layers]
            layers += [layer.name for layer in head if layer.trainable_weights]
            trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
            total = sum(int(np.prod(v.shape)) for v in model.weights)
            report.append(
                {
                    "stage": stage,
                    "trainable_layers": layers,
                    "trainable_params": trainable,
                    "frozen_params": total - trainable,
                }
            )
    finally:
        for layer, flag in saved:  # the backbone first: its setter cascades to its layers
            layer.trainable = flag
    return report


def format_stage_report(report: list[dict]) -> str:
    """`stage_report` as lines for ``kerakit check``."""
    lines = []
    for row in report:
        names = row["trainable_layers"]
        shown = (
            ", ".join(names)
            if len(names) <= 8
            else (", ".join(names[:3]) + f", ... ({len(names) - 6} more), " + ", ".join(names[-3:]))
        )
        lines.append(
            f"stage {row['stage']}: {row['trainable_params']:,} trainable params, "
            f"{row['frozen_params']:,} frozen; trainable layers: {shown}"
        )
    return "\n".join(lines)


# ---- feature caching (stage 1) ------------------------------------------------------


def split_for_feature_cache(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """(raw images → backbone features, features → outputs), sharing the model's layers.

    Training the second model trains the head of ``model`` itself (the same
    layer objects), so after stage 1 on cached features ``model`` predicts
    with the trained head and is saved whole, taking raw images.
    """
    base, _, head = _parts(model)
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
