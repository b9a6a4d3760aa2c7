"""Atomic model saving in every format, and a careful `load_model`.

Every file kerakit writes goes to a temporary name beside its target, is
fsynced, then `os.replace`d over it: a crash, a kill or a full disk part-way
through a save leaves the previous good file where it was, never a truncated
stub (Keras's own `model.save` opens the target with "wb").

    import kerakit as kk
    paths = kk.save_model(model, "runs/digits/1", formats=["keras", "h5", "savedmodel"])
    same = kk.load_model("runs/digits/1")              # picks model.keras
    server = kk.load_model("runs/digits/1/savedmodel")  # inference only: .predict(x)

`load_model` checks `.keras` and `.h5` files against kerakit's allowlist
(`kerakit.safety`) before Keras parses them, and never turns Keras's safe
mode off unless asked for that one call with ``trusted=True``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from kerakit.errors import NOWHERE, ModelFileError, Where, did_you_mean

# format -> file or folder name inside a run folder, in the order they are saved:
# `.keras` first, because a legacy `.h5` save rewrites the model's compile config
# in Keras 3.15 (a `.keras` saved after it reloads with a fresh RMSprop).
FORMATS = {"keras": "model.keras", "h5": "model.h5", "savedmodel": "savedmodel"}


# --------------------------------------------------------------------------- atomic writes


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename is durable only once its folder is)."""
    with contextlib.suppress(OSError):  # some filesystems refuse fsync on a folder
        _fsync_path(Path(path))


