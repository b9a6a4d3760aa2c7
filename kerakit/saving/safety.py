"""Allowlist check of model files before Keras parses them.

Keras's ``safe_mode`` is a denylist of known gadgets: every recent CVE
(CVE-2025-1550, CVE-2025-9905/9906, CVE-2026-1462, CVE-2026-0897) was a way
around the list as it stood. kerakit therefore reads the model's
configuration itself, with bounded reads, and checks it against an
ALLOWLIST before Keras sees a byte of it:

- every serialized object names a module under ``keras``'s modelling
  packages (layers, models, optimizers, losses, metrics, initializers,
  regularizers, constraints, activations, dtype policies, ops) or
  ``kerakit``, or a name registered with
  ``keras.saving.register_keras_serializable``, or one of the few Keras layers
  exported elsewhere (`ALLOWED_CLASSES`: ``keras.utils.FeatureSpace``); the class
  must exist there and be a Keras saveable class;
- a function reference must name a Keras activation, loss, metric or op;
- no ``Lambda``, no ``TFSMLayer``, no Python lambda, no lookup layer
  (``StringLookup``, ``IntegerLookup``, ``TextVectorization``) whose
  vocabulary is a path or a URL, no object name holding ``..``, ``/`` or ``\\``.

A refusal is a `ModelFileError` that states the risk and the one opt-in:
``load_model(path, trusted=True)`` (``--unsafe`` on the command line).

The loading bounds (what a file may unpack to) are `kerakit.saving.bounds`; a
SavedModel folder, a graph rather than a config, is checked by
`kerakit.saving.savedmodel`.

    from kerakit.saving.safety import check_model_file
    check_model_file("runs/digits/1/model.keras")   # raises ModelFileError if refused
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import zipfile
from typing import Any

from kerakit.errors import ModelFileError
from kerakit.saving.bounds import check_h5_bounds, check_weights_member, check_zip_bounds
from kerakit.saving.refusals import MAX_CONFIG_BYTES, MAX_ZIP_MEMBERS, refuse

MAX_OBJECTS = 1_000_000  # dicts + lists walked

# Modules whose classes may appear in a model config ("keras" alone is exact).
_MODEL_PACKAGES = (
    "layers",
    "models",
    "optimizers",
    "losses",
    "metrics",
    "initializers",
    "regularizers",
    "constraints",
    "activations",
    "dtype_policies",
    "ops",
    "backend",
    "quantizers",
    "random",
)
ALLOWED_MODULE_ROOTS = tuple(
    [f"keras.{p}" for p in _MODEL_PACKAGES] + [f"keras.src.{p}" for p in _MODEL_PACKAGES]
)
# Where a serialized *function* may come from (Keras writes "builtins" for its own).
_FUNCTION_MODULES = ("activations", "losses", "metrics", "ops")
DENIED_CLASSES = {
    "Lambda": "a Lambda layer holds Python bytecode that runs when the model is built",
    "TFSMLayer": "a TFSMLayer loads and runs a TensorFlow graph from a path named in the file",
    "__lambda__": "a serialized Python lambda runs arbitrary code",
}
LOOKUP_LAYERS = {"StringLookup", "IntegerLookup", "TextVectorization"}
# Keras layers exported outside the modelling packages, by exact name: a FeatureSpace (in
# `keras.utils`, beside file and download helpers, which stay refused) is a layer whose parts
# (its preprocessing layers, features and crosses) are checked one by one like any config.
ALLOWED_CLASSES = {"keras.utils": ("FeatureSpace",)}


def check_model_file(path: str | os.PathLike) -> None:
    """Check a `.keras` or `.h5` model file against kerakit's allowlist.

    Reads only the file's configuration (bounded), never its weights, and
    never lets Keras parse it. Raises `ModelFileError` when the file is
    corrupt or names anything outside the allowlist.

    Args:
        path: a `.keras` archive or a legacy `.h5` file.

    Example:
        >>> check_model_file("model.keras")  # doctest: +SKIP
    """
    path = os.fspath(path)
    if path.endswith(".h5") or path.endswith(".hdf5"):
        configs = h5_configs(path)
    else:
        configs = [keras_archive_config(path)]
    for config in configs:
        check_config(config, path)


def keras_archive_config(path: str) -> Any:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise ModelFileError(f"{path}: the model file is corrupt or truncated ({e})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ZIP_MEMBERS:
            raise refuse(path, f"the archive holds {len(infos)} entries")
        for info in infos:
            name = info.filename
            if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/"):
                raise refuse(path, f"the archive entry {name!r} points outside the archive")
        file_bytes = os.path.getsize(path)
        check_zip_bounds(infos, file_bytes, path, "the archive")
        try:
            info = archive.getinfo("config.json")
        except KeyError:
            raise ModelFileError(
                f"{path}: the model file is corrupt: it has no config.json"
            ) from None
        if info.file_size > MAX_CONFIG_BYTES:
            raise refuse(path, f"its config.json is {info.file_size} bytes")
        try:
            with archive.open(info) as f:
                raw = f.read(MAX_CONFIG_BYTES + 1)  # bounded even if the header lies
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            raise ModelFileError(f"{path}: the model file is corrupt ({e})") from None
        if len(raw) > MAX_CONFIG_BYTES:
            raise refuse(path, "its config.json is larger than it claims")
        check_weights_member(archive, path, file_bytes)
    return _parse_json(raw, path)


def h5_configs(path: str) -> list:
    import h5py

    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as e:
        raise ModelFileError(f"{path}: the model file is corrupt or truncated ({e})") from None
    out = []
    with f:
        for key in ("model_config", "training_config"):
            if key not in f.attrs:
                continue
            if f.attrs.get_id(key).get_storage_size() > MAX_CONFIG_BYTES:
                raise refuse(path, f"its {key} is too large")
            raw = f.attrs[key]
            out.append(_parse_json(raw, path))
        if not out:
            raise ModelFileError(
                f"{path}: this .h5 file holds no model (only weights?); "
                "load it with model.load_weights into a built model"
            )
        check_h5_bounds(f, path, os.path.getsize(path), "the file")
    return out


def _parse_json(raw: Any, path: str) -> Any:
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ModelFileError(
                f"{path}: the model file is corrupt (config is not UTF-8)"
            ) from None
    try:
        return json.loads(raw)
    except RecursionError:
        raise refuse(path, "its configuration is nested too deeply") from None
    except ValueError as e:
        raise ModelFileError(f"{path}: the model file is corrupt (bad config: {e})") from None


def check_config(config: Any, path: Any = "<config>") -> None:
    """Walk a model configuration (plain JSON values) and refuse what is not allowed."""
    import keras  # noqa: F401  (class lookups need Keras's modules loaded)

    stack = [(config, "")]
    seen = 0
    while stack:
        node, where = stack.pop()
        seen += 1
        if seen > MAX_OBJECTS:
            raise refuse(path, "its configuration is too large")
        if isinstance(node, dict):
            if "class_name" in node:
                _check_object(node, where, path)
            name = node.get("name")
            if isinstance(name, str) and (".." in name or "/" in name or "\\" in name):
                raise refuse(path, f"the name {name!r} at {where or 'top'} holds a path")
            for key, value in node.items():
                if isinstance(value, (dict, list)):
                    stack.append((value, f"{where}.{key}" if where else str(key)))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                if isinstance(value, (dict, list)):
                    stack.append((value, f"{where}[{i}]"))


def _check_object(node: dict, where: str, path: Any) -> None:
    class_name = node.get("class_name")
    at = f" at {where}" if where else ""
    if not isinstance(class_name, str):
        raise refuse(path, f"a class name{at} is not a string")
    if class_name in DENIED_CLASSES:
        raise refuse(path, f"it holds a {class_name}{at}: {DENIED_CLASSES[class_name]}")
    if class_name in LOOKUP_LAYERS:
        config = node.get("config") or {}
        for key in ("vocabulary", "vocabulary_file"):
            vocab = config.get(key) if isinstance(config, dict) else None
            if isinstance(vocab, str):
                raise refuse(
                    path, f"the {class_name}{at} reads its {key} from {vocab!r} (a path or URL)"
                )
    if class_name.startswith("__") and class_name.endswith("__"):
        # Keras's own value wrappers (__tensor__, __numpy__, __keras_tensor__, ...).
        if class_name in (
            "__tensor__",
            "__numpy__",
            "__bytes__",
            "__ellipsis__",
            "__slice__",
            "__keras_tensor__",
            "__typespec__",
        ):
            return
        raise refuse(path, f"it holds an unknown special object {class_name!r}{at}")
    module = node.get("module")
    registered = node.get("registered_name")
    if class_name == "function":
        _check_function(node.get("config"), module, where, path)
        return
    if isinstance(registered, str) and registered != class_name and _registered(registered):
        return
    if module is None:  # legacy (Keras 2 / .h5) configs carry no module
        if _find_class(class_name) or _registered(class_name):
            return
        raise refuse(path, f"{class_name!r}{at} is not a Keras class or a registered name")
    if not isinstance(module, str):
        raise refuse(path, f"the module{at} is not a string")
    if module.startswith("kerakit"):
        obj = _attr(module, class_name)
        if isinstance(obj, type) and _registered_obj(obj):
            return
        raise refuse(path, f"{module}.{class_name}{at} is not a registered kerakit class")
    if class_name in ALLOWED_CLASSES.get(module, ()):
        return
    if module == "keras" or module.startswith(ALLOWED_MODULE_ROOTS):
        from keras.src import api_export

        obj = api_export.get_symbol_from_name(f"{module}.{class_name}")
        if obj is None and module.startswith("keras.src."):
            obj = _attr(module, class_name)
        if _saveable_class(obj):
            return
        raise refuse(path, f"{module}.{class_name}{at} is not a Keras modelling class")
    raise refuse(path, f"{module}.{class_name}{at} comes from outside Keras's modelling modules")


def _check_function(name: Any, module: Any, where: str, path: Any) -> None:
    at = f" at {where}" if where else ""
    if not isinstance(name, str) or not isinstance(module, (str, type(None))):
        raise refuse(path, f"a function reference{at} is malformed")
    if _registered(name):
        return
    if module in (None, "builtins") or module.startswith(ALLOWED_MODULE_ROOTS):
        from keras.src import api_export

        for package in _FUNCTION_MODULES:
            if (module or "builtins") != "builtins" and package not in module.split("."):
                continue
            if callable(api_export.get_symbol_from_name(f"keras.{package}.{name}")):
                return
    raise refuse(
        path,
        f"the function {module}.{name}{at} is not a Keras activation, loss, metric or op",
    )


def _attr(module: str, name: str) -> Any:
    mod = sys.modules.get(module)
    if mod is None:
        try:  # only Keras modelling packages and kerakit reach here
            mod = importlib.import_module(module)
        except Exception:
            return None
    return vars(mod).get(name)


def _saveable_class(obj: Any) -> bool:
    # Keras rebuilds an object with cls.from_config(config): a class without it
    # cannot be a modelling object (initializers are not KerasSaveable, so that
    # is no test).
    return isinstance(obj, type) and callable(getattr(obj, "from_config", None))


def _find_class(name: str) -> bool:
    import keras
    from keras.src.models import functional

    for mod in (
        keras,
        functional,
        keras.layers,
        keras.models,
        keras.optimizers,
        keras.losses,
        keras.metrics,
        keras.initializers,
        keras.regularizers,
        keras.constraints,
        keras.dtype_policies,
    ):
        if _saveable_class(getattr(mod, name, None)):
            return True
    return False


def _registered(name: str) -> bool:
    import keras

    return ">" in name and keras.saving.get_registered_object(name) is not None


def _registered_obj(obj: Any) -> bool:
    import keras

    return keras.saving.get_registered_name(obj) != obj.__name__
