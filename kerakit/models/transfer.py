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

import contextlib
import re
from collections.abc import Mapping, Sequence

import keras
import numpy as np

from kerakit._compat import batchnorm_inference
from kerakit.errors import NOWHERE, ModelFileError, Where, did_you_mean
from kerakit.models.backbones import build_backbone
from kerakit.models.feature_cache import cache_features, split_for_feature_cache
from kerakit.models.hub import hub_info, hub_trunk
from kerakit.models.layers import BackbonePreprocess
from kerakit.recipe.hub import block_refusal
from kerakit.recipe.transfer import BACKBONES, Backbone, resolve_transfer

__all__ = [  # the feature cache lives in its own module; these names stay importable here
    "build_transfer", "cache_features", "format_stage_report", "set_stage",
    "split_for_feature_cache", "stage_args", "stage_report", "transfer_model",
]  # fmt: skip


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
    backbone: str | Mapping,
    classes: int,
    input_shape: Sequence[int] = (224, 224, 3),
    weights: str | None = "default",
    head: Mapping | None = None,
    activation: str | None = None,
    *,
    preset: str | None = None,
    preprocess: str | Mapping | None = None,
    where: Where = NOWHERE,
) -> keras.Model:
    """A frozen pretrained backbone plus a new head, taking raw 0-255 images.

    Input → ``preprocess_input`` of the backbone → backbone (frozen, called with
    ``training=False``) → pooling → Dense layers (relu) → Dropout → output Dense
    (float32 even under a mixed policy).

    Args:
        backbone: a registered name: ``vgg16``, ``resnet50``, ``mobilenetv2``, ``efficientnetb0``,
            ...; or ``{"keras_hub": DIR}``, a KerasHub preset directory (`kerakit.models.hub`).
        classes: number of classes (1 or 2 with no preset: one sigmoid unit, binary).
        input_shape: ``(height, width, 3)``, at least 32x32.
        weights: ``"imagenet"`` (the default), ``"none"`` (or None, as in Keras: random
            weights) or the path to a weights file; for a KerasHub preset ``"preset"``
            (the default) or ``"none"``.
        head: ``{pooling: avg|max|flatten, dense: [units, ...], dropout: rate}``, or a
            list of Keras layers applied to the backbone's output in order (the last
            one is the output; ``classes``, ``activation`` and ``preset`` then unused).
        activation: the output activation; default from ``preset`` or ``classes``.
        preset: the compile preset (``binary``, ``multiclass``, ``multilabel``,
            ``regression``); it fixes the output units and activation.
        preprocess: KerasHub only: ``"preset"`` (its ``image_converter.json``) or
            ``{"scale": s, "offset": o}`` (default: the converter if any, else 1/255).
        where: where ``model.transfer`` sits in the recipe.

    Example:
        >>> model = transfer_model("vgg16", 5, (32, 32, 3), weights="none")
        >>> model.output_shape
        (None, 5)
    """
    section = {"backbone": backbone, "input_shape": list(input_shape)}
    if weights != "default":  # None: random weights, as Keras's weights=None
        section["weights"] = weights
    if preprocess is not None:
        section["preprocess"] = preprocess
    if isinstance(head, list):  # layers of your own: the last one is the output
        spec = resolve_transfer(section, where)
        x, inputs, _ = _trunk(spec, where)
        for i, layer in enumerate(head):
            if not isinstance(layer, keras.layers.Layer):
                raise TypeError(
                    f"head[{i}] is {layer!r}; a head list holds Keras layers "
                    f"(a recipe's layer entries are built by kerakit.models.build_model)"
                )
            try:
                x = layer(x)
            except Exception as exc:  # Keras raises ValueError, TypeError, tf errors ...
                first = " ".join(str(exc).split())[:300]
                raise where.at("head", i, type(layer).__name__).error(
                    f"{type(layer).__name__} cannot take an input of shape {tuple(x.shape)}: {first}"
                ) from None
        return keras.Model(inputs, x, name=_model_name(spec))
    head = dict(head or {})
    head.update(classes=classes, activation=activation or head.get("activation"))
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

    x, inputs, base = _trunk(spec, where)
    x = POOLING_LAYERS[head["pooling"]](name="head_pool")(x)
    for i, n in enumerate(head["dense"]):
        x = keras.layers.Dense(n, activation="relu", name=f"head_dense{i}")(x)
    if head["dropout"]:
        x = keras.layers.Dropout(head["dropout"], name="head_dropout")(x)
    outputs = keras.layers.Dense(units, activation=act, dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name=_model_name(spec))


def _model_name(spec: Mapping) -> str:
    return f"{spec['backbone'] if isinstance(spec['backbone'], str) else 'keras_hub'}_transfer"