def _temp_beside(path: Path, tag: str = "tmp") -> Path:
    # Same folder (so os.replace is a rename), hidden, and ending with the target's
    # full name so that Keras's suffix checks (.keras, .weights.h5) still pass.
    return path.parent / f".{tag}-{os.getpid()}-{secrets.token_hex(4)}-{path.name}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync it and rename it over `path`.

    Whatever the block writes to the yielded path (a file, or a folder) only
    replaces `path` once the block has finished without error; on error the
    temporary is removed and `path` keeps its previous content.

    Args:
        path: the final file or folder.

    Example:
        >>> with atomic_path("runs/x/model.keras") as tmp:  # doctest: +SKIP
        ...     model.save(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(path)
    try:
        yield tmp
        if tmp.is_dir():
            for root, _dirs, files in os.walk(tmp):
                for name in files:
                    _fsync_path(Path(root) / name)
                fsync_dir(root)
            old = None
            if path.exists():
                # A folder cannot be renamed over a non-empty one: move the old one
                # aside first; it is deleted only once the new one is in place.
                old = _temp_beside(path, "old")
                os.replace(path, old)
            os.replace(tmp, path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        else:
            _fsync_path(tmp)
            os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"
) -> Iterator[TextIO | BinaryIO]:
    """Open a temporary file beside `path` for writing; rename it over `path` on success.

    Args:
        path: the final file.
        mode: "w" (text, the default) or "wb".
        encoding: text encoding (ignored in binary mode).

    Example:
        >>> with atomic_write("runs/x/metrics.json") as f:  # doctest: +SKIP
        ...     json.dump(metrics, f)
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` atomically; returns the path."""
    with atomic_write(path) as f:
        f.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, value: Any) -> Path:
    """Write `value` as indented JSON to `path` atomically; returns the path."""
    return write_text(path, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


# --------------------------------------------------------------------------- saving

_SKIPSET_KINDS = ("Operation", "Layer", "Functional", "Sequential", "Metric", "Optimizer", "Loss")


def cache_keras_skipsets() -> None:
    """Let Keras's saver reuse what it computes once per kind of object.

    Keras 3.15's `saving_lib.get_attr_skipset` looks its cache up under
    `saving_attr_skiplist_<kind>` but stores it under `saving_attr_skipset_<kind>`,
    so every `model.save` / `save_weights` builds throwaway Layer, Optimizer and
    Metric objects again: about 7 ms of a 23 ms save of the overview CNN. This
    stores the computed set under the name Keras reads (the same value Keras
    would compute; `clear_session` empties it, so savers call this each time).
    Does nothing where Keras's internals differ.
    """
    try:
        from keras.src.backend.common import global_state
        from keras.src.saving import saving_lib

        for kind in _SKIPSET_KINDS:
            if global_state.get_global_attribute(f"saving_attr_skiplist_{kind}") is None:
                skipset = saving_lib.get_attr_skipset(kind)
                global_state.set_global_attribute(f"saving_attr_skiplist_{kind}", skipset)
    except (ImportError, AttributeError, ValueError, TypeError):
        return


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
    # Keras 3.15's legacy saver pops "optimizer" out of model._compile_config.config
    # in place; keep a copy and put it back so later saves stay right.
    compile_config = getattr(model, "_compile_config", None)
    kept = copy.copy(getattr(compile_config, "config", None))
    try:
        model.save(path)
    finally:
        if compile_config is not None and kept is not None:
            compile_config.config = kept


# --------------------------------------------------------------------------- loading


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
    allowlist before Keras parses it (see `kerakit.safety` and
    docs/security.md) and Keras's safe mode stays on. `trusted=True` skips
    the allowlist and turns safe mode off for this one call only; use it
    only for files whose maker you trust.

    Args:
        path: a model file, a SavedModel folder or a run folder.
        trusted: load a file that may run code (Lambda layers, ...). Default False.
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
    import kerakit.augment  # noqa: F401  (kerakit>AugmentLayer)
    import kerakit.transfer  # noqa: F401  (kerakit>BackbonePreprocess)


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
    from kerakit import safety

    if trusted:
        safety._keras_archive_config(str(path))  # still tell "corrupt" from "refused"
    else:
        safety.check_model_file(path)
    import keras

    try:
        return keras.saving.load_model(
            path, custom_objects=custom_objects, compile=compile, safe_mode=not trusted
        )
    except Exception as e:
        raise _keras_error(path, e) from None


def _load_h5(path: Path, trusted: bool, compile: bool, custom_objects: dict | None) -> Any:
    from kerakit import safety

    if trusted:
        safety._h5_configs(str(path))
    else:
        safety.check_model_file(path)
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
    # Keras 3.15 cannot rebuild the losses/metrics of many legacy files (loss="mse"
    # fails with "not a KerasSaveable subclass"): load uncompiled, then compile from
    # the stored training config by name, the way the file's maker wrote it.
    try:
        model = load(False)
    except Exception as e:
        raise _keras_error(path, e) from None
    try:
        _compile_from_h5(model, path)
    except Exception as e:
        raise ModelFileError(
            f"{path}: the model loads but its training setup does not ({first}; then {e}); "
            "use load_model(path, compile=False) and compile it yourself"
        ) from None
    return model


def _compile_from_h5(model: Any, path: Path) -> None:
    import h5py
    import keras

    with h5py.File(path, "r") as f:
        raw = f.attrs.get("training_config")
    if raw is None:
        return
    config = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    optimizer = config.get("optimizer_config")
    model.compile(
        optimizer=keras.optimizers.get(optimizer) if optimizer else "rmsprop",
        loss=config.get("loss"),
        metrics=config.get("metrics"),
        loss_weights=config.get("loss_weights"),
        weighted_metrics=config.get("weighted_metrics"),
    )
    # Bring back the optimizer's state too (iterations, moments), as Keras would.
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "r") as f:
        if "optimizer_weights" in f:
            model.optimizer.build(model.trainable_variables)
            values = legacy_h5_format.load_optimizer_weights_from_hdf5_group(f)
            model.optimizer.set_weights(values)


def _load_saved_model(path: Path, trusted: bool) -> Any:
    from kerakit import safety

    if not trusted:
        safety.check_saved_model(path)
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
    else:  # several inputs: one Input per tensor of the signature, as a list
        flat = tf.nest.flatten(specs)
        inputs = [keras.Input(shape=tuple(s.shape[1:]), dtype=s.dtype.name) for s in flat]
        outputs = layer(tf.nest.pack_sequence_as(specs, inputs))
    return keras.Model(inputs, outputs, name="savedmodel_inference")
