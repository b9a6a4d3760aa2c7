"""`save_model`: a model saved atomically in every asked format (.keras first).

paths = kk.save_model(model, "runs/digits/1", formats=["keras", "h5", "savedmodel"])
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kerakit._compat import cache_keras_skipsets, keep_compile_config, keep_loss_arguments
from kerakit._files import atomic_path
from kerakit.errors import NOWHERE, Where, did_you_mean

# format -> file or folder name inside a run folder, in the order they are saved:
# `.keras` first, because a legacy `.h5` save rewrites the model's compile config
# in Keras 3.15 (a `.keras` saved after it reloads with a fresh RMSprop).
FORMATS = {"keras": "model.keras", "h5": "model.h5", "savedmodel": "savedmodel"}


def save_model(
    model: Any,
    folder: str | os.PathLike,
    formats: Iterable[str] = ("keras",),
    *,
    where: Where = NOWHERE,
) -> dict[str, Path]:
    """Save `model` into `folder` in each asked format, atomically.

    Writes `model.keras` (native Keras), `model.h5` (legacy HDF5) and/or
    `savedmodel/` (a TensorFlow SavedModel for serving, via `model.export`).
    The `.keras` file is always written first and the model's compile config
    is restored after the `.h5` save (Keras 3.15 strips the optimizer from it),
    so every format reloads with the right optimizer and state.

    Args:
        model: a built `keras.Model`.
        folder: the run folder (created if needed).
        formats: any of "keras", "h5", "savedmodel" (default: just "keras").
        where: position of `output.formats` in the recipe, for error messages.

    Returns:
        A dict format -> path written, in the order written.

    Example:
        >>> save_model(model, "runs/digits/1", ["keras", "savedmodel"])  # doctest: +SKIP
        {'keras': PosixPath('runs/digits/1/model.keras'), 'savedmodel': ...}
    """
    if isinstance(formats, str):
        formats = [formats]
    formats = list(formats)
    for i, fmt in enumerate(formats):
        if fmt not in FORMATS:
            raise where.at(i).error(
                f"unknown model format {fmt!r}{did_you_mean(fmt, FORMATS)}; "
                f"choose any of: {', '.join(FORMATS)}"
            )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cache_keras_skipsets()
    keep_loss_arguments(model)  # a Huber's delta saved too (kerakit._compat)
    out: dict[str, Path] = {}
    for fmt in FORMATS:  # fixed order: keras, h5, savedmodel
        if fmt not in formats:
            continue
        target = folder / FORMATS[fmt]
        with atomic_path(target) as tmp:
            if fmt == "keras":
                model.save(tmp)  # tmp is new, so Keras never asks to overwrite
            elif fmt == "h5":
                _save_h5(model, tmp)
            else:
                model.export(str(tmp), format="tf_saved_model", verbose=False)
        out[fmt] = target
    return out


def _save_h5(model: Any, path: Path) -> None:
    with keep_compile_config(model):  # the legacy saver strips the optimizer (kerakit._compat)
        model.save(path)
