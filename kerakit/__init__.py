"""kerakit: recipes, builders, presets and bundles over tf.keras.

    import kerakit as kk
    recipe = kk.load_recipe("configs/digits_cnn.yaml")
    model = kk.build_model(recipe)
    kk.compile_model(model, preset="multiclass")

Importing kerakit imports no TensorFlow: the names below are loaded on first
use, so a bad recipe is rejected before TensorFlow starts.
"""

from __future__ import annotations

import importlib

from kerakit import _moved
from kerakit.errors import (
    DataError,
    KerakitError,
    ModelFileError,
    RecipeError,
    ResumeError,
    TrainingDiverged,
    TrainingInterrupted,
)

__version__ = "0.1.0"

_moved.install()  # old module paths (kerakit.checkpoint, ...) keep working, with a warning

# public name -> module that defines it (loaded lazily; see __getattr__)
_LAZY = {
    # recipes (no TensorFlow)
    "load_recipe": "kerakit.recipe.loader",
    "Recipe": "kerakit.recipe.loader",
    # builders and presets
    "build_model": "kerakit.models.builders",
    "compile_model": "kerakit.models.compile",
    "infer_preset": "kerakit.models.compile",
    "PRESETS": "kerakit.recipe.compile",
    # data, augmentation, transfer learning, callbacks
    "load_data": "kerakit.data.bundle",
    "make_pipeline": "kerakit.data.pipeline",
    "DataBundle": "kerakit.data.bundle",
    "augmentation": "kerakit.augment.facade",
    "Augmentation": "kerakit.augment.facade",
    "strip_augmentation": "kerakit.augment.layer",
    "transfer_model": "kerakit.models.transfer",
    "set_stage": "kerakit.models.transfer",
    "make_callbacks": "kerakit.training.callbacks",
    # runs
    "train": "kerakit.training.run",
    "check": "kerakit.training.run",
    "lr_find": "kerakit.training.lr_find",
    "search": "kerakit.search",
    "load_run": "kerakit.runs",
    "evaluate": "kerakit.inference",
    "predict": "kerakit.inference",
    "Run": "kerakit.training.run",
    "save_model": "kerakit.saving.save",
    "load_model": "kerakit.saving.load",
    # pictures and reports
    "plot_history": "kerakit.report.plots",
    "plot_confusion": "kerakit.report.plots",
    "show_errors": "kerakit.report.plots",
    "show_batch": "kerakit.report.plots",
    "save_figure": "kerakit.report.plots",
    "classification_report": "kerakit.report.metrics",
    "confusion_matrix": "kerakit.report.metrics",
}

__all__ = [
    "__version__",
    "KerakitError",
    "RecipeError",
    "DataError",
    "ModelFileError",
    "ResumeError",
    "TrainingInterrupted",
    "TrainingDiverged",
    *_LAZY,
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kerakit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
