"""A finished run as `kerakit serve` holds it: opened once, each request checked, one
compiled call per batch, and the answer `kerakit predict` prints.

    served = ServedModel("runs/digits-cnn/20261205-183901")
    x, n, labels = served.from_json({"inputs": [[...8x8x1...]]}, max_batch=256)
    outputs = served.predict(x)                      # in the batcher's worker thread
    rows = served.rows(outputs, labels, top=3)       # [{"input": 0, "top": [...]}, ...]

Inputs are raw, as `kerakit predict` takes them from a .npy (scikit-learn's digits: pixels
0-16); the run's own preparation (rescale, resize, normalize, flatten) is applied here, as
in training. Image files get their 0-255 pixels mapped to the run's training range.
"""

from __future__ import annotations

import math
import os
import re
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kerakit._files import read_json
from kerakit.errors import KerakitError, did_you_mean
from kerakit.inference import model_inputs, open_run, prediction_rows, read_inputs
from kerakit.recipe.features import table_features
from kerakit.training.runfolder import CLASSES_FILE, INPUTS_FILE


class RequestError(KerakitError, ValueError):
    """A request the model cannot take: answered with `status` (400) and this message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class InputSpec:
    """One input as a request gives it: one example's raw shape (None: any size on that
    axis; `shape` None: any shape holding `size` values, which the run flattens)."""

    name: str
    shape: tuple | None
    dtype: str
    size: int | None = None

    def describe(self) -> dict:
        shape = None if self.shape is None else list(self.shape)
        return {"name": self.name, "shape": shape, "dtype": self.dtype, "size": self.size}


class ServedModel:
    """A run folder (or model file) opened for serving.

    Args:
        run_or_model: a run folder, or a `.keras`/`.h5`/SavedModel path.
        trusted: allow code in the model file (`--unsafe`; see docs/security.md).
    """

    def __init__(self, run_or_model: str | os.PathLike, *, trusted: bool = False) -> None:
        self.source = str(run_or_model)
        self.model, self.recipe, self.folder = open_run(run_or_model, trusted)
        data = self.recipe["data"] if self.recipe is not None else {}
        self.inputs = _input_specs(self.model, data)
        self.classes = self._folder_json(CLASSES_FILE, None)
        self.raw_outputs = _raw_outputs(self.model)
        self.call, self.compiled = self._compile()

    def _folder_json(self, name: str, default: Any) -> Any:
        path = self.folder / name if self.folder is not None else None
        return read_json(path) if path is not None and path.is_file() else default

    # ------------------------------------------------------------------ requests

    def from_json(self, body: Any, max_batch: int) -> tuple[Any, int, list]:
        """(inputs, examples, labels) of a JSON body `{"inputs": ...}`; RequestError if unfit."""
        if not isinstance(body, Mapping) or "inputs" not in body:
            keys = list(body) if isinstance(body, Mapping) else []
            hint = did_you_mean(keys[0], ["inputs"]) if len(keys) == 1 else ""
            raise RequestError(
                f'the JSON body must be an object {{"inputs": ...}}{hint}; got '
                + (f"keys {keys}" if isinstance(body, Mapping) else f"a {_json_type(body)}")
            )
        if extra := [k for k in body if k != "inputs"]:
            raise RequestError(f'unknown keys {extra} in the body: it holds only "inputs"')
        value = body["inputs"]
        names = [spec.name for spec in self.inputs]
        if isinstance(value, Mapping):
            if missing := [n for n in names if n not in value]:
                raise RequestError(f"inputs: missing {missing}; this model takes {names}")
            if unknown := [k for k in value if k not in names]:
                hint = did_you_mean(unknown[0], names)
                raise RequestError(f"inputs: unknown {unknown}{hint}; this model takes {names}")
            arrays = {s.name: _fit(_array(value[s.name], s, f"inputs[{s.name!r}]"), s,
                                   f"inputs[{s.name!r}]") for s in self.inputs}  # fmt: skip
            sizes = {k: len(v) for k, v in arrays.items()}
            if len(set(sizes.values())) > 1:
                raise RequestError(f"inputs: every input needs the same number of examples; got {sizes}")  # fmt: skip
            x = arrays if len(self.inputs) > 1 else arrays[names[0]]
        elif len(self.inputs) > 1:
            raise RequestError(
                f"this model takes several inputs {names}: send "
                '{"inputs": {"' + names[0] + '": [...], ...}}'
            )
        else:
            x = _fit(_array(value, self.inputs[0], "inputs"), self.inputs[0], "inputs")
        n = len(next(iter(x.values())) if isinstance(x, dict) else x)
        _check_batch(n, max_batch)
        return x, n, list(range(n))

    def from_files(self, files: list[tuple[str, bytes]], max_batch: int) -> tuple[Any, int, list]:
        """(inputs, examples, labels) of uploaded files, read as `kerakit predict` reads them:
        images (decoded, resized, mapped to the training range), or one .npy/.npz/.csv; a text
        model's .txt files. Runs outside the event loop (decoding takes time)."""
        if not files:
            raise RequestError("the multipart body holds no files: send each input as a file part")
        _check_batch(len(files), max_batch)  # before decoding any: one file, one example at least
        with tempfile.TemporaryDirectory(prefix="kerakit-serve-") as tmp:
            paths = []
            for i, (name, content) in enumerate(files):
                (Path(tmp) / str(i)).mkdir()
                path = Path(tmp) / str(i) / _safe_name(name, i)
                path.write_bytes(content)
                paths.append(str(path))
            try:
                from kerakit.data.text import predict_texts, takes_text

                if takes_text(self.model):
                    data = self.recipe["data"] if self.recipe is not None else None
                    x, labels = predict_texts(paths, [], self.model, data)
                    x = np.asarray(x.numpy(), dtype=object)  # batched with JSON's texts
                else:
                    x, labels = read_inputs(paths, self.model, self.recipe, self.folder)
            except KerakitError as exc:  # the file as the client named it, not our copy
                raise RequestError(_client_names(str(exc), tmp, len(files))) from None
            labels = [_client_names(str(label), tmp, len(files)) for label in labels]
        n = len(next(iter(x.values())) if isinstance(x, dict) else x)
        _check_batch(n, max_batch)
        return x, n, labels

    # ------------------------------------------------------------------ the model

    def predict(self, x: Any) -> Any:
        """The model's outputs (NumPy) on a batch of raw inputs, prepared as in training."""
        out = self.call(x)
        if isinstance(out, Mapping):
            return {k: np.asarray(v) for k, v in out.items()}
        if isinstance(out, (list, tuple)):
            return [np.asarray(v) for v in out]
        return np.asarray(out)

    def _compile(self):
        """The run's preparation and `model(x, training=False)` as one tf.function (one
        graph call per batch; no retracing per batch size: it generalizes the batch axis
        after two sizes, both run here), else Keras's predict_on_batch."""
        import tensorflow as tf

        model, recipe, folder = self.model, self.recipe, self.folder

        def prepared_call(x):
            return model(model_inputs(model, recipe, folder, x), training=False)

        self.call = tf.function(prepared_call, reduce_retracing=True)
        try:
            for n in (1, 2):
                if (example := self._example(n)) is not None:
                    self.predict(example)
            return self.call, True
        except Exception as exc:  # a model that cannot be traced: Keras's own call
            print(f"kerakit serve: the compiled call failed ({type(exc).__name__}: "
                  f"{str(exc)[:200]}); serving through model.predict_on_batch", file=sys.stderr)  # fmt: skip
            return lambda x: model.predict_on_batch(model_inputs(model, recipe, folder, x)), False

    def _example(self, n: int) -> Any:
        """A batch of `n` blank raw inputs, to trace the call before the first request."""
        if self.recipe is not None and table_features(self.recipe["data"]):
            return None
        out = {}
        for spec, tensor in zip(self.inputs, self.model.inputs):
            model_shape = [d or 1 for d in tensor.shape[1:]]
            if spec.dtype == "string":
                out[spec.name] = np.array([""] * n, dtype=object)
                continue
            if spec.shape is None:
                shape = [spec.size]
            else:
                shape = [d or (model_shape[i] if i < len(model_shape) else 1)
                         for i, d in enumerate(spec.shape)]  # fmt: skip
            out[spec.name] = np.zeros([n, *shape], dtype=spec.dtype)
        return out if len(out) > 1 else next(iter(out.values()))

    # ------------------------------------------------------------------ answers

    def rows(self, outputs: Any, labels: list, top: int = 3) -> list[dict]:
        """Per input what `kerakit predict --output p.json` holds; raw outputs of a model
        with several outputs, or of an image-to-image one."""
        if not self.raw_outputs:
            return prediction_rows(outputs, labels, self.recipe, self.folder, top=top,
                                   print_fn=_quiet)  # fmt: skip
        if isinstance(outputs, (list, tuple, Mapping)):
            named = (
                outputs
                if isinstance(outputs, Mapping)
                else dict(zip(_output_names(self.model), outputs))
            )
            return [{"input": label, "outputs": {k: v[i].tolist() for k, v in named.items()}}
                    for i, label in enumerate(labels)]  # fmt: skip
        return [{"input": label, "output": outputs[i].tolist()} for i, label in enumerate(labels)]

    def metadata(self) -> dict:
        """What a client needs to call the model: its inputs, outputs, classes, versions."""
        import keras
        import tensorflow as tf

        from kerakit import __version__

        outputs = [{"name": name, "shape": list(t.shape[1:]), "dtype": str(t.dtype)}
                   for name, t in zip(_output_names(self.model), self.model.outputs)]  # fmt: skip
        preset = self.recipe["compile"]["preset"] if self.recipe is not None else None
        return {
            "model": self.source,
            "run_folder": str(self.folder) if self.folder is not None else None,
            "task": preset,
            "inputs": [s.describe() for s in self.inputs],
            "outputs": outputs,
            "classes": self.classes,
            "image_value_range": self._folder_json(INPUTS_FILE, {}).get("value_range"),
            "answer": "raw outputs" if self.raw_outputs else "top classes (as kerakit predict)",
            "compiled_call": self.compiled,
            "versions": {
                "kerakit": __version__,
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
                "python": sys.version.split()[0],
            },  # fmt: skip
        }


