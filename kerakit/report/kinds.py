"""Which pictures fit a run: its task and the kind of its inputs, looked up in one table.

A classifier on images gets a confusion matrix and its most confidently wrong images;
a regression gets predicted vs true; an image-to-image model (a denoising autoencoder)
gets input / target / output triplets. `PICTURES` says which, as data: one row per
(task, input kind), `"*"` for any input kind. What a run does not get, `why_not` says
in one line of report.md.

    task = task_kind("regression", (120, 7), (1,))      # "regression"
    kind = input_kind((120, 7), "float32")               # "series"
    pictures_for(task, kind)                             # ("predictions.png", "forecast.png")
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

CLASSIFIER_PRESETS = ("multiclass", "multiclass_onehot", "binary")

# task -> how report.md names it
TASKS = {
    "classification": "a classifier",
    "multilabel": "a multilabel classifier",
    "regression": "a regression",
    "same_shape": "a model whose output has its input's shape (image-to-image)",
    "other": "a model with several outputs, or an output per pixel or step",
}
# input kind -> how report.md names it
INPUTS = {
    "image": "images",
    "series": "series (steps x features)",
    "table": "table rows",
    "text": "text",
    "named": "several named inputs",
    "flat": "flattened images (data.flatten)",
    "other": "inputs of rank 4 or more",
}
# The pictures of the test set, per (task, input kind); history.png comes with every run.
# "errors table" is not a picture: the most confidently wrong samples, listed in report.md.
PICTURES: dict[tuple[str, str], tuple[str, ...]] = {
    ("classification", "image"): ("confusion.png", "errors.png"),
    ("classification", "series"): ("confusion.png", "errors.png"),  # each error a line plot
    ("classification", "table"): ("confusion.png", "errors table"),
    ("classification", "text"): ("confusion.png", "errors table"),
    ("classification", "*"): ("confusion.png",),
    ("regression", "series"): ("predictions.png", "forecast.png"),  # a forecaster
    ("regression", "*"): ("predictions.png",),
    ("same_shape", "image"): ("samples.png",),
    ("same_shape", "series"): ("samples.png",),  # input / target / output as lines
}
# Every picture a run folder may hold besides history.png, in the order report.md shows them.
TEST_PICTURES = ("confusion.png", "errors.png", "predictions.png", "forecast.png", "samples.png")
# A classifier's interpretation (fastai's top losses, most confused, Grad-CAM), per input
# kind; drawn beside the pictures above when asked for (`write_run_pictures(interpret=True)`,
# as every `kerakit train` does). The top losses follow the errors: a picture where the
# errors are one, a table in report.md where they are a table; Grad-CAM needs images.
INTERPRETATION: dict[str, tuple[str, ...]] = {
    "image": ("top_losses.png", "gradcam.png", "most confused table"),
    "series": ("top_losses.png", "most confused table"),
    "table": ("top losses table", "most confused table"),
    "text": ("top losses table", "most confused table"),
    "*": ("most confused table",),
}
INTERPRET_PICTURES = ("top_losses.png", "gradcam.png")

# A rank-1 example this long (floats) is a series (a series classifier's rows), else a table row.
SERIES_LENGTH = 64


def pictures_for(task: str, inputs: str) -> tuple[str, ...]:
    """The test-set pictures (and "errors table") of a run of `task` on `inputs`."""
    return PICTURES.get((task, inputs), PICTURES.get((task, "*"), ()))


def interpretation_for(task: str, inputs: str) -> tuple[str, ...]:
    """The interpretation pictures and tables of a run of `task` on `inputs` (a classifier's)."""
    if task != "classification":
        return ()
    return INTERPRETATION.get(inputs, INTERPRETATION["*"])


def task_kind(preset: str | None, input_shape: Any, output_shape: Any, *, outputs: int = 1) -> str:
    """The task of a model, from its compile preset and its input and output shapes.

    A single output with the input's shape (rank 2 or more per example) is `"same_shape"`
    whatever the loss (mse or binary_crossentropy on pixels); a classifier preset with an
    output per pixel or step (segmentation) is `"other"`.

    Args:
        preset: the compile preset (`"multiclass"`, `"regression"`, ...); None: a
            classifier unless the output has the input's shape.
        input_shape: one example's shape (no batch axis), or a mapping for named inputs.
        output_shape: one example's output shape (no batch axis).
        outputs: how many outputs the model has.
    """
    if outputs != 1 or isinstance(output_shape, Mapping):
        return "other"
    out = _dims(output_shape)
    if not isinstance(input_shape, Mapping) and len(out) >= 2 and _dims(input_shape) == out:
        return "same_shape"
    if preset is None or preset in CLASSIFIER_PRESETS:
        return "classification" if len(out) <= 1 else "other"
    if preset in ("multilabel", "regression"):
        return preset
    return "other"


def input_kind(shape: Any, dtype: Any = None, *, flattened: bool = False,
               encoded: bool = False) -> str:  # fmt: skip
    """The kind of a model's inputs, from one example's shape and the dtype.

    Strings are `"text"`. Rank 3 per example is an image; rank 2 is a grayscale image
    when both sides are 8 or more and neither is over twice the other (28 x 28), else
    a series of steps x features ((500, 1), (120, 7)); rank 1 is a series when it holds
    `SERIES_LENGTH` floats or more, else a table row. Named inputs are a table when every
    one is a column (rank 0 or 1 of size 1), else `"named"`.

    Args:
        shape: one example's shape (no batch axis), or a mapping name -> shape.
        dtype: the inputs' dtype (a NumPy dtype, or a Keras name such as "string").
        flattened: the inputs are images flattened by the recipe (`data.flatten`).
        encoded: the inputs are a table's encoded features (a FeatureSpace).
    """
    if isinstance(shape, Mapping):
        columns = all(int(np.prod(_dims(s) or (1,))) == 1 for s in shape.values())
        return "table" if columns else "named"
    if _is_text(dtype):
        return "text"
    dims = _dims(shape)
    if len(dims) >= 4:
        return "other"
    if len(dims) == 3:
        return "image"
    if len(dims) == 2:
        small, large = sorted(d or 0 for d in dims)
        return "image" if small >= 8 and large <= 2 * small else "series"
    if flattened:
        return "flat"
    floats = dtype is None or _kind(dtype) == "f"
    long = bool(dims) and (dims[0] or 0) >= SERIES_LENGTH
    return "series" if floats and long and not encoded else "table"


def example_spec(x: Any) -> tuple[Any, Any]:
    """(one example's shape, dtype) of a batch of inputs: an array, or a dict of arrays
    (then a mapping name -> shape, and None)."""
    if isinstance(x, Mapping):
        return {k: np.shape(v)[1:] for k, v in x.items()}, None
    x = np.asarray(x)
    return x.shape[1:], x.dtype


def why_not(picture: str, task: str, inputs: str) -> str:
    """One line for report.md: why a run of `task` on `inputs` has no `picture`."""
    run = f"this run is {TASKS.get(task, task)} on {INPUTS.get(inputs, inputs)}"
    if picture == "confusion.png":
        if task == "multilabel":
            return f"a multilabel model gives a yes/no per label, not one class; {run}"
        return f"only a classifier has classes to confuse; {run}"
    if picture == "errors.png":
        if task == "classification" and "errors table" in pictures_for(task, inputs):
            return f"{run}: the most confidently wrong samples are the table above"
        if task == "classification":
            return f"{run}: there is no picture of one sample to draw"
        return f"only a classifier has wrong classes to show; {run}"
    if picture == "predictions.png":
        return f"predicted vs true is drawn for a regression; {run}"
    if picture == "forecast.png":
        return f"forecasts are drawn for a regression on series (a forecaster); {run}"
    if picture == "top_losses.png":
        if task == "classification" and "top losses table" in interpretation_for(task, inputs):
            return f"{run}: the samples with the highest loss are the table above"
        return f"only a classifier's samples with the highest loss are drawn; {run}"
    if picture == "gradcam.png":
        return f"Grad-CAM heat maps are drawn over a classifier's images; {run}"
    if picture == "samples.png":
        return f"input / target / output are drawn when the output has the input's shape; {run}"
    return run


def _dims(shape: Any) -> tuple:
    return tuple(None if d is None else int(d) for d in (shape or ()))


def _kind(dtype: Any) -> str:
    try:
        return np.dtype(dtype).kind
    except TypeError:  # a Keras name NumPy lacks ("bfloat16")
        return "f" if "float" in str(dtype) else "?"


def _is_text(dtype: Any) -> bool:
    if dtype is None:
        return False
    if str(dtype) == "string":  # a Keras input's dtype
        return True
    return _kind(dtype) in "OSU"
