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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kerakit.errors import NOWHERE, Where, did_you_mean
from kerakit.recipe.registry import Registry
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


@dataclass(frozen=True)
class Backbone:
    """One backbone of `keras.applications`, described by Keras names only.

    Args:
        name: the recipe name, e.g. ``"vgg16"``.
        description: one line for ``kerakit list backbones``.
        application: the constructor's name in ``keras.applications`` (``"VGG16"``).
        module: the ``keras.applications`` submodule whose ``preprocess_input``
            belongs to this backbone (``"vgg16"``).
        block_pattern: a regular expression whose first group names the block a
            layer belongs to (``unfreeze_blocks: N`` unfreezes the top N blocks).
        weights_url: where Keras downloads the ImageNet weights without top
            (the file name is what Keras caches in ``~/.keras/models``);
            ``{size}`` stands for the input size.
        weights_sizes: input sizes that have their own weights file (others use 224).
        min_size: the smallest height/width the backbone accepts.
    """

    name: str
    description: str
    application: str
    module: str
    block_pattern: str
    weights_url: str
    weights_sizes: tuple = ()
    min_size: int = 32

    def imagenet_url(self, input_shape=(224, 224, 3)) -> str:
        size = input_shape[0] if input_shape and input_shape[0] in self.weights_sizes else 224
        return self.weights_url.format(size=size)

    def imagenet_file(self, input_shape=(224, 224, 3)) -> str:
        return self.imagenet_url(input_shape).rsplit("/", 1)[-1]


BACKBONES = Registry("backbones", "transfer-learning backbones: `model.transfer.backbone`")


def register_backbone(backbone: Backbone) -> Backbone:
    """Adds a backbone to the registry; registering a name twice is an error."""
    return BACKBONES.register(backbone.name, backbone)


def list_backbones() -> dict[str, str]:
    """Backbone name -> one-line description, for ``kerakit list backbones``."""
    return BACKBONES.describe()


register_backbone(
    Backbone(
        name="vgg16",
        description="VGG16 (138M params with top; 14.7M without): simple, strong features, slow",
        application="VGG16",
        module="vgg16",
        block_pattern=r"^(block\d+)_",
        weights_url="https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    )
)
register_backbone(
    Backbone(
        name="resnet50",
        description="ResNet50 (23.6M params without top): residual blocks with BatchNorm",
        application="ResNet50",
        module="resnet50",
        block_pattern=r"^(conv\d+_block\d+)_",
        weights_url="https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    )
)
register_backbone(
    Backbone(
        name="mobilenetv2",
        description="MobileNetV2 (2.3M params without top): small and fast, for CPUs and phones",
        application="MobileNetV2",
        module="mobilenet_v2",
        block_pattern=r"^(block_\d+|expanded_conv)_",
        weights_url="https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5",
        weights_sizes=(96, 128, 160, 192, 224),
    )
)
register_backbone(
    Backbone(
        name="efficientnetb0",
        description="EfficientNetB0 (4.0M params without top): accurate for its size; "
        "rescales inside the model",
        application="EfficientNetB0",
        module="efficientnet",
        block_pattern=r"^(block\d+[a-z])_",
        weights_url="https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5",
    )
)

POOLINGS = ("avg", "max", "flatten")
CACHE_CHOICES = ("auto", True, False)
WEIGHT_SUFFIXES = (".weights.h5", ".h5", ".hdf5")
DEFAULT_INPUT_SHAPE = [224, 224, 3]


def resolve_transfer(section: Any, where: Where = NOWHERE, *, image_size=None) -> dict:
    """Validates ``model.transfer`` and returns it with every default filled in.

    The result is plain YAML-dumpable values, and resolving it again gives the
    same result (it round-trips).

    Args:
        section: the value of ``model.transfer``.
        where: where the section sits in the recipe (for error messages).
        image_size: ``data.image_size`` ([height, width]); the default input
            shape is ``image_size + [3]``, else ``[224, 224, 3]``.

    Returns:
        ``{backbone, weights, input_shape, head: {pooling, dense, dropout,
        classes, activation}, fine_tune: None | {unfreeze_from,
        unfreeze_blocks, learning_rate, epochs}, cache_features}``.

    Example:
        >>> resolve_transfer({"backbone": "vgg16", "weights": "none"})["head"]["pooling"]
        'avg'
    """
    section = check_mapping(section, where, "a mapping such as {backbone: vgg16, head: ...}")
    keys = ["backbone", "weights", "input_shape", "head", "fine_tune", "cache_features"]
    check_keys(section, keys, where, required=["backbone"], section="model.transfer")

    name = section["backbone"]
    if not isinstance(name, str) or name.lower() not in BACKBONES:
        hint = did_you_mean(name, BACKBONES) if isinstance(name, str) else ""
        raise where.at("backbone").error(
            f"unknown backbone {show(name)}{hint}; choose one of: {', '.join(BACKBONES)}"
        )
    backbone = BACKBONES[name.lower()]

    weights = _resolve_weights(section.get("weights", "imagenet"), where.at("weights"))

    if "input_shape" in section:
        shape = list(check_shape(section["input_shape"], where.at("input_shape")))
    elif image_size is not None:
        shape = [*list(image_size)[:2], 3]
    else:
        shape = list(DEFAULT_INPUT_SHAPE)
    _check_input_shape(shape, backbone, where.at("input_shape"))

    cache = section.get("cache_features", "auto")
    if cache not in CACHE_CHOICES or isinstance(cache, int) and not isinstance(cache, bool):
        raise where.at("cache_features").error(
            f"expected auto, true or false, got {type_name(cache)} {show(cache)}"
        )

    return {
        "backbone": backbone.name,
        "weights": weights,
        "input_shape": shape,
        "head": _resolve_head(section.get("head", {}), where.at("head")),
        "fine_tune": _resolve_fine_tune(section.get("fine_tune"), where.at("fine_tune")),
        "cache_features": cache,
    }


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


def _resolve_head(value: Any, where: Where) -> dict:
    value = check_mapping(value if value is not None else {}, where)
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


def _resolve_fine_tune(value: Any, where: Where) -> dict | None:
    if value is None or value is False:
        return None
    value = check_mapping(value, where, "a mapping such as {unfreeze_from: block5_conv1}")
    check_keys(
        value,
        ["unfreeze_from", "unfreeze_blocks", "learning_rate", "epochs"],
        where,
        section="model.transfer.fine_tune",
    )
    frm, blocks = value.get("unfreeze_from"), value.get("unfreeze_blocks")
    if (frm is None) == (blocks is None):
        raise where.error(
            "say which layers stage 2 unfreezes: exactly one of unfreeze_from: LAYER_NAME "
            "or unfreeze_blocks: N"
        )
    if frm is not None:
        check_str(frm, where.at("unfreeze_from"), "a layer name of the backbone")
    if blocks is not None:
        check_number(blocks, where.at("unfreeze_blocks"), integer=True, minimum=1)
    lr = check_number(
        value.get("learning_rate", 1e-5),
        where.at("learning_rate"),
        minimum=0,
        exclusive_minimum=True,
    )
    epochs = check_number(value.get("epochs", 5), where.at("epochs"), integer=True, minimum=1)
    return {
        "unfreeze_from": frm,
        "unfreeze_blocks": blocks,
        "learning_rate": float(lr),
        "epochs": epochs,
    }