# ---------------------------------------------------------------------- helpers


def _quiet(*_args, **_kwargs) -> None:
    pass


def _input_specs(model, data: Mapping) -> list[InputSpec]:
    """Each input's raw shape: the model's, unless the run resizes or flattens its inputs."""
    specs = []
    features = bool(table_features(data)) if data else False
    for tensor in model.inputs:
        shape, dtype = tuple(tensor.shape[1:]), str(tensor.dtype)
        name, size = tensor.name, None
        if features:  # a table's raw columns: the model's FeatureSpace checks them
            shape = None
        elif data.get("flatten"):
            shape, size = None, math.prod(d or 1 for d in shape)
        elif data.get("image_size") and len(shape) == 3:  # any size: resized as in training
            shape = (None, None, shape[2])
        specs.append(InputSpec(name, shape, dtype, size))
    return specs


def _raw_outputs(model) -> bool:
    """Whether the answer is the model's raw outputs (several, or image-to-image)."""
    from kerakit.report.kinds import task_kind

    ins, outs = model.inputs, model.outputs
    if len(outs) != 1:
        return True
    shapes = (tuple(ins[0].shape[1:]), tuple(outs[0].shape[1:]))
    return len(ins) == 1 and task_kind(None, *shapes, outputs=1) == "same_shape"


