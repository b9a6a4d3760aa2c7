"""Each artifact loaded by its own runtime, as a server would load it.

    run = open_artifact("onnx", "RUN/export/model.onnx", ["top", "bottom"])
    outputs = run([x_top, x_bottom])      # a list of arrays, in the Keras model's output order

TensorFlow serves the SavedModel (its `serve` endpoint), `onnxruntime` the ONNX file and
the LiteRT interpreter (`ai_edge_litert`) the `.tflite` file. Inputs are matched by the
Keras input name where the artifact has several, so the order never silently swaps them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from kerakit.errors import KerakitError
from kerakit.export.formats import RUNTIMES, require

Runner = Callable[[list], list]


def open_artifact(fmt: str, path: str | os.PathLike, input_names: list[str]) -> Runner:
    """A function from the Keras-ordered inputs to the Keras-ordered outputs (NumPy arrays),
    running the artifact at `path` in the runtime of `fmt` ("savedmodel", "onnx", "litert")."""
    module, package = RUNTIMES[fmt]
    runtime = require(module, package, f"checking a {fmt} artifact")
    path = os.fspath(path)
    if fmt == "savedmodel":
        return _saved_model(runtime, path, input_names)
    if fmt == "onnx":
        return _onnx(runtime, path, input_names)
    return _litert(runtime, path, input_names)


def _by_name(have: list[str], keras_names: list[str], what: str) -> list[str]:
    """The artifact's input names in the Keras model's input order."""
    if len(have) == 1 and len(keras_names) == 1:
        return list(have)
    if sorted(have) != sorted(keras_names):
        raise KerakitError(
            f"the {what} takes inputs {sorted(have)}, the Keras model {keras_names}; "
            "they must be the same names to be matched"
        )
    return list(keras_names)


def _saved_model(tf: Any, path: str, names: list[str]) -> Runner:
    loaded = tf.saved_model.load(path)
    serve = loaded.serve
    (structure,) = serve.input_signature

    def run(inputs: list) -> list:
        run.loaded = loaded  # the variables live as long as the function that reads them
        if isinstance(structure, dict):
            args = dict(zip(names, inputs))
        elif isinstance(structure, (list, tuple)):
            args = list(inputs)
        else:
            args = inputs[0]
        return [np.asarray(t) for t in tf.nest.flatten(serve(args))]

    return run


def _onnx(ort: Any, path: str, names: list[str]) -> Runner:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # no warnings about unused initializers on stderr
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    order = _by_name([i.name for i in session.get_inputs()], names, "ONNX file")

    def run(inputs: list) -> list:
        return [np.asarray(o) for o in session.run(None, dict(zip(order, inputs)))]

    return run


def _output_index(name: str) -> tuple[int, str]:
    m = re.search(r"(\d+)$", name)
    return (int(m.group(1)) if m else 0, name)


def _litert(litert: Any, path: str, names: list[str]) -> Runner:
    interpreter = litert.Interpreter(model_path=path)
    signatures = interpreter.get_signature_list()
    key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
    runner = interpreter.get_signature_runner(key)
    order = _by_name(list(signatures[key]["inputs"]), names, "LiteRT file")
    outputs = sorted(signatures[key]["outputs"], key=_output_index)  # output_0, output_1, ...
    dtypes = {d["name"]: d["dtype"] for d in runner.get_input_details().values()}
    dtypes = {k: dtypes.get(k, np.float32) for k in order}

    def run(inputs: list) -> list:
        # the runner resizes its input tensors to each batch's size
        got = runner(**{k: np.asarray(x, dtypes[k]) for k, x in zip(order, inputs)})
        return [np.asarray(got[k]) for k in outputs]

    return run


def keras_runner(model: Any, *, predict: bool = False) -> Runner:
    """The Keras model itself: a direct call (`model(x)`), or `model.predict` (which carries
    its own overhead per call: a data adapter, a callback list, a progress bar off)."""
    import keras

    names = [t.name for t in model.inputs]
    single = len(names) == 1

    def pack(inputs: list) -> Any:
        if single:
            return inputs[0]
        return dict(zip(names, inputs)) if isinstance(model.input, dict) else list(inputs)

    def run(inputs: list) -> list:
        if predict:
            out = model.predict(pack(inputs), verbose=0)
        else:
            out = model(pack(inputs), training=False)
        if isinstance(out, dict):  # named outputs: in the model's output order
            out = [out[n] for n in model.output_names]
        flat = out if isinstance(out, (list, tuple)) else [out]
        return [np.asarray(keras.ops.convert_to_numpy(o)) for o in flat]

    return run
