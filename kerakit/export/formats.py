"""Writing each artifact: Keras's own `model.export`, and the LiteRT converter to quantize.

    write_artifact(model, "onnx", folder)                       # folder/model.onnx
    write_artifact(model, "litert", folder, quantize="int8", representative=x_train)

An artifact takes the inputs the run's `model.keras` takes (its preprocessing travels
inside), under the Keras input names; `io_spec` records those names, shapes and dtypes.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kerakit._files import atomic_path
from kerakit.errors import KerakitError

# format -> (file name in RUN/export/, what Keras's `model.export` calls it)
FORMATS = {"savedmodel": "savedmodel", "onnx": "model.onnx", "litert": "model.tflite"}
KERAS_FORMAT = {"savedmodel": "tf_saved_model", "onnx": "onnx", "litert": "litert"}
# --quantize modes: a LiteRT artifact beside the float one, `model.MODE.tflite`
QUANTIZE = {
    "dynamic": "int8 weights, float activations (Optimize.DEFAULT)",
    "float16": "float16 weights (Optimize.DEFAULT, supported_types float16)",
    "int8": "int8 weights and activations, calibrated on training samples; float in and out",
}
# The runtime each format is loaded by in the gate: format -> (module, pip package)
RUNTIMES = {
    "savedmodel": ("tensorflow", "tensorflow"),
    "onnx": ("onnxruntime", "onnxruntime"),
    "litert": ("ai_edge_litert.interpreter", "ai-edge-litert"),
}
WRITERS = {"onnx": ("tf2onnx", "tf2onnx"), "onnx-model": ("onnx", "onnx")}
EXTRA = 'pip install "kerakit[export]"'
REPRESENTATIVE_SAMPLES = 200  # training samples that calibrate an int8 model


def artifact_name(fmt: str, quantize: str | None = None) -> str:
    """'litert', 'litert-int8', ...: the artifact's name in report.md and export.json."""
    return fmt if quantize is None else f"{fmt}-{quantize}"


def artifact_file(fmt: str, quantize: str | None = None) -> str:
    return FORMATS[fmt] if quantize is None else f"model.{quantize}.tflite"


def require(module: str, package: str, why: str) -> Any:
    """Import `module` or raise a KerakitError naming the package and the extra to install."""
    try:
        found = importlib.import_module(module)
    except ImportError:
        found = None
    if found is None:  # sys.modules[name] = None makes the import fail the same way
        raise KerakitError(
            f"{why} needs the {package} package, which is not installed: {EXTRA} "
            f"(or pip install {package})"
        )
    return found


def not_exportable(model: Any, fmt: str) -> str | None:
    """Why `model` cannot go to `fmt`, or None. ONNX and LiteRT take numbers only: a model
    that reads raw strings (text, a table's FeatureSpace) exports to a SavedModel only."""
    if fmt == "savedmodel":
        return None
    strings = [t.name for t in model.inputs if "string" in str(t.dtype)]
    if strings:
        return (
            f"its input{'s' if len(strings) > 1 else ''} {', '.join(strings)} take raw strings "
            f"(text or a table's columns, encoded inside the model), which {fmt} cannot hold; "
            "export it as savedmodel"
        )
    return None


def io_spec(model: Any) -> dict:
    """The artifact's inputs and outputs: names, shapes (None: any size) and dtypes."""

    def one(t: Any) -> dict:
        return {"name": t.name, "shape": [None if d is None else int(d) for d in t.shape],
                "dtype": str(getattr(t.dtype, "name", t.dtype))}  # fmt: skip

    return {"inputs": [one(t) for t in model.inputs], "outputs": [one(t) for t in model.outputs]}


def write_artifact(
    model: Any,
    fmt: str,
    folder: str | os.PathLike,
    *,
    quantize: str | None = None,
    representative: list | None = None,
) -> Path:
    """Write `model` as `fmt` into `folder`, atomically; returns the artifact's path.

    Args:
        model: a built `keras.Model` that has been called once (ONNX traces a call).
        fmt: "savedmodel", "onnx" or "litert".
        folder: where the artifact goes (`RUN/export/`).
        quantize: for "litert": "dynamic", "float16" or "int8" (`QUANTIZE`).
        representative: for int8: training inputs to calibrate on, one array per
            model input in Keras's order (`REPRESENTATIVE_SAMPLES` of them are used).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / artifact_file(fmt, quantize)
    if fmt == "onnx":
        for module, package in WRITERS.values():
            require(module, package, "exporting to onnx")
    with atomic_path(target) as tmp:
        if quantize is None:
            model.export(str(tmp), format=KERAS_FORMAT[fmt], verbose=False)
        else:
            names = [t.name for t in model.inputs]
            Path(tmp).write_bytes(_quantized(model, quantize, representative, names))
    return target


def _quantized(model: Any, mode: str, representative: list | None, names: list[str]) -> bytes:
    """A LiteRT flatbuffer converted from the model's SavedModel, quantized by `mode`."""
    import tensorflow as tf

    if mode not in QUANTIZE:
        raise KerakitError(f"--quantize {mode}: choose one of {', '.join(QUANTIZE)}")
    scratch = tempfile.mkdtemp(prefix="kerakit-quantize-")
    try:
        model.export(os.path.join(scratch, "sm"), format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(os.path.join(scratch, "sm"))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif mode == "int8":
            if representative is None:
                raise KerakitError("int8 quantization needs training samples to calibrate on")
            loaded = tf.saved_model.load(os.path.join(scratch, "sm"))
            signature = loaded.signatures["serving_default"].structured_input_signature[1]
            keys = list(signature) if len(signature) == 1 else names
            converter.representative_dataset = _samples(representative, keys)
            # integer kernels throughout; the input and output stay float32, so the same
            # raw values go in as into the .keras model
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        with warnings.catch_warnings():  # the calibrator's tf.lite.Interpreter deprecation
            warnings.simplefilter("ignore")
            return converter.convert()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _samples(arrays: list, keys: list[str], n: int = REPRESENTATIVE_SAMPLES) -> Callable:
    """The converter's representative data set: up to `n` samples, one at a time, as a
    dict by the SavedModel signature's input names."""
    count = min(n, len(arrays[0]))

    def samples():
        for i in range(count):
            yield {k: np.asarray(a[i : i + 1], "float32") for k, a in zip(keys, arrays)}

    return samples
