"""The keys of a `tfrecord:GLOB` data source: the feature spec, inputs, target, splits.

No TensorFlow here: `resolve_tfrecord` checks the keys and fills in every default,
so `kerakit check` refuses a misspelled dtype or a target that is not a feature
before TensorFlow starts. `kerakit.data.tfrecord` reads the files.

    data:
      source: tfrecord:records/train-*.tfrec
      features:
        image: {dtype: string, decode: image, channels: 3}
        target: int64                     # short for {dtype: int64}
      target: target
      image_size: [64, 64]
"""

from __future__ import annotations

from typing import Any

from kerakit.errors import Where, did_you_mean
from kerakit.recipe.schema import (
    check_choice,
    check_keys,
    check_mapping,
    check_shape,
    check_str,
    show,
    type_name,
)

# What a tf.train.Example can hold: bytes_list, int64_list, float_list.
FEATURE_DTYPES = ("string", "int64", "float32")
# Names people write for them (NumPy's, Python's, the protobuf's).
DTYPE_HINTS = {
    "bytes": "string",
    "str": "string",
    "bytes_list": "string",
    "int": "int64",
    "int8": "int64",
    "int16": "int64",
    "int32": "int64",
    "uint8": "int64",
    "int64_list": "int64",
    "bool": "int64",
    "float": "float32",
    "float16": "float32",
    "float64": "float32",
    "double": "float32",
    "float_list": "float32",
}
DECODERS = ("image", "raw")
IMAGE_CHANNELS = (1, 3, 4)
RAW_DTYPES = ("uint8", "int8", "uint16", "int16", "int32", "int64", "float16", "float32", "float64")
COMPRESSIONS = ("GZIP", "ZLIB")


def resolve_tfrecord(out: dict, where: Where) -> None:
    """Checks and completes the tfrecord keys of a resolved `data:` section, in place."""
    w = where.at
    if out["features"] is None:
        raise where.error(
            "a tfrecord source needs `features:`, the feature spec of its tf.train.Example "
            "records; e.g. `features: {image: {dtype: string, decode: image}, label: int64}`"
        )
    features = check_mapping(out["features"], w("features"), "a mapping of feature name -> spec")
    if not features:
        raise w("features").error("expected at least one feature")
    out["features"] = {
        check_str(name, w("features", name), "a feature name"): _feature(spec, w("features", name))
        for name, spec in features.items()
    }
    names = list(out["features"])

    def known(name: Any, at: Where, what: str) -> str:
        check_str(name, at, what)
        if name not in out["features"]:
            raise at.error(
                f"{name!r} is not one of the features{did_you_mean(name, names)}; "
                f"features: {', '.join(names)}"
            )
        return name

    if out["target"] is None:
        raise where.error(
            "a tfrecord source needs `target: FEATURE`, the feature to predict; "
            f"features: {', '.join(names)}"
        )
    target = known(out["target"], w("target"), "a feature name")
    spec = out["features"][target]
    if spec["decode"] is not None:
        raise w("features", target, "decode").error(
            f"the target {target!r} cannot be decoded; store labels as int64 class ids, "
            "float32 values or string class names"
        )
    if spec["dtype"] == "string" and spec["shape"]:
        raise w("features", target, "shape").error(
            f"a string target (class names) holds one name per record: use shape [], "
            f"got {show(spec['shape'])}"
        )
    inputs = out["input"]
    if inputs is None:  # every feature but the target
        inputs = [n for n in names if n != target]
        if not inputs:
            raise w("features").error(
                f"the only feature is the target {target!r}; add the input features"
            )
        inputs = inputs[0] if len(inputs) == 1 else inputs
    elif isinstance(inputs, list):
        if not inputs:
            raise w("input").error("expected a feature name or a list of them, got []")
        for i, name in enumerate(inputs):
            known(name, w("input", i), "a feature name")
        if len(set(inputs)) != len(inputs):
            raise w("input").error(f"a feature is named twice: {show(inputs)}")
    else:
        known(inputs, w("input"), "a feature name or a list of them")
    for i, name in enumerate(inputs if isinstance(inputs, list) else [inputs]):
        at = w("input", i) if isinstance(inputs, list) else w("input")
        if name == target:
            raise at.error(f"{name!r} is the target; an input cannot be the target too")
        if out["features"][name]["dtype"] == "string" and out["features"][name]["decode"] is None:
            raise at.error(
                f"input {name!r} is a string feature; set `decode: image` (encoded images) "
                f"or `decode: raw` (raw bytes of an array) on it"
            )
    out["input"] = inputs
    out["split"] = _split(out["split"], w("split"))
    comp = out["compression"]
    if comp is not None:
        if isinstance(comp, str) and comp.upper() in COMPRESSIONS:
            comp = comp.upper()
        check_choice(comp, COMPRESSIONS, w("compression"), "compression")
    out["compression"] = comp