def _trunk(spec: Mapping, where: Where):
    if isinstance(spec["backbone"], Mapping):  # a KerasHub preset directory
        base, preprocess = hub_trunk(spec, where)
    else:
        base = build_backbone(spec["backbone"], spec["input_shape"], spec["weights"], where)
        preprocess = BackbonePreprocess(spec["backbone"], name="preprocess")
    inputs = keras.Input(shape=tuple(spec["input_shape"]), name="image")
    x = base(preprocess(inputs), training=False)  # BatchNorm in inference mode, whatever stage
    return x, inputs, base


def build_transfer(spec: Mapping, *, preset: str | None = None, where: Where = NOWHERE):
    """`transfer_model` from a resolved ``model.transfer`` section (``head.classes`` set)."""
    head, preprocess = spec["head"], spec.get("preprocess")
    if isinstance(head, list):
        return transfer_model(spec["backbone"], 0, spec["input_shape"], spec["weights"],
                              head=head, preprocess=preprocess, where=where)  # fmt: skip
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
        preprocess=preprocess,
        where=where,
    )


# ---- stages -----------------------------------------------------------------------


def transfer_parts(model: keras.Model) -> tuple[keras.Model, Backbone, list]:
    """(the backbone model, its table entry, the head's layers) of a `transfer_model`."""
    try:
        base = model.get_layer("backbone")
        name = getattr(model.get_layer("preprocess"), "backbone", None)
        info = BACKBONES[name] if isinstance(name, str) else hub_info(base)  # or KerasHub's
    except (ValueError, KeyError):
        info = None
    if info is None:
        raise ModelFileError(
            f"model {model.name!r} is not a kerakit transfer model (it needs layers "
            f"'preprocess' and 'backbone'); build it with transfer_model"
        )
    head = model.layers[model.layers.index(base) + 1 :]
    return base, info, head


def _block_starts(base, info: Backbone) -> dict[str, int]:
    names = [layer.name for layer in base.layers]
    if not info.block_ends:
        starts: dict[str, int] = {}
        for i, name in enumerate(names):
            if m := re.match(info.block_pattern, name):
                starts.setdefault(m.group(1), i)
        return starts
    ends: dict[str, int] = {}  # the pattern names each block's last layers
    for i, name in enumerate(names):
        if m := re.match(info.block_pattern, name):
            ends[m.group(1)] = i
    order = sorted(ends, key=ends.get)
    return {b: ends[a] + 1 for a, b in zip(order, order[1:])}  # the first block: the stem's


def _first_unfrozen(model, unfreeze, w: Where, label: str = "") -> int:
    """The index in the backbone's layers from which stage 2 trains; `w`: where it is asked."""
    base, info, head = transfer_parts(model)
    names = [layer.name for layer in base.layers]
    if unfreeze == "all":
        return 0
    ((form, arg),) = unfreeze.items()
    label = label or form
    if form == "from":
        if arg not in names:
            raise w.error(f"{info.name} has no layer {arg!r}{did_you_mean(arg, names)}")
        return names.index(arg)
    if form == "last":  # counted from the top of the model, the head's layers too
        if not len(head) < arg <= len(head) + len(names):
            raise w.error(
                f"last: {arg} counts the head's {len(head)} layers too (as Keras's "
                f"model.layers[-{arg}:] does); give more than {len(head)} and at most "
                f"{len(head) + len(names)}"
            )
        return len(names) - (arg - len(head))
    if not info.block_pattern:  # a KerasHub class kerakit has not measured (kerakit.recipe.hub)
        raise w.error(block_refusal(info.name))
    starts = _block_starts(base, info)
    if not 1 <= arg <= len(starts):
        raise w.error(
            f"{info.name} has {len(starts)} blocks ({', '.join(starts)}); got {label}: {arg!r}"
        )
    return list(starts.values())[-arg]


def stage_args(fine_tune: Mapping | None) -> dict:
    """`set_stage`'s stage-2 keyword arguments from a resolved ``fine_tune`` section."""
    if not fine_tune:
        return {}
    out = {k: fine_tune.get(k) for k in ("unfreeze", "unfreeze_from", "unfreeze_blocks")}
    return {**out, "batchnorm": fine_tune.get("batchnorm") or "frozen"}


