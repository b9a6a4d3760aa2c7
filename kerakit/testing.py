"""Helpers for your own tests: tiny, seeded data sets of every kind kerakit reads, made on the
fly; `assert_learns`; `assert_roundtrip`; and the `kerakit_output` fixture.

    from kerakit.testing import assert_learns, assert_roundtrip, tiny_images

    def test_my_recipe_learns():
        assert_learns("recipes/cnn.yaml", tiny_images(shape=(28, 28, 1), classes=10))

    def test_my_model_reloads(tmp_path):
        assert_roundtrip(my_model, tmp_path, formats=["keras", "h5"])

    def test_a_run(kerakit_output):      # a fresh folder for run folders
        kk.train("recipes/cnn.yaml", epochs=1, overrides=[f"output.dir={kerakit_output}"])

Every data set is learnable (each class looks different) and fixed by `seed`. Arrays are
returned as `(x, y)`; files are written under the folder given and their path returned,
ready for `data.source` (`directory:PATH`, `csv:PATH`, `npz:PATH`). The fixture comes with
kerakit's pytest plugin (`kerakit.pytest_plugin`); this module imports no TensorFlow until
an assertion runs. See docs/testing.md.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

# --------------------------------------------------------------------------- tiny data sets


def tiny_images(n: int = 48, shape: Sequence[int] = (8, 8, 1), classes: int = 3, *,
                seed: int = 0) -> tuple:  # fmt: skip
    """`(x, y)`: `n` 8-bit images of `shape` (H, W, C), each class a bright band of its own
    rows on noise, and `int32` labels 0..classes-1 (every class present)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    h = shape[0]
    y = rng.permutation(np.arange(n) % classes).astype("int32")
    x = rng.integers(0, 60, (n, *shape))
    for i, label in enumerate(y):
        top = label * h // classes
        x[i, top : max(top + 1, (label + 1) * h // classes)] += 160
    return x.clip(0, 255).astype("uint8"), y


def tiny_image_folder(folder: str | os.PathLike, *, classes: Sequence[str] = ("cat", "dog", "fox"),
                      per_class: int = 6, size: Sequence[int] = (8, 8), channels: int = 3,
                      seed: int = 0) -> Path:  # fmt: skip
    """A folder of PNG images, one sub-folder per class (a `directory:PATH` source)."""
    from PIL import Image

    folder = Path(folder)
    x, y = tiny_images(per_class * len(classes), (*size, channels), len(classes), seed=seed)
    counts = dict.fromkeys(range(len(classes)), 0)
    for image, label in zip(x, y):
        out = folder / classes[label]
        out.mkdir(parents=True, exist_ok=True)
        pixels = image[..., 0] if channels == 1 else image
        Image.fromarray(pixels, "L" if channels == 1 else "RGB").save(
            out / f"{counts[label]:03d}.png"
        )
        counts[label] += 1
    return folder


def tiny_csv(folder: str | os.PathLike, *, rows: int = 48, classes: Sequence[str] = ("no", "yes"),
             name: str = "table.csv", seed: int = 0) -> Path:  # fmt: skip
    """A CSV table with mixed columns (`csv:PATH` with `target: label`): `age` (whole
    numbers), `height` (decimals), `income` (large numbers), `smoker` (0/1) and `label`
    (text classes) that the numbers predict."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(rows) % len(classes))
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["age", "height", "income", "smoker", "label"])
        for label in y:
            out.writerow([int(rng.integers(20, 40) + 15 * label), round(float(rng.normal(1.7, 0.1)), 2),
                          round(float(rng.normal(30_000 + 20_000 * label, 5_000)), 2),
                          int(rng.random() < 0.2 + 0.6 * (label % 2)), classes[label]])  # fmt: skip
    return path


def tiny_text(n: int = 48, length: int = 12, vocab: int = 40, classes: int = 2, *,
              seed: int = 0) -> tuple:  # fmt: skip
    """`(x, y)`: `n` sequences of `length` token ids in 1..vocab-1 (0 is padding, at the
    ends of some), each class drawing from its own part of the vocabulary; for an `Embedding`."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % classes).astype("int32")
    width = max((vocab - 1) // classes, 1)
    x = np.stack([1 + label * width + rng.integers(0, width, length) for label in y])
    for row, pad in zip(x, rng.integers(0, length // 3 + 1, n)):
        row[length - pad :] = 0
    return x.astype("int32"), y


def tiny_series(n: int = 48, steps: int = 16, features: int = 2, classes: int = 2, *,
                seed: int = 0) -> tuple:  # fmt: skip
    """`(x, y)`: `n` float32 series of shape (steps, features), sine waves whose frequency
    depends on the class, with noise; for an LSTM, GRU or Conv1D."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % classes).astype("int32")
    t = np.arange(steps)[None, :, None]
    freq = (1 + y)[:, None, None] * np.pi / steps
    phase = rng.uniform(0, np.pi, (n, 1, features))
    x = np.sin(freq * t + phase) + 0.1 * rng.standard_normal((n, steps, features))
    return x.astype("float32"), y


def write_npz(folder: str | os.PathLike, x: Any, y: Any, *, name: str = "data.npz") -> Path:
    """`x`, `y` as an `.npz` for `npz:PATH` (`x_train`, `y_train`; a dict by input or output
    name as `x_train.NAME`)."""
    import numpy as np

    arrays = {}
    for part, value in (("x_train", x), ("y_train", y)):
        if isinstance(value, Mapping):
            arrays.update({f"{part}.{k}": np.asarray(v) for k, v in value.items()})
        else:
            arrays[part] = np.asarray(value)
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


# --------------------------------------------------------------------------- assertions


def assert_learns(recipe_or_model: Any, data: Any = None, *, steps: int = 20,
                  batch_size: int = 32, overrides=None) -> list[float]:  # fmt: skip
    """Assert that a recipe's model (or a compiled `keras.Model`) overfits one batch.

    The overfit-one-batch check of `kerakit smoke`: `steps` steps on one fixed batch, every
    loss finite, and the mean of the last three below 0.9x the first. A model that
    cannot overfit one batch has a bug.

    Args:
        recipe_or_model: a recipe file, mapping or `Recipe` (built and compiled as
            `kerakit train` would), or a compiled `keras.Model`.
        data: `(x, y)` arrays (a model needs them); a recipe without them uses a tiny
            slice of its own data source (or a stand-in, as `kerakit smoke` does).
        steps: training steps.
        batch_size: rows of `data` a model trains on (a recipe uses its own batch size).
        overrides: ``KEY=VALUE`` overrides of the recipe.

    Returns:
        The losses, one per step.

    Raises:
        AssertionError: with the reason ("diverged at step 3", "no trainable weights", ...).
    """
    from kerakit.smoke.checks import overfit_one_batch

    if hasattr(recipe_or_model, "train_on_batch"):
        if data is None:
            raise TypeError("assert_learns(model, data): a model needs (x, y) to learn from")
        x, y = _rows(data, batch_size)
        return overfit_one_batch(recipe_or_model, x, y, steps)
    from kerakit.smoke.checks import quiet
    from kerakit.smoke.run import SmokeRun

    x, y = data if data is not None else (None, None)
    with tempfile.TemporaryDirectory(prefix="kerakit-test-") as tmp, quiet():
        run = SmokeRun(recipe_or_model, folder=Path(tmp), steps=steps, batches=1,
                       overrides=overrides, x=x, y=y)  # fmt: skip
        run.load()
        run.data()
        run.build()
        run.overfit()
        return run.losses


def assert_roundtrip(model: Any, folder: str | os.PathLike, formats: Sequence[str] = ("keras",),
                     x: Any = None, *, tolerance: float = 1e-5) -> dict:  # fmt: skip
    """Assert that `model` saves in each format and reloads (in a fresh Keras session, with
    `kerakit.load_model`) predicting the same on `x` within `tolerance`.

    Args:
        model: a built `keras.Model`.
        folder: where to save (a test's `tmp_path`).
        formats: any of "keras", "h5", "savedmodel".
        x: inputs to compare on; default: 8 seeded random rows shaped like the model's inputs.

    Returns:
        {format: path saved}.
    """
    from kerakit.smoke.checks import check_roundtrip

    if x is None:
        x = _random_inputs(model)
    return check_roundtrip(model, Path(folder), formats, x, tolerance=tolerance)


def _rows(data: Any, n: int) -> tuple:
    x, y = data

    def head(v):
        return {k: a[:n] for k, a in v.items()} if isinstance(v, Mapping) else v[:n]

    return head(x), head(y)


def _random_inputs(model: Any, n: int = 8, seed: int = 0) -> Any:
    import numpy as np

    rng = np.random.default_rng(seed)
    xs = {}
    for t in model.inputs:
        shape = (n, *(d or 1 for d in t.shape[1:]))
        dtype = str(t.dtype)
        xs[t.name] = (
            rng.integers(0, 2, shape).astype(dtype)
            if "int" in dtype
            else rng.random(shape).astype(dtype)
        )
    return xs if len(xs) > 1 else next(iter(xs.values()))


# --------------------------------------------------------------------------- fixture


@pytest.fixture
def kerakit_output(tmp_path: Path) -> Path:
    """A fresh, empty folder for run folders (`output.dir`), removed with the test's tmp_path."""
    folder = tmp_path / "kerakit-output"
    folder.mkdir()
    return folder
