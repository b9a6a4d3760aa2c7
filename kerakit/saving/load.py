"""`load_model`: a `.keras`, a legacy `.h5`, a SavedModel or a run folder, checked first.

    same = kk.load_model("runs/digits/1")              # picks model.keras
    server = kk.load_model("runs/digits/1/savedmodel")  # inference only: .predict(x)

`.keras` and `.h5` files are checked against kerakit's allowlist
(`kerakit.saving.safety`) before Keras parses them, and Keras's safe mode is
never turned off unless asked for that one call with ``trusted=True``. A
SavedModel's graph is checked against an allowlist of ops before TensorFlow
loads it. The loading bounds (what a file may unpack to) hold even when trusted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kerakit._compat import compile_legacy_h5
from kerakit._files import read_json
from kerakit.errors import ModelFileError
from kerakit.recipe.usercode import CODE_FILE, import_recorded
from kerakit.saving import safety, savedmodel
from kerakit.saving.refusals import refuse
from kerakit.saving.save import FORMATS


def load_model(
    path: str | os.PathLike,
    *,
    trusted: bool = False,
    compile: bool = True,
    custom_objects: dict | None = None,
) -> Any:
    """Load a model from a `.keras` file, a legacy `.h5`, a SavedModel or a run folder.

    A run folder gives its `model.keras`, else `model.h5`, else `savedmodel/`.
    A SavedModel loads as an inference-only `keras.Model` (one
    `keras.layers.TFSMLayer` behind an `Input`): `.predict(x)` works and
    returns NumPy arrays; `fit`, `evaluate` and further saving do not.

    Untrusted by default: a `.keras` / `.h5` is checked against kerakit's
    allowlist before Keras parses it (see `kerakit.saving.safety` and
    docs/security.md) and Keras's safe mode stays on; a SavedModel's graph may
    hold only the ops an inference model needs (no file, summary, Python,
    data-set or checkpoint-by-path ops, no assets). `trusted=True` skips
    these checks and turns safe mode off for this one call only; use it
    only for files whose maker you trust. A file that would unpack to far
    more than it stores (a decompression bomb) is refused either way.

    Args:
        path: a model file, a SavedModel folder or a run folder.
        trusted: load a file that may run code (Lambda layers, a SavedModel that reads
            files, ...). Default False.
        compile: restore the optimizer, loss and metrics (default True).
        custom_objects: passed to Keras for classes that are not registered.

    Returns:
        A `keras.Model`.

    Raises:
        ModelFileError: missing ("not found"), corrupt ("corrupt") or refused.

    Example:
        >>> model = load_model("runs/digits/1")  # doctest: +SKIP
        >>> model.predict(x_test)  # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: model file or run folder not found")
    _register_kerakit_layers()
    if path.is_dir():
        if (path / "saved_model.pb").exists():
            return _load_saved_model(path, trusted)
        if (path / CODE_FILE).is_file():  # a run of a recipe with `imports:`: the same code
            import_recorded(read_json(path / CODE_FILE).get("code", []), path, trusted=trusted)
        for name in FORMATS.values():
            if (path / name).exists():
                return load_model(
                    path / name, trusted=trusted, compile=compile, custom_objects=custom_objects
                )
        raise ModelFileError(
            f"{path}: no model here: expected one of {', '.join(FORMATS.values())} "
            "(a run folder) or saved_model.pb (a SavedModel)"
        )
    with open(path, "rb") as f:
        magic = f.read(8)
    if path.suffix in (".h5", ".hdf5") or magic.startswith(b"\x89HDF"):
        return _load_h5(path, trusted, compile, custom_objects)
    if path.suffix == ".keras" or magic.startswith(b"PK"):
        return _load_keras(path, trusted, compile, custom_objects)
    raise ModelFileError(
        f"{path}: not a model file kerakit knows (.keras, .h5, a SavedModel folder or a "
        "run folder), or it is corrupt"
    )


def _register_kerakit_layers() -> None:
    """Import the modules that register kerakit's own layers, so its models reload with no
    custom_objects (registration happens when the module is imported)."""
    import kerakit.augment.layer  # noqa: F401  (kerakit>AugmentLayer)
    import kerakit.data.text  # noqa: F401  (kerakit>strip_html, a TextVectorization's standardize)
    import kerakit.models.layers  # noqa: F401  (kerakit>BackbonePreprocess)


HUB_PREFIX = "keras_hub>"  # how KerasHub registers its classes