def _output_names(model) -> list[str]:
    names = list(getattr(model, "output_names", None) or [])
    if len(names) != len(model.outputs) or len(set(names)) != len(names):
        names = [f"output_{i}" for i in range(len(model.outputs))]
    return names


def _json_type(value: Any) -> str:
    return {list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _array(value: Any, spec: InputSpec, where: str) -> np.ndarray:
    """`value` (nested JSON lists) as an array of the input's dtype; RequestError if it is not."""
    if spec.dtype == "string":
        arr = np.asarray(value, dtype=object)
        if not all(isinstance(v, str) for v in arr.reshape(-1)):
            raise RequestError(f"{where}: this input takes strings (texts); got other values")
        return arr
    try:
        arr = np.asarray(value)
    except ValueError:
        raise RequestError(
            f"{where}: the lists are ragged; every example must have the shape {_shape_text(spec)}"
        ) from None
    kinds = "bi" if spec.dtype.startswith(("int", "uint", "bool")) else "biuf"
    if arr.dtype.kind not in kinds:
        got = {"U": "strings", "O": "nulls or mixed values", "f": "floats"}.get(arr.dtype.kind, str(arr.dtype))  # fmt: skip
        want = "integers" if kinds == "bi" else "numbers"
        raise RequestError(f"{where}: this input takes {want} ({spec.dtype}); got {got}")
    return arr.astype(spec.dtype, copy=False)


def _fit(arr: np.ndarray, spec: InputSpec, where: str) -> np.ndarray:
    """A batch of examples of the input's shape (one example gets its batch axis added)."""
    if spec.shape is None and spec.size is None:
        return arr if arr.ndim else arr[None]
    if spec.shape is None:  # flattened by the run: any shape holding `size` values
        if arr.ndim >= 2 and math.prod(arr.shape[1:]) == spec.size:
            return arr
        if arr.size == spec.size:
            return arr.reshape(1, -1)
        raise RequestError(
            f"{where}: each example must hold {spec.size} values (the run flattens them); "
            f"got an array of shape {tuple(arr.shape)}"
        )

    def fits(shape: tuple) -> bool:
        return len(shape) == len(spec.shape) and all(
            w is None or w == g for w, g in zip(spec.shape, shape)
        )

    if arr.ndim and fits(arr.shape[1:]):
        return arr
    if fits(arr.shape):
        return arr[None]
    dims = ", ".join("any" if d is None else str(d) for d in spec.shape)
    got = arr.shape if arr.ndim == len(spec.shape) else arr.shape[1:]  # one example, or a batch
    raise RequestError(
        f"{where}: examples of shape {tuple(got)} do not fit the model, which takes "
        f"{_shape_text(spec)} per example (a batch: (n, {dims}))"
    )


def _shape_text(spec: InputSpec) -> str:
    if spec.shape is None:
        return f"any shape of {spec.size} values"
    dims = ", ".join("any" if d is None else str(d) for d in spec.shape)
    return f"({dims}{',' if len(spec.shape) == 1 else ''})"


def _check_batch(n: int, max_batch: int) -> None:
    if n == 0:
        raise RequestError("the request holds no examples")
    if n > max_batch:
        raise RequestError(
            f"the request holds {n} examples; this server takes at most {max_batch} per "
            "request (--max-batch): split it into smaller requests"
        )


def _safe_name(name: str, i: int) -> str:
    """An upload's base name, fit to be a file name here (no folders, no `..`, not too long)."""
    base = re.sub(r"[\x00-\x1f/\\:]", "_", name.replace("\\", "/").rsplit("/", 1)[-1])
    stem, dot, suffix = base.rpartition(".")
    if len(base) > 120:
        base = (stem[:100] + dot + suffix[:16]) if dot else base[:120]
    return base if base.strip(".") else f"input-{i}"


def _client_names(text: str, tmp: str, count: int) -> str:
    """`/tmp/kerakit-serve-x/3/photo.png` (our copy of an upload) -> `photo.png`."""
    for i in range(count):
        text = text.replace(os.path.join(tmp, str(i), ""), "")
    return text
