"""KerasHub backbones in `model.transfer`: a local preset directory, checked with no TensorFlow.

``backbone: {keras_hub: DIR}`` names a directory written by KerasHub's
``save_to_preset`` (``config.json``, ``metadata.json``, ``model.weights.h5``,
and ``image_converter.json`` when it was a classifier's). kerakit never passes
a preset *name* to KerasHub: a name downloads from Kaggle or Hugging Face, so a
run would depend on the network and on files no recipe pins. This module checks
the directory and reads ``config.json`` as plain JSON (never importing
keras_hub); `kerakit.models.hub` builds it.

    model:
      transfer:
        backbone: {keras_hub: presets/resnet_18}   # relative to the recipe file
        weights: preset                            # or none: the architecture, random weights
        input_shape: [160, 160, 3]                 # or data.image_size
        preprocess: preset                         # image_converter.json; or {scale, offset}
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping
from typing import Any

from kerakit.errors import Where, did_you_mean
from kerakit.recipe.schema import check_keys, check_mapping, check_number, check_shape, show

HUB_KEY = "keras_hub"
INSTALL = 'pip install "kerakit[hub]"'
HUB_WEIGHTS = ("preset", "none")
PRESET_FILES = ("config.json", "metadata.json")
WEIGHT_FILES = ("model.weights.h5", "model.weights.json")  # one file, or sharded
CONVERTER_FILE = "image_converter.json"
MAX_CONFIG_BYTES = 1 << 20
DEFAULT_SCALE = 1 / 255
# KerasHub backbone class -> the pattern whose first group names a layer's block, for
# `unfreeze: {blocks: N}` (measured on keras-hub 0.32; others: unfreeze last / from).
BLOCK_PATTERNS = {"ResNetBackbone": r"^(stack\d+_block\d+)_"}


def is_hub(value: Any) -> bool:
    """Whether ``model.transfer.backbone`` names a KerasHub preset (a mapping)."""
    return isinstance(value, Mapping)


def resolve_hub(section: Mapping, where: Where, image_size=None) -> dict:
    """``backbone``, ``weights``, ``input_shape`` and ``preprocess`` of a KerasHub backbone.

    Args:
        section: ``model.transfer`` with ``backbone: {keras_hub: DIR}``.
        where: where ``model.transfer`` sits in the recipe.
        image_size: ``data.image_size``, the input size when ``input_shape`` is not given.

    Returns:
        ``{backbone: {keras_hub: ABSOLUTE_DIR}, weights: preset | none, input_shape,
        preprocess: preset | {scale, offset}}``.
    """
    w = where.at("backbone")
    value = section["backbone"]
    check_keys(value, [HUB_KEY], w, required=[HUB_KEY], section="model.transfer.backbone")
    path = preset_dir(value[HUB_KEY], w.at(HUB_KEY))
    config = preset_config(path, w.at(HUB_KEY))
    if importlib.util.find_spec("keras_hub") is None:
        raise w.error(f"a KerasHub backbone needs keras-hub, which is not installed: {INSTALL}")
    weights = section.get("weights", "preset")
    if weights not in HUB_WEIGHTS:
        raise where.at("weights").error(
            f"a KerasHub preset holds its own weights: weights is preset (the default) or none "
            f"(its architecture with random weights), got {show(weights)}"
            f"{did_you_mean(str(weights), HUB_WEIGHTS)}"
        )
    if weights == "preset" and not any(os.path.isfile(os.path.join(path, f)) for f in WEIGHT_FILES):
        raise where.at("weights").error(
            f"{path} holds no weights ({' or '.join(WEIGHT_FILES)}); use weights: none for "
            f"random weights, or save the preset again with its weights"
        )
    channels = _preset_channels(config)
    if "input_shape" in section:
        shape = list(check_shape(section["input_shape"], where.at("input_shape")))
    elif image_size is not None:
        shape = [*list(image_size)[:2], channels]
    else:
        raise where.at("input_shape").error(
            f"a KerasHub backbone needs the input size: set model.transfer.input_shape "
            f"(e.g. [224, 224, {channels}]) or data.image_size"
        )
    if len(shape) != 3 or shape[2] != channels or None in shape:
        raise where.at("input_shape").error(
            f"{config['class_name']} takes [height, width, {channels}], got {show(shape)}"
        )
    return {
        "backbone": {HUB_KEY: path},
        "weights": weights,
        "input_shape": shape,
        "preprocess": _resolve_preprocess(section.get("preprocess"), path, channels, where),
    }


def preset_dir(value: Any, where: Where) -> str:
    """The absolute path of a preset directory; a preset name (no such directory) is refused."""
    if not isinstance(value, str) or not value:
        raise where.error(f"expected the path of a KerasHub preset directory, got {show(value)}")
    path = os.path.expanduser(value)
    if where.file and not os.path.isabs(path) and "://" not in path:
        path = os.path.join(os.path.dirname(os.path.abspath(where.file)), path)
    path = os.path.abspath(path)  # the run folder's recipe must find it from anywhere
    if not os.path.isdir(path):
        raise where.error(
            f"no preset directory {value!r}: kerakit loads KerasHub presets from local "
            f"directories only, never by name (a name downloads from Kaggle or Hugging Face). "
            f"Make one on a machine with network: "
            f"keras_hub.models.Backbone.from_preset({value!r}).save_to_preset('DIR') "
            f"(keras_hub.models.ImageClassifier.from_preset(...).save_to_preset('DIR') keeps its "
            f"image converter too), copy DIR here and give backbone: {{keras_hub: DIR}} "
            f"(relative to the recipe file)"
        )
    return path


def preset_config(path: str, where: Where) -> dict:
    """``config.json`` of a preset directory, checked to name a KerasHub image backbone."""
    missing = [f for f in PRESET_FILES if not os.path.isfile(os.path.join(path, f))]
    if missing:
        raise where.error(
            f"{path} is not a KerasHub preset directory: it has no {' or '.join(missing)} "
            f"(save_to_preset writes config.json, metadata.json and model.weights.h5)"
        )
    try:
        with open(os.path.join(path, "config.json"), "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ValueError(f"larger than {MAX_CONFIG_BYTES} bytes")
        config = json.loads(raw)
    except (OSError, ValueError) as e:
        raise where.error(f"{path}/config.json cannot be read as JSON: {e}") from None
    name = config.get("class_name") if isinstance(config, dict) else None
    registered = config.get("registered_name") if isinstance(config, dict) else None
    if not isinstance(name, str) or not str(registered).startswith(f"{HUB_KEY}>"):
        raise where.error(
            f"{path}/config.json does not name a KerasHub backbone (its registered_name is "
            f"{show(registered)}, expected keras_hub>...Backbone)"
        )
    if not isinstance(config.get("config"), dict) or "image_shape" not in config["config"]:
        raise where.error(
            f"{name} ({path}) is not an image backbone (its config.json has no image_shape); "
            f"a transfer model takes images"
        )
    return config


def preset_class(path: str) -> str:
    """The backbone class named by a (checked) preset directory's ``config.json``."""
    with open(os.path.join(path, "config.json"), "rb") as f:
        return json.loads(f.read(MAX_CONFIG_BYTES))["class_name"]