def set_stage(
    model: keras.Model,
    stage: int,
    *,
    unfreeze: str | Mapping | None = None,
    unfreeze_from: str | None = None,
    unfreeze_blocks: int | None = None,
    batchnorm: str = "frozen",
    where: Where = NOWHERE,
) -> keras.Model:
    """Freezes the backbone (stage 1) or unfreezes part of it (stage 2); compile again after.

    In stage 2 the layers named by ``unfreeze`` become trainable: ``"all"``
    (Keras's ``base_model.trainable = True``), ``{"last": N}`` (the last N layers
    of the model, the head's counted, as ``model.layers[-N:]``), ``{"from": NAME}``
    (a backbone layer and all after it) or ``{"blocks": N}`` (the top N blocks).
    ``unfreeze_from`` / ``unfreeze_blocks`` are the older spellings of the last two.
    BatchNorm layers stay frozen with ``batchnorm="frozen"``; with ``"trainable"``
    their gamma/beta train. Either way the backbone runs in inference mode
    (``training=False``), so their moving statistics never change. The head is
    trainable in both stages.

    Example:
        >>> set_stage(model, 2, unfreeze={"last": 20}, batchnorm="frozen")
    """
    base, _, head = transfer_parts(model)
    for layer in head:
        layer.trainable = True
    if stage == 1:
        base.trainable = False
        return model
    if stage != 2:
        raise ValueError(f"stage must be 1 or 2, got {stage!r}")
    given = {k: v for k, v in [("unfreeze", unfreeze), ("unfreeze_from", unfreeze_from),
                               ("unfreeze_blocks", unfreeze_blocks)] if v is not None}  # fmt: skip
    if len(given) != 1:
        raise where.at("fine_tune").error(
            "stage 2 needs exactly one of unfreeze: all | {last: N} | {from: LAYER_NAME} | "
            "{blocks: N} (or unfreeze_from: LAYER_NAME / unfreeze_blocks: N)"
        )
    if batchnorm not in ("frozen", "trainable"):
        raise where.at("fine_tune", "batchnorm").error(
            f"batchnorm is frozen or trainable, got {batchnorm!r}"
        )
    ((key, value),) = given.items()
    if key != "unfreeze":  # the older spellings
        form = "from" if key == "unfreeze_from" else "blocks"
        start = _first_unfrozen(model, {form: value}, where.at("fine_tune", key), key)
    elif value == "all":
        start = 0
    else:
        w = where.at("fine_tune", "unfreeze", *value)
        start = _first_unfrozen(model, value, w)
    bn_trains = batchnorm == "trainable"
    base.trainable = True
    for i, layer in enumerate(base.layers):
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = i >= start and (bn_trains or not is_bn)
        if is_bn and layer.trainable:  # training=False alone does not hold under fit
            batchnorm_inference(layer)
    return model


def stage_report(model: keras.Model, fine_tune: Mapping | None = None) -> list[dict]:
    """Per stage: the trainable layers and parameter counts (the model's flags are kept).

    Args:
        model: a model from `transfer_model`.
        fine_tune: the resolved ``fine_tune`` section (None: stage 1 only).

    Returns:
        ``[{"stage": 1, "trainable_layers": [...], "trainable_params": N,
        "frozen_params": M, "backbone_trainable_params", "backbone_frozen_params",
        "batchnorm_trainable", "batchnorm_layers"}, ...]``; backbone layers are
        named ``backbone/NAME``; the BatchNorm counts are the backbone's layers.
    """
    base, _, head = transfer_parts(model)
    stages = [1] if not fine_tune else [1, 2]
    report = []
    with trainable_kept(model):
        for stage in stages:
            set_stage(model, stage, **(stage_args(fine_tune) if stage == 2 else {}))
            layers = [layer.name for layer in base.layers if layer.trainable_weights]
            layers = [f"backbone/{n}" for n in layers]
            layers += [layer.name for layer in head if layer.trainable_weights]
            bn = [la for la in base.layers if isinstance(la, keras.layers.BatchNormalization)]
            report.append(
                {
                    "stage": stage,
                    "trainable_layers": layers,
                    "trainable_params": _count(model.trainable_weights),
                    "frozen_params": _count(model.weights) - _count(model.trainable_weights),
                    "backbone_trainable_params": _count(base.trainable_weights),
                    "backbone_frozen_params": _count(base.non_trainable_weights),
                    "batchnorm_trainable": sum(bool(la.trainable_weights) for la in bn),
                    "batchnorm_layers": len(bn),
                }
            )
    return report


@contextlib.contextmanager
def trainable_kept(model: keras.Model):
    """The backbone's, its layers' and the head's trainable flags put back on leaving."""
    base, _, head = transfer_parts(model)
    saved = [(layer, layer.trainable) for layer in [base, *base.layers, *head]]
    try:
        yield model
    finally:
        for layer, flag in saved:  # the backbone first: its setter cascades to its layers
            layer.trainable = flag


def _count(weights) -> int:
    return sum(int(np.prod(v.shape)) for v in weights)


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
        detail = ""
        if "backbone_trainable_params" in row:
            detail = (
                f" (backbone: {row['backbone_trainable_params']:,} trainable, "
                f"{row['backbone_frozen_params']:,} frozen; BatchNorm: "
                f"{row['batchnorm_trainable']} of {row['batchnorm_layers']} trainable, "
                f"all in inference mode)"
            )
        lines.append(
            f"stage {row['stage']}: {row['trainable_params']:,} trainable params, "
            f"{row['frozen_params']:,} frozen{detail}; trainable layers: {shown}"
        )
    return "\n".join(lines)
