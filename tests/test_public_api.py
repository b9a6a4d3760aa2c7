"""The public surface is pinned: a change to it is a deliberate change to this list."""

import importlib
import subprocess
import sys

import kerakit as kk

PUBLIC = {
    "__version__", "KerakitError", "RecipeError", "DataError", "ModelFileError", "ResumeError",
    "TrainingInterrupted", "TrainingDiverged", "strip_augmentation", "set_stage",
    "load_recipe", "Recipe", "build_model", "compile_model", "infer_preset", "PRESETS",
    "load_data", "make_pipeline", "DataBundle", "augmentation", "Augmentation", "transfer_model",
    "make_callbacks", "train", "check", "lr_find", "search", "load_run", "evaluate", "predict",
    "Run", "save_model", "load_model",
    "plot_history", "plot_confusion", "show_errors", "show_batch", "save_figure",
    "classification_report", "confusion_matrix",
}  # fmt: skip


def test_public_surface_is_pinned():
    assert set(kk.__all__) == PUBLIC


def test_every_public_name_resolves():
    for name in kk.__all__:
        assert getattr(kk, name) is not None, name


def test_lazy_names_come_from_their_modules():
    assert kk.build_model is importlib.import_module("kerakit.models.builders").build_model
    assert kk.train is importlib.import_module("kerakit.training.run").train


def test_import_has_no_side_effects():
    code = "import kerakit"  # and no TensorFlow: test_architecture.py
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""