def _feature(spec: Any, where: Where) -> dict:
    """One feature's spec, completed: `{dtype, shape, decode}`, plus `channels` for
    `decode: image` (no shape: image_size sets it) or `raw_dtype` for `decode: raw`."""
    if isinstance(spec, str):  # `label: int64`
        spec = {"dtype": spec}
    spec = check_mapping(spec, where, "a mapping such as {dtype: int64} or a dtype name")
    decode = spec.get("decode")
    keys = ["dtype", "shape", "decode"]
    keys += {"image": ["channels"], "raw": ["raw_dtype"]}.get(decode, [])
    for key in ("channels", "raw_dtype"):
        if key in spec and key not in keys:
            need = "image" if key == "channels" else "raw"
            raise where.at(key).error(f"{key!r} applies to `decode: {need}` only; remove it")
    check_keys(spec, keys, where, section="a tfrecord feature")
    if decode is not None:
        check_choice(decode, DECODERS, where.at("decode"), "decode")
    dtype = spec.get("dtype", "string" if decode else None)
    if dtype is None:
        raise where.error(f"missing required key 'dtype'; one of: {', '.join(FEATURE_DTYPES)}")
    if dtype not in FEATURE_DTYPES:
        hint = DTYPE_HINTS.get(dtype) if isinstance(dtype, str) else None
        guess = f" (did you mean {hint!r}?)" if hint else ""
        guess = guess or (did_you_mean(dtype, FEATURE_DTYPES) if isinstance(dtype, str) else "")
        raise where.at("dtype").error(
            f"unknown dtype {show(dtype)}{guess}; a tf.train.Example feature is string "
            "(bytes_list), int64 (int64_list) or float32 (float_list)"
        )
    if decode is not None and dtype != "string":
        raise where.at("decode").error(
            f"`decode: {decode}` reads bytes: the feature's dtype must be string, not {dtype}"
        )
    out: dict[str, Any] = {"dtype": dtype}
    if decode == "image":
        if "shape" in spec:
            raise where.at("shape").error(
                "a decoded image takes its shape from the image itself; remove `shape` "
                "(set data.image_size to resize every image to one size)"
            )
        out["decode"] = "image"
        out["channels"] = spec.get("channels", 3)
        if out["channels"] not in IMAGE_CHANNELS or isinstance(out["channels"], bool):
            raise where.at("channels").error(
                f"expected 1 (grayscale), 3 (RGB) or 4 (RGBA), got {show(out['channels'])}"
            )
        return out
    shape = spec.get("shape", [])
    if decode == "raw" and "shape" not in spec:
        raise where.error(
            "`decode: raw` needs `shape:`, the shape of the decoded array, e.g. [28, 28, 1]"
        )
    if shape != []:
        shape = list(check_shape(shape, where.at("shape"), "a list of positive integers"))
        if None in shape:
            raise where.at("shape").error(
                f"a tfrecord feature has a fixed shape: every dimension a positive integer, "
                f"got {show(spec['shape'])}"
            )
    out["shape"] = shape
    out["decode"] = decode
    if decode == "raw":
        out["raw_dtype"] = spec.get("raw_dtype", "uint8")
        check_choice(out["raw_dtype"], RAW_DTYPES, where.at("raw_dtype"), "raw_dtype")
    return out


def _split(split: Any, where: Where) -> dict:
    """`{val: GLOB | null, test: GLOB | null}`: null carves that split from the training files."""
    check_mapping(split, where, "a mapping {val: GLOB or null, test: GLOB or null}")
    if "train" in split:
        raise where.at("train").error(
            "the training files are the source (`source: tfrecord:GLOB`); split names only "
            "val and test"
        )
    check_keys(split, ["val", "test"], where, section="data.split")
    out = {"val": split.get("val"), "test": split.get("test")}
    for key, value in out.items():
        if value is not None and not (isinstance(value, str) and value.strip()):
            raise where.at(key).error(
                f"expected a file or glob of TFRecord files, or null (carved from the training "
                f"files), got {type_name(value)} {show(value)}"
            )
    return out
