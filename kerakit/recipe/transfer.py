"""The `model.transfer` section of a recipe, and the backbone registry, with no TensorFlow.

`resolve_transfer` validates the section and fills every default, so
`kerakit check` rejects a bad transfer recipe (an unknown backbone, a missing
weights file, a shape too small for the backbone) before TensorFlow starts.
The backbone registry lives here too, as plain data: Keras names
(``keras.applications.VGG16``, ``keras.applications.vgg16.preprocess_input``)
that `kerakit.transfer` resolves through Keras itself. Adding a backbone is one
`register_backbone` call.

    spec = resolve_transfer({"backbone": "vgg16", "head": {"classes": 5}}, NOWHERE)
    spec["head"]["pooling"]          # 'avg'
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from kerakit.errors import NOWHERE, Where, did_you_mean
from kerakit.recipe.backbones import BACKBONES, Backbone, list_backbones, register_backbone
from kerakit.recipe.hub import check_blocks, is_hub, resolve_hub
from kerakit.recipe.schema import (
    check_choice,
    check_keys,
    check_mapping,
    check_number,
    check_shape,
    check_str,
    show,
    type_name,
)

__all__ = [  # the backbone table lives in kerakit.recipe.backbones; importable here too
    "BACKBONES", "Backbone", "decide_feature_cache", "list_backbones", "register_backbone",
    "resolve_transfer",
]  # fmt: skip


POOLINGS = ("avg", "max", "flatten")
CACHE_CHOICES = ("auto", True, False)
WEIGHT_SUFFIXES = (".weights.h5", ".h5", ".hdf5")
DEFAULT_INPUT_SHAPE = [224, 224, 3]


def resolve_transfer(
    section: Any, where: Where = NOWHERE, *, image_size=None, layers: Callable | None = None
) -> dict:
    """Validates ``model.transfer`` and returns it with every default filled in.

    The result is plain YAML-dumpable values, and resolving it again gives the
    same result (it round-trips).

    Args:
        section: the value of ``model.transfer``.
        where: where the section sits in the recipe (for error messages).
        image_size: ``data.image_size`` ([height, width]); the default input
            shape is ``image_size + [3]``, else ``[224, 224, 3]`` (a backbone added
            after kerakit 0.1: its own ImageNet size).
        layers: validates a head written as a list of layers (``resolve_sequential``
            of `kerakit.recipe.model`, passed in: this module cannot import it).

    Returns:
        ``{backbone, weights, input_shape, (preprocess: for {keras_hub: DIR} only),
        head: {pooling, dense, dropout, classes, activation} | [layers], fine_tune: None |
        {unfreeze (or the older unfreeze_from / unfreeze_blocks), batchnorm, learning_rate,
        epochs, and when given: base_lr, freeze_epochs, lr_mult, groups, schedule},
        cache_features}``.

    Example:
        >>> resolve_transfer({"backbone": "vgg16", "weights": "none"})["head"]["pooling"]
        'avg'
    """
    section = check_mapping(section, where, "a mapping such as {backbone: vgg16, head: ...}")
    keys = ["backbone", "weights", "input_shape", "head", "fine_tune", "cache_features"]
    hub = is_hub(section.get("backbone"))  # {keras_hub: DIR}: kerakit.recipe.hub
    check_keys(section, [*keys, "preprocess"] if hub else keys, where, required=["backbone"],
               section="model.transfer")  # fmt: skip
    trunk = resolve_hub(section, where, image_size) if hub else _trunk(section, where, image_size)

    cache = section.get("cache_features", "auto")
    if cache not in CACHE_CHOICES or isinstance(cache, int) and not isinstance(cache, bool):
        raise where.at("cache_features").error(
            f"expected auto, true or false, got {type_name(cache)} {show(cache)}"
        )

    out = {
        **trunk,
        "head": _resolve_head(section.get("head", {}), where.at("head"), layers),
        "fine_tune": _resolve_fine_tune(section.get("fine_tune"), where.at("fine_tune")),
        "cache_features": cache,
    }
    if hub:
        check_blocks(out, where)
    return out


def _trunk(section: Mapping, where: Where, image_size) -> dict:
    """``backbone``, ``weights`` and ``input_shape`` of a ``keras.applications`` backbone."""
    name = section["backbone"]
    if not isinstance(name, str) or name.lower() not in BACKBONES:
        hint = did_you_mean(name, BACKBONES) if isinstance(name, str) else ""
        raise where.at("backbone").error(
            f"unknown backbone {show(name)}{hint}; choose one of: {', '.join(BACKBONES)}"
            " (or {keras_hub: PRESET_DIR})"
        )
    backbone = BACKBONES[name.lower()]
    weights = _resolve_weights(section.get("weights", "imagenet"), where.at("weights"))
    if "input_shape" in section:
        shape = list(check_shape(section["input_shape"], where.at("input_shape")))
    elif image_size is not None:
        shape = [*list(image_size)[:2], 3]
    else:
        size = backbone.default_size
        shape = list(DEFAULT_INPUT_SHAPE) if size == 224 else [size, size, 3]
    _check_input_shape(shape, backbone, where.at("input_shape"))
    return {"backbone": backbone.name, "weights": weights, "input_shape": shape}


def decide_feature_cache(spec: Mapping, augment: Any, where: Where = NOWHERE) -> bool:
    """Whether stage 1 trains the head on cached backbone features.

    Caching is valid only when every epoch sees the same images: with
    augmentation, each epoch's images differ, so the features must be computed
    again. ``auto`` caches exactly when there is no augmentation.

    Args:
        spec: a resolved ``model.transfer`` section.
        augment: the resolved ``augment`` section (None or empty: no augmentation).
        where: where ``model.transfer`` sits in the recipe.
    """
    setting = spec.get("cache_features", "auto")
    if setting is False:
        return False
    if augment:
        if setting is True:
            raise where.at("cache_features").error(
                "cache_features: true needs the same images every epoch, but `augment` "
                "changes them; set cache_features: false (or auto), or remove `augment`"
            )
        return False
    return True


def _resolve_weights(value: Any, where: Where) -> str:
    if value is None or value == "none":
        return "none"
    if value == "imagenet":
        return "imagenet"
    value = check_str(value, where, "imagenet, none, or the path to a weights file")
    path = os.path.expanduser(value)
    if where.file and not os.path.isabs(path):
        path = os.path.join(os.path.dirname(os.path.abspath(where.file)), path)
    path = os.path.abspath(path)  # the run folder's recipe must find it from anywhere
    if not os.path.isfile(path):
        hint = did_you_mean(value, ["imagenet", "none"])
        raise where.error(
            f"weights file {value!r} not found{hint}; give imagenet, none, or the path "
            f"to a .weights.h5 / .h5 file (relative paths are relative to the recipe)"
        )
    if not path.endswith(WEIGHT_SUFFIXES):
        raise where.error(
            f"weights file {value!r} is not a Keras weights file; expected a name "
            f"ending in {', '.join(WEIGHT_SUFFIXES)}"
        )
    return path


def _check_input_shape(shape: list, backbone: Backbone, where: Where) -> None:
    if len(shape) != 3:
        raise where.error(f"expected [height, width, 3], got {show(shape)}")
    if shape[2] != 3:
        raise where.error(
            f"{backbone.name} takes RGB images (3 channels), got {shape[2]} channels in "
            f"{show(shape)}; load the images as RGB"
        )
    for i in (0, 1):
        if shape[i] is None or shape[i] < backbone.min_size:
            raise where.error(
                f"{backbone.name} needs images of at least {backbone.min_size}x"
                f"{backbone.min_size}, got {show(shape)}; raise data.image_size"
            )


def _resolve_head(value: Any, where: Where, layers: Callable | None = None) -> dict | list:
    if isinstance(value, list):  # layers of your own, written like `sequential:`
        if layers is not None:
            return layers(value, where)
        if not value or not all(isinstance(e, (str, Mapping)) for e in value):
            raise where.error(
                f"expected a list of layers such as [GlobalAveragePooling2D, {{Dense: 10}}], "
                f"got {show(value)}"
            )
        return [e if isinstance(e, str) else dict(e) for e in value]
    value = check_mapping(
        value if value is not None else {},
        where,
        "a mapping such as {pooling: avg, dense: [256]}, or a list of layers",
    )
    check_keys(
        value,
        ["pooling", "dense", "dropout", "classes", "activation"],
        where,
        section="model.transfer.head",
    )
    pooling = check_choice(value.get("pooling", "avg"), POOLINGS, where.at("pooling"), "pooling")
    dense = value.get("dense", [])
    if isinstance(dense, int) and not isinstance(dense, bool):
        dense = [dense]
    if not isinstance(dense, list):
        raise where.at("dense").error(
            f"expected a list of layer sizes such as [256], got {type_name(dense)} {show(dense)}"
        )
    for i, units in enumerate(dense):
        check_number(units, where.at("dense", i), integer=True, minimum=1)
    dropout = check_number(
        value.get("dropout", 0.2), where.at("dropout"), minimum=0, maximum=1, exclusive_maximum=True
    )
    classes = value.get("classes")
    if classes is not None:
        check_number(classes, where.at("classes"), integer=True, minimum=1)
    activation = value.get("activation")
    if activation is not None:
        check_str(activation, where.at("activation"), "an activation name such as softmax")
    return {
        "pooling": pooling,
        "dense": list(dense),
        "dropout": float(dropout),
        "classes": classes,
        "activation": activation,
    }


UNFREEZE_FORMS = "all, {last: N}, {from: LAYER_NAME} or {blocks: N}"
BATCHNORM_CHOICES = ("frozen", "trainable")


def _resolve_fine_tune(value: Any, where: Where) -> dict | None:
    if value is None or value is False:
        return None
    value = check_mapping(value, where, "a mapping such as {unfreeze: {blocks: 1}}")
    check_keys(
        value,
        [
            "unfreeze",
            "batchnorm",
            "unfreeze_from",
            "unfreeze_blocks",
            "learning_rate",
            "epochs",
            *SHORT_FORM,
        ],
        where,
        section="model.transfer.fine_tune",
    )
    short = value.get("base_lr") is not None  # fastai's fine_tune: its defaults
    if short and all(
        value.get(k) is None for k in ("unfreeze", "unfreeze_from", "unfreeze_blocks")
    ):
        value = {**value, "unfreeze": "all"}
    frm, blocks = value.get("unfreeze_from"), value.get("unfreeze_blocks")
    given = [
        k for k in ("unfreeze", "unfreeze_from", "unfreeze_blocks") if value.get(k) is not None
    ]
    if len(given) != 1:
        raise where.error(
            f"say which layers stage 2 unfreezes: exactly one of unfreeze: {UNFREEZE_FORMS} "
            f"(or the older unfreeze_from: LAYER_NAME / unfreeze_blocks: N); got "
            f"{' and '.join(given) if given else 'none'}"
        )
    if frm is not None:
        check_str(frm, where.at("unfreeze_from"), "a layer name of the backbone")
    if blocks is not None:
        check_number(blocks, where.at("unfreeze_blocks"), integer=True, minimum=1)
    base_lr = None
    if short:
        base_lr = float(check_number(value["base_lr"], where.at("base_lr"), minimum=0,
                                     exclusive_minimum=True))  # fmt: skip
    lr = check_number(
        value.get("learning_rate", base_lr / 2 if short else 1e-5),
        where.at("learning_rate"),
        minimum=0,
        exclusive_minimum=True,
    )
    epochs = check_number(value.get("epochs", 5), where.at("epochs"), integer=True, minimum=1)
    out: dict = {}
    if "unfreeze" in given:  # the newer form: recorded as written, with its batchnorm choice
        out["unfreeze"] = _resolve_unfreeze(value["unfreeze"], where.at("unfreeze"))
    else:  # kerakit 0.1's keys: resolved exactly as before (run folders resume)
        out.update(unfreeze_from=frm, unfreeze_blocks=blocks)
    if "batchnorm" in value or "unfreeze" in given:
        out["batchnorm"] = check_choice(
            value.get("batchnorm", "frozen"), BATCHNORM_CHOICES, where.at("batchnorm"), "batchnorm"
        )
    out.update(learning_rate=float(lr), epochs=epochs)
    out.update(_resolve_short_form(value, where, base_lr))
    return out


# fastai's `fine_tune(epochs, base_lr, freeze_epochs, lr_mult)` and its one-cycle schedule.
SHORT_FORM = ("base_lr", "freeze_epochs", "lr_mult", "groups", "schedule")
SCHEDULES = ("constant", "one_cycle")


def _resolve_short_form(value: Mapping, where: Where, base_lr: float | None) -> dict:
    """The keys of the short form, recorded only when given (or implied by `base_lr`), so
    a recipe without them resolves, and fingerprints, as before."""
    short = base_lr is not None
    out: dict = {}
    if short:
        out["base_lr"] = base_lr
    if short or value.get("freeze_epochs") is not None:
        out["freeze_epochs"] = check_number(value.get("freeze_epochs", 1),
                                            where.at("freeze_epochs"), integer=True, minimum=1)  # fmt: skip
    if short or value.get("lr_mult") is not None or value.get("groups") is not None:
        out["lr_mult"] = float(check_number(value.get("lr_mult", 100 if short else 1),
                                            where.at("lr_mult"), minimum=1))  # fmt: skip
        out["groups"] = check_number(value.get("groups", 3), where.at("groups"), integer=True,
                                     minimum=2 if "groups" in value else 1)  # fmt: skip
    if short or value.get("schedule") is not None:
        out["schedule"] = check_choice(value.get("schedule", "one_cycle" if short else "constant"),
                                       SCHEDULES, where.at("schedule"), "schedule")  # fmt: skip
    return out


def _resolve_unfreeze(value: Any, where: Where) -> str | dict:
    if value == "all":
        return "all"
    if not isinstance(value, Mapping) or len(value) != 1:
        hint = did_you_mean(value, ["all"]) if isinstance(value, str) else ""
        raise where.error(f"expected {UNFREEZE_FORMS}, got {show(value)}{hint}")
    ((key, arg),) = value.items()
    if key == "from":
        return {"from": check_str(arg, where.at("from"), "a layer name of the backbone")}
    if key in ("last", "blocks"):
        what = "layers, counted from the top of the model" if key == "last" else "blocks"
        n = check_number(arg, where.at(key), integer=True, minimum=1, what=what)
        return {key: n}
    raise where.at(key).error(
        f"unknown unfreeze form {show(key)}{did_you_mean(str(key), ['last', 'from', 'blocks'])}; "
        f"expected {UNFREEZE_FORMS}"
    )