def check_blocks(spec: Mapping, where: Where) -> None:
    """Refuses ``unfreeze: {blocks: N}`` for a KerasHub class with no block pattern."""
    fine_tune = spec.get("fine_tune") or {}
    unfreeze = fine_tune.get("unfreeze")
    if isinstance(unfreeze, Mapping) and "blocks" in unfreeze:
        at = where.at("fine_tune", "unfreeze", "blocks")
    elif fine_tune.get("unfreeze_blocks") is not None:
        at = where.at("fine_tune", "unfreeze_blocks")
    else:
        return
    name = preset_class(spec["backbone"][HUB_KEY])
    if name not in BLOCK_PATTERNS:
        raise at.error(block_refusal(name))


def block_refusal(name: str) -> str:
    return (
        f"kerakit knows no blocks of {name} (only of {', '.join(BLOCK_PATTERNS)}); unfreeze "
        f"{{last: N}} (layers from the top) or {{from: LAYER_NAME}} instead"
    )


def _preset_channels(config: Mapping) -> int:
    shape = config["config"].get("image_shape")
    last = shape[-1] if isinstance(shape, list) and shape else None
    return last if isinstance(last, int) and not isinstance(last, bool) else 3


def _resolve_preprocess(value: Any, path: str, channels: int, where: Where) -> str | dict:
    w = where.at("preprocess")
    has_converter = os.path.isfile(os.path.join(path, CONVERTER_FILE))
    if value is None:
        value = "preset" if has_converter else {}
    if value == "preset":
        if not has_converter:
            raise w.error(
                f"{path} has no {CONVERTER_FILE} (a Backbone's save_to_preset writes none; an "
                f"ImageClassifier's does): give the pixel scaling the backbone was trained "
                f"with, e.g. preprocess: {{scale: 0.00392156862745098, offset: 0}}"
            )
        return "preset"
    value = check_mapping(value, w, "preset, or a mapping such as {scale: 0.0039, offset: 0}")
    check_keys(value, ["scale", "offset"], w, section="model.transfer.preprocess")
    out = {}
    for key, default in (("scale", DEFAULT_SCALE), ("offset", 0.0)):
        got = value.get(key, default)
        if isinstance(got, list):
            if len(got) != channels:
                raise w.at(key).error(f"expected one number or {channels}, got {show(got)}")
            out[key] = [float(check_number(v, w.at(key, i))) for i, v in enumerate(got)]
        else:
            out[key] = float(check_number(got, w.at(key)))
    return out