def _keras_hub_classes(configs: list, path: Path, trusted: bool) -> None:
    """Import keras_hub when a model names its classes (a transfer model on a KerasHub
    backbone, `kerakit.models.hub`): they are registered only then. Untrusted, only its
    backbones and image converters may appear, the classes kerakit builds: the rest (a
    tokenizer reads the vocabulary file its config names, ...) stay refused."""
    names, stack = set(), list(configs)
    while stack:  # the configs are bounded (safety.MAX_CONFIG_BYTES)
        node = stack.pop()
        if isinstance(node, dict):
            name = node.get("registered_name")
            if isinstance(name, str) and name.startswith(HUB_PREFIX):
                names.add(name)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    if not names:
        return
    try:
        import keras_hub
    except ImportError:
        raise ModelFileError(
            f"{path}: the model holds KerasHub classes ({', '.join(sorted(names))}); "
            'install keras-hub to load it: pip install "kerakit[hub]"'
        ) from None
    import keras

    allowed = (keras_hub.models.Backbone, keras_hub.layers.ImageConverter)
    for name in sorted(names) if not trusted else ():
        cls = keras.saving.get_registered_object(name)
        if not (isinstance(cls, type) and issubclass(cls, allowed)):
            raise refuse(
                path, f"it holds {name}, a KerasHub class that is not a backbone or an image "
                "converter (the KerasHub classes kerakit loads)"
            )  # fmt: skip


def _keras_error(path: Path, e: Exception) -> ModelFileError:
    text = str(e)
    # Keras reports a torn archive as "File not found"; the file is there.
    lowered = text.lower()
    if any(
        word in lowered
        for word in ("not found", "truncated", "crc", "bad zip", "corrupt", "unable to", "eof")
    ):
        return ModelFileError(f"{path}: the model file is corrupt or truncated ({text[:300]})")
    return ModelFileError(f"{path}: could not load the model: {text[:500]}")


def _load_keras(path: Path, trusted: bool, compile: bool, custom_objects: dict | None) -> Any:
    config = safety.keras_archive_config(str(path))  # "corrupt" vs "refused", and the bounds
    _keras_hub_classes([config], path, trusted)
    if not trusted:
        safety.check_config(config, str(path))  # what check_model_file does, read once
    import keras

    try:
        return keras.saving.load_model(
            path, custom_objects=custom_objects, compile=compile, safe_mode=not trusted
        )
    except Exception as e:
        raise _keras_error(path, e) from None


def _load_h5(path: Path, trusted: bool, compile: bool, custom_objects: dict | None) -> Any:
    configs = safety.h5_configs(str(path))  # "corrupt" vs "refused", and the bounds
    _keras_hub_classes(configs, path, trusted)
    for config in configs if not trusted else ():
        safety.check_config(config, str(path))  # what check_model_file does, read once
    import keras

    def load(compile_now: bool) -> Any:
        return keras.saving.load_model(
            path, custom_objects=custom_objects, compile=compile_now, safe_mode=not trusted
        )

    try:
        return load(compile)
    except Exception as e:
        if not compile:
            raise _keras_error(path, e) from None
        first = e
    # Keras 3.15 cannot rebuild the losses/metrics of many legacy files (loss="mse"):
    # load uncompiled, then compile from the stored training config (kerakit._compat).
    try:
        model = load(False)
    except Exception as e:
        raise _keras_error(path, e) from None
    try:
        compile_legacy_h5(model, path)
    except Exception as e:
        raise ModelFileError(
            f"{path}: the model loads but its training setup does not ({first}; then {e}); "
            "use load_model(path, compile=False) and compile it yourself"
        ) from None
    return model


def _load_saved_model(path: Path, trusted: bool) -> Any:
    if not trusted:
        savedmodel.check_saved_model(path)
    import keras
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
        endpoint = "serve" if hasattr(loaded, "serve") else "serving_default"
        if endpoint == "serve":
            specs = loaded.serve.input_signature
        else:
            specs = list(loaded.signatures[endpoint].structured_input_signature[1].values())
        layer = keras.layers.TFSMLayer(str(path), call_endpoint=endpoint)
    except Exception as e:
        raise _keras_error(path, e) from None
    if len(specs) == 1 and isinstance(specs[0], tf.TensorSpec):
        spec = specs[0]
        inputs = keras.Input(shape=tuple(spec.shape[1:]), dtype=spec.dtype.name)
        outputs = layer(inputs)
    elif len(specs) == 1 and isinstance(specs[0], dict):  # named inputs: one Input per name
        inputs = {name: keras.Input(shape=tuple(s.shape[1:]), dtype=s.dtype.name, name=name)
                  for name, s in specs[0].items()}  # fmt: skip
        outputs = layer(inputs)
    else:  # several inputs: one Input per tensor of the signature, as a list
        flat = tf.nest.flatten(specs)
        inputs = [keras.Input(shape=tuple(s.shape[1:]), dtype=s.dtype.name) for s in flat]
        outputs = layer(tf.nest.pack_sequence_as(specs, inputs))
    return keras.Model(inputs, outputs, name="savedmodel_inference")
