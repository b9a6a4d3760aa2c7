"""The `augment` section: presets, ops, ImageDataGenerator keywords (no TensorFlow import).

`augment:` in a recipe is one of:

```yaml
augment: medium                      # a preset: light | medium | heavy
augment:                             # an ordered list of ops
  - flip: horizontal
  - rotation: 30                     # degrees, as ImageDataGenerator(rotation_range=30)
  - shift: 0.2                       # width, height fractions ([w, h] or one number)
  - zoom: 0.2                        # scale drawn from [0.8, 1.2], as keras.layers.RandomZoom(0.2)
augment:                             # ImageDataGenerator keywords, pasted from old code
  rotation_range: 30
  width_shift_range: 0.2
  zoom_range: 0.2
  horizontal_flip: true
augment:                             # the mapping form: ops or a preset, plus options
  preset: medium                     # or ops: [...]
  placement: model                   # data (tf.data, the default) | model (inside the model)
  fill_mode: reflect                 # reflect | nearest | constant | wrap
```

`resolve_augment` turns each into one resolved, YAML-dumpable mapping (presets
expanded into their ops, ImageDataGenerator keywords into ops with the same
ranges), which `resolve_augment` returns unchanged when given it again.
`kerakit.augment.augmentation` runs it. See docs/augment.md.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from kerakit.errors import NOWHERE, Where, did_you_mean
from kerakit.recipe import schema as S
from kerakit.recipe.registry import Registry

# The ops, in the order the docs list them. Geometric ones are fused into one warp.
GEOMETRIC = ("flip", "rotation", "shift", "zoom", "shear", "crop")
COLOR = ("contrast", "brightness")
LABEL = ("mixup", "cutmix")  # these mix two images and their (one-hot) labels
OPS = (*GEOMETRIC, *COLOR, *LABEL)

PLACEMENTS = ("data", "model")
FILL_MODES = ("reflect", "nearest", "constant", "wrap")
INTERPOLATIONS = ("bilinear", "nearest")
OPTIONS = ("placement", "fill_mode", "fill_value", "interpolation", "value_range", "seed")
DEFAULTS: dict[str, Any] = {
    "placement": "data",
    "fill_mode": "reflect",  # keras.layers.Random* default; ImageDataGenerator's is "nearest"
    "fill_value": 0.0,
    "interpolation": "bilinear",
    "value_range": "auto",  # [0, 1] or [0, 255], decided per batch from its largest pixel
    "seed": None,
}

PRESETS = Registry(
    "augment",
    "augmentation presets: ops for `augment: NAME`",
    {
        "light": {
            "description": "flip horizontal, rotation 10, shift 0.1",
            "ops": [{"flip": "horizontal"}, {"rotation": 10}, {"shift": [0.1, 0.1]}],
        },
        "medium": {
            "description": "flip horizontal, rotation 20, shift 0.15, zoom 0.15, contrast 0.1",
            "ops": [
                {"flip": "horizontal"},
                {"rotation": 20},
                {"shift": [0.15, 0.15]},
                {"zoom": {"range": [0.85, 1.15], "keep_aspect": True}},
                {"contrast": 0.1},
            ],
        },
        "heavy": {
            "description": "flip horizontal, rotation 30, shift 0.2, zoom 0.25, shear 10, "
            "contrast 0.2, brightness 0.2",
            "ops": [
                {"flip": "horizontal"},
                {"rotation": 30},
                {"shift": [0.2, 0.2]},
                {"zoom": {"range": [0.75, 1.25], "keep_aspect": True}},
                {"shear": 10},
                {"contrast": 0.2},
                {"brightness": {"range": [-0.2, 0.2], "mode": "add"}},
            ],
        },
    },
)

# ImageDataGenerator keywords that have a faithful equivalent here.
IDG_KEYS = (
    "rotation_range", "width_shift_range", "height_shift_range", "zoom_range", "shear_range",
    "horizontal_flip", "vertical_flip", "brightness_range", "fill_mode", "cval",
    "interpolation_order", "rescale", "data_format",
)  # fmt: skip
# ... and those that have none: each says why (never silently dropped).
IDG_UNSUPPORTED = {
    "featurewise_center": "needs statistics of the whole data set; use data.normalize: true",
    "featurewise_std_normalization": "needs statistics of the whole data set; use data.normalize: true",
    "samplewise_center": "is normalization, not augmentation; add a keras Normalization layer to the model",
    "samplewise_std_normalization": "is normalization, not augmentation; add a keras Normalization layer to the model",
    "zca_whitening": "has no kerakit equivalent",
    "zca_epsilon": "belongs to zca_whitening, which has no kerakit equivalent",
    "channel_shift_range": "has no kerakit equivalent yet; use brightness or contrast",
    "preprocessing_function": "is arbitrary Python code, which a recipe cannot hold",
    "validation_split": "belongs in data.validation_split",
    "dtype": "has no equivalent: augmented batches are float32",
}  # fmt: skip


def list_presets() -> dict[str, str]:
    """Preset name -> one-line description, for `kerakit list augment`."""
    return PRESETS.describe()


def resolve_augment(value: Any, where: Where = NOWHERE, *, seed: int | None = None) -> dict | None:
    """Validate an `augment` section and expand it into its resolved form.

    Args:
        value: a preset name, a list of ops (`{name: argument}`), a mapping of
            ImageDataGenerator keywords, or a mapping with `ops` or `preset` plus
            options (`placement`, `fill_mode`, `fill_value`, `interpolation`,
            `value_range`, `seed`). None or an empty list: no augmentation.
        where: position of `augment` in the recipe.
        seed: the recipe's seed, used unless the section sets its own.

    Returns:
        None, or ``{"ops": [...], "placement": ..., "fill_mode": ..., ...}`` with
        every op in its full form; plain values that dump to YAML and that
        `resolve_augment` returns unchanged.

    Example:
        >>> resolve_augment({"rotation_range": 30, "zoom_range": 0.2})["ops"]
        [{'rotation': 30}, {'zoom': {'range': [0.8, 1.2], 'keep_aspect': False}}]
    """
    if value is None or (isinstance(value, (list, tuple)) and not value):
        return None
    options: dict[str, Any] = {}
    if isinstance(value, str):
        ops = _preset(value, where)
    elif isinstance(value, (list, tuple)):
        ops = [_op(item, where.at(i)) for i, item in enumerate(value)]
    elif isinstance(value, Mapping):
        keys = set(value)
        if keys & set(IDG_KEYS) - {"fill_mode"} or keys & set(IDG_UNSUPPORTED):
            ops, options = _from_idg(value, where)
        else:
            ops, options = _from_mapping(value, where)
    else:
        raise where.error(
            f"expected a preset name ({', '.join(PRESETS)}), a list of ops or a mapping, "
            f"got {S.type_name(value)} {S.show(value)}"
        )
    out = {"ops": ops, **DEFAULTS, **options}
    if out["seed"] is None:
        out["seed"] = seed
    _check_combination(out, where)
    return out


def _preset(name: Any, where: Where) -> list[dict]:
    if name in OPS:
        raise where.error(f"{name!r} is an op, not a preset; write it as a list: [{{{name}: ...}}]")
    S.check_choice(name, PRESETS, where, "augmentation preset")
    return copy.deepcopy(PRESETS[name]["ops"])


def _from_mapping(value: Mapping, where: Where) -> tuple[list[dict], dict]:
    if len(value) == 1 and next(iter(value)) in OPS:
        ((name, arg),) = value.items()  # `augment: {rotation: 30}`: one op
        return [_op({name: arg}, where)], {}
    S.check_keys(value, ["ops", "preset", *OPTIONS], where, section="augment")
    if "ops" in value and "preset" in value:
        raise where.error("give either `ops` or `preset`, not both")
    if "preset" in value:
        ops = _preset(value["preset"], where.at("preset"))
    elif "ops" in value:
        raw = value["ops"]
        if not isinstance(raw, (list, tuple)):
            raise where.at("ops").error(
                f"expected a list of ops, got {S.type_name(raw)} {S.show(raw)}"
            )
        ops = [_op(item, where.at("ops", i)) for i, item in enumerate(raw)]
    else:
        raise where.error("missing `ops` (a list of ops) or `preset` (light, medium or heavy)")
    return ops, _options(value, where)


def _options(value: Mapping, where: Where) -> dict:
    out = {}
    for key in OPTIONS:
        if key not in value:
            continue
        v, w = value[key], where.at(key)
        if key == "placement":
            v = S.check_choice(v, PLACEMENTS, w, "placement")
        elif key == "fill_mode":
            v = S.check_choice(v, FILL_MODES, w, "fill_mode")
        elif key == "interpolation":
            v = S.check_choice(v, INTERPOLATIONS, w, "interpolation")
        elif key == "fill_value":
            v = float(S.check_number(v, w))
        elif key == "seed":
            if v is not None:
                S.check_number(v, w, integer=True, minimum=0, maximum=2**32 - 1)
        elif key == "value_range" and v != "auto":
            v = _pair(v, w, what="[low, high] pixel values")
            if v[0] >= v[1]:
                raise w.error(f"value_range {v} must go from low to high, e.g. [0, 255]")
        out[key] = v
    return out


def _op(item: Any, where: Where) -> dict:
    if isinstance(item, str) and item in OPS:
        raise where.error(f"op {item!r} needs an argument, e.g. `- {item}: {_EXAMPLE[item]}`")
    if not isinstance(item, Mapping) or len(item) != 1:
        raise where.error(
            f"each op is one `name: argument` pair such as `- rotation: 30`, got "
            f"{S.type_name(item)} {S.show(item)}"
        )
    ((name, arg),) = item.items()
    if name not in OPS:
        idg = (
            f" ({name!r} is an ImageDataGenerator keyword: give those as a mapping)"
            if name in IDG_KEYS
            else ""
        )
        raise where.at(name).error(
            f"unknown augmentation op {S.show(name)}{did_you_mean(name, OPS)}{idg}; "
            f"ops: {', '.join(OPS)}"
        )
    return {name: _ARGS[name](arg, where.at(name))}


_EXAMPLE = {"flip": "horizontal", "rotation": 30, "shift": 0.2, "zoom": 0.2, "shear": 10,
            "crop": 0.8, "contrast": 0.2, "brightness": 0.2, "mixup": 0.2, "cutmix": 1.0}  # fmt: skip


def _pair(v: Any, where: Where, *, what: str, **bounds) -> list:
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise where.error(f"expected {what}, got {S.type_name(v)} {S.show(v)}")
    return [S.check_number(x, where.at(i), **bounds) for i, x in enumerate(v)]


def _flip(v: Any, w: Where) -> str:
    return S.check_choice(v, ("horizontal", "vertical", "both"), w, "flip direction")


def _degrees(v: Any, w: Where) -> float:
    return S.check_number(v, w, minimum=0, maximum=180, what="degrees")


def _shift(v: Any, w: Where) -> list:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = [v, v]
    return _pair(v, w, what="a fraction of the width and height, e.g. 0.2 or [0.2, 0.1]",
                 minimum=0, maximum=1, exclusive_maximum=True)  # fmt: skip


def _zoom(v: Any, w: Where) -> dict:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        S.check_number(v, w, minimum=0, maximum=1, exclusive_maximum=True)
        return {"range": [_round(1 - v), _round(1 + v)], "keep_aspect": True}
    if isinstance(v, (list, tuple)):
        v = {"range": v}
    S.check_mapping(
        v, w, "a number such as 0.2, a [low, high] scale range, or {range, keep_aspect}"
    )
    S.check_keys(v, ["range", "keep_aspect"], w, required=["range"], section="zoom")
    rng = _pair(v["range"], w.at("range"), what="a [low, high] scale range such as [0.8, 1.2]",
                minimum=0, exclusive_minimum=True)  # fmt: skip
    if rng[0] > rng[1]:
        raise w.at("range").error(f"zoom range {rng} must go from low to high")
    keep = S.check_bool(v.get("keep_aspect", True), w.at("keep_aspect"))
    return {"range": rng, "keep_aspect": keep}


def _crop(v: Any, w: Where) -> float:
    return S.check_number(v, w, minimum=0, maximum=1, exclusive_minimum=True,
                          what="the kept fraction of height and width")  # fmt: skip


def _contrast(v: Any, w: Where) -> float:
    return S.check_number(v, w, minimum=0, maximum=1, what="a contrast factor")


def _brightness(v: Any, w: Where) -> dict:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        S.check_number(v, w, minimum=0, maximum=1, what="a fraction of the value range")
        return {"range": [_round(-v), _round(v)], "mode": "add"}
    S.check_mapping(v, w, "a number such as 0.2 or {range: [low, high], mode: add|multiply}")
    S.check_keys(v, ["range", "mode"], w, required=["range"], section="brightness")
    mode = S.check_choice(
        v.get("mode", "add"), ("add", "multiply"), w.at("mode"), "brightness mode"
    )
    rng = _pair(v["range"], w.at("range"), what="a [low, high] range")
    if rng[0] > rng[1]:
        raise w.at("range").error(f"brightness range {rng} must go from low to high")
    if mode == "multiply" and rng[0] < 0:
        raise w.at("range").error(f"a multiplying brightness range must be >= 0, got {rng}")
    return {"range": rng, "mode": mode}


def _alpha(v: Any, w: Where) -> float:
    return S.check_number(
        v, w, minimum=0, exclusive_minimum=True, what="a Beta(alpha, alpha) alpha"
    )


_ARGS = {"flip": _flip, "rotation": _degrees, "shift": _shift, "zoom": _zoom, "shear": _degrees,
         "crop": _crop, "contrast": _contrast, "brightness": _brightness, "mixup": _alpha,
         "cutmix": _alpha}  # fmt: skip


def _round(x: float) -> float:
    return round(x, 10)  # 1 - 0.2 is 0.8, not 0.7999999999999999, in the resolved recipe


def _from_idg(value: Mapping, where: Where) -> tuple[list[dict], dict]:
    """ImageDataGenerator keywords -> ops with the same ranges (docs/augment.md has the table)."""
    for key in value:
        w = where.at(key)
        if key in IDG_UNSUPPORTED:
            if value[key] in (None, False, 0, 0.0, 1e-6, "float32"):
                continue  # the keyword's default: it asks for nothing
            raise w.error(f"ImageDataGenerator's {key} {IDG_UNSUPPORTED[key]}")
        if key not in IDG_KEYS and key not in OPTIONS:
            raise w.error(
                f"unknown ImageDataGenerator keyword {key!r}{did_you_mean(key, [*IDG_KEYS, *IDG_UNSUPPORTED])}"
                " (ops such as `rotation: 30` go in a list, not beside ImageDataGenerator keywords)"
            )
    ops: list[dict] = []
    # The order of ImageDataGenerator's own matrix product: rotation, shift, shear, zoom; then flips.
    if value.get("rotation_range"):
        ops.append({"rotation": _degrees(value["rotation_range"], where.at("rotation_range"))})
    shifts = [_idg_shift(value, k, where) for k in ("width_shift_range", "height_shift_range")]
    if any(shifts):
        ops.append({"shift": shifts})
    if value.get("shear_range"):
        ops.append({"shear": _degrees(value["shear_range"], where.at("shear_range"))})
    zoom = value.get("zoom_range", 0.0)
    if zoom:
        w = where.at("zoom_range")
        if isinstance(zoom, (int, float)) and not isinstance(zoom, bool):
            S.check_number(zoom, w, minimum=0, maximum=1, exclusive_maximum=True)
            zoom = [_round(1 - zoom), _round(1 + zoom)]  # IDG: uniform in [1 - z, 1 + z]
        ops.append(
            {"zoom": _zoom({"range": zoom, "keep_aspect": False}, w)}
        )  # IDG draws x, y apart
    h = S.check_bool(value.get("horizontal_flip", False), where.at("horizontal_flip"))
    v = S.check_bool(value.get("vertical_flip", False), where.at("vertical_flip"))
    if h or v:
        ops.append({"flip": "both" if h and v else ("horizontal" if h else "vertical")})
    if value.get("brightness_range") is not None:
        w = where.at("brightness_range")
        ops.append(
            {"brightness": _brightness({"range": value["brightness_range"], "mode": "multiply"}, w)}
        )
    if value.get("rescale") not in (None, 1, 1.0):
        raise where.at("rescale").error(
            "rescale is not augmentation: augmentation runs on training batches only, so "
            "validation and test images would not be rescaled; put it in the data section "
            f"(data: {{rescale: {value['rescale']}}})"
        )
    if value.get("data_format", "channels_last") not in (None, "channels_last"):
        raise where.at("data_format").error("only channels_last images are supported")
    options = _options({k: v for k, v in value.items() if k in OPTIONS}, where)
    options.setdefault("fill_mode", "nearest")  # ImageDataGenerator's default
    if "cval" in value:
        options["fill_value"] = float(S.check_number(value["cval"], where.at("cval")))
    order = value.get("interpolation_order", 1)
    if order not in (0, 1) or isinstance(order, bool):
        raise where.at("interpolation_order").error(
            f"interpolation_order {S.show(order)} has no equivalent: 0 (nearest) and 1 (bilinear) do"
        )
    if "interpolation_order" in value:
        options["interpolation"] = "bilinear" if order == 1 else "nearest"
    if not ops:
        raise where.error(
            "these ImageDataGenerator keywords ask for no augmentation; remove `augment`"
        )
    return ops, options


def _idg_shift(value: Mapping, key: str, where: Where) -> float:
    v = value.get(key, 0.0)
    w = where.at(key)
    if isinstance(v, (list, tuple)):
        raise w.error(
            f"{key} as a list of pixel choices has no equivalent; give a fraction of the "
            "image size such as 0.2"
        )
    S.check_number(v, w, minimum=0)
    if isinstance(v, int) and v != 0 or v >= 1:
        raise w.error(
            f"{key}={v!r} means pixels to ImageDataGenerator, which has no faithful "
            "equivalent here: kerakit shifts by a fraction of the image size; give pixels / size "
            "(e.g. 0.1 for 3 pixels of 28)"
        )
    return v


def _check_combination(spec: dict, where: Where) -> None:
    names = [next(iter(op)) for op in spec["ops"]]
    for name in set(names):
        if names.count(name) > 1:
            raise where.error(f"op {name!r} is given twice; give each op once")
    if spec["placement"] == "model":
        for name in LABEL:
            if name in names:
                raise where.at("placement").error(
                    f"{name} mixes labels too, so it cannot run inside the model; "
                    "use placement: data"
                )
