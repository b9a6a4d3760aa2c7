"""KerasHub backbones for transfer models, from a local preset directory.

`hub_trunk` loads ``keras_hub.models.Backbone.from_preset(DIR)`` (a directory
checked by `kerakit.recipe.hub`, never a preset name) and the layer that scales
raw 0-255 pixels for it: the preset's own ``ImageConverter`` when the directory
has ``image_converter.json``, else a ``Rescaling``. `kerakit.models.transfer`
puts them where a ``keras.applications`` backbone and its ``preprocess_input``
go (the layers named ``"backbone"`` and ``"preprocess"``), so the stages, the
feature cache and the saved model work the same. keras_hub is imported here
only, when such a backbone is built.

    model = kk.transfer_model({"keras_hub": "presets/resnet_18"}, classes=5,
                              input_shape=(160, 160, 3), weights="preset")
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras

from kerakit.errors import NOWHERE, Where
from kerakit.recipe.backbones import Backbone
from kerakit.recipe.hub import BLOCK_PATTERNS, HUB_KEY, INSTALL


def import_keras_hub(where: Where = NOWHERE) -> Any:
    """keras_hub, or an error that says how to install it."""
    try:
        import keras_hub
    except ImportError as e:
        raise where.error(
            f"a KerasHub backbone needs keras-hub, which cannot be imported ({e}): {INSTALL}"
        ) from None
    return keras_hub


def hub_trunk(spec: Mapping, where: Where = NOWHERE) -> tuple[keras.Model, keras.layers.Layer]:
    """(the frozen backbone named ``"backbone"``, the pixel-scaling layer named ``"preprocess"``).

    Args:
        spec: a resolved ``model.transfer`` section with ``backbone: {keras_hub: DIR}``,
            ``weights`` (``preset`` or ``none``), ``input_shape`` and ``preprocess``
            (``preset`` or ``{scale, offset}``).
        where: where ``model.transfer`` sits in the recipe.
    """
    keras_hub = import_keras_hub(where.at("backbone"))
    path = spec["backbone"][HUB_KEY]
    try:  # image_shape: the recipe's size (convolution weights do not depend on it)
        base = keras_hub.models.Backbone.from_preset(
            path, load_weights=spec.get("weights", "preset") != "none",
            image_shape=tuple(spec["input_shape"]),
        )  # fmt: skip
    except Exception as e:  # Keras and KerasHub raise ValueError, OSError, TypeError ...
        first = " ".join(str(e).split())[:400]
        raise where.at("backbone", HUB_KEY).error(
            f"cannot load the KerasHub preset {path} at input shape {spec['input_shape']}: {first}"
        ) from None
    if len(base.output_shape) != 4:
        raise where.at("backbone").error(
            f"{type(base).__name__} outputs {base.output_shape} (tokens), not a feature map "
            f"(batch, height, width, channels): kerakit's transfer head pools feature maps"
        )
    base.name = "backbone"
    base.trainable = False
    return base, _preprocess(keras_hub, path, spec.get("preprocess", "preset"))


def _preprocess(keras_hub: Any, path: str, how: Any) -> keras.layers.Layer:
    if how == "preset":  # its scale and offset only: kerakit's data.image_size resizes
        layer = keras_hub.layers.ImageConverter.from_preset(path, image_size=None)
        layer.name = "preprocess"
        return layer
    return keras.layers.Rescaling(how["scale"], how["offset"], dtype="float32", name="preprocess")


def hub_info(base: keras.layers.Layer) -> Backbone | None:
    """The table entry of a KerasHub backbone (for `set_stage`); None for any other layer."""
    if not type(base).__module__.startswith(f"{HUB_KEY}."):
        return None
    name = type(base).__name__
    return Backbone(name, f"KerasHub {name}", name, "", BLOCK_PATTERNS.get(name, ""))
