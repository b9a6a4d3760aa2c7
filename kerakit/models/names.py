"""The one Keras-name lookup: layers, optimizers, learning-rate schedules, losses, metrics
and callbacks by their Keras names (or names registered with
`keras.saving.register_keras_serializable`, as "package>Name" or the bare class name), with
their arguments checked against the class's own constructors; and the way back, a Keras
object as its name and arguments (`as_recipe_value`).

    get_layer_class("Dense")                             # keras.layers.Dense
    resolve_object("optimizer", keras.optimizers, keras.optimizers.Optimizer,
                   {"adam": {"learning_rate": 1e-3}}, where)
    check_arguments(keras.callbacks.EarlyStopping, {"patiense": 3}, where)   # did you mean
    as_recipe_value(keras.optimizers.SGD(0.1))           # {"SGD": {"learning_rate": 0.1}}
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from kerakit._compat import loss_config
from kerakit.errors import NOWHERE, Where, did_you_mean
from kerakit.recipe.keras_index import COMPILE_ALIASES
from kerakit.recipe.keras_names import unknown_name

# A recipe is plain data and never runs code (docs/security.md): these layers would.
_REFUSED_LAYERS = {
    "Lambda": "a recipe cannot hold Python code, so Lambda has nothing to run; write the function "
    "as a layer class registered with keras.saving.register_keras_serializable and name it here",
    "TFSMLayer": "TFSMLayer loads and runs a TensorFlow graph from a path, which a recipe from "
    "someone else must not do; load a SavedModel with kk.load_model (it checks the graph) instead",
}


def _camel(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"_+", name))


def known_names(module) -> list[str]:
    """Every name `module.get` knows (for "did you mean"): Keras's own table plus the public names."""
    names = {n for n in dir(module) if not n.startswith("_")}
    try:
        src = importlib.import_module("keras.src." + module.__name__.rsplit(".", 1)[-1])
        names |= set(getattr(src, "ALL_OBJECTS_DICT", {}))
    except ImportError:
        pass
    return sorted(names)


def find_class(module, name: str, base: type):
    for cand in (name, _camel(name), name.upper()):
        obj = getattr(module, cand, None)
        if inspect.isclass(obj) and issubclass(obj, base):
            return obj
    lower = {n.lower(): n for n in dir(module)}
    hit = lower.get(name.lower().replace("_", ""))
    obj = getattr(module, hit, None) if hit else None
    if inspect.isclass(obj) and issubclass(obj, base):
        return obj
    return None


def accepted_arguments(cls: type) -> list[str]:
    """Every named argument along the class's constructors (Keras passes **kwargs up the MRO)."""
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            continue
        names += [
            p.name
            for p in params
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"
        ]
    # Keras layers also take these through **kwargs
    if issubclass(cls, keras.layers.Layer):
        names += ["input_shape", "input_dim", "batch_size", "name", "dtype", "trainable"]
    return list(dict.fromkeys(names))


def instantiate(cls: type, args: Any, where: Where, what: str):
    """cls(**args) / cls(args) / cls(*args), with Keras's complaints turned into recipe errors."""
    if isinstance(args, Mapping):
        for key, value in args.items():
            # Keras takes NaN silently in many places (Adam(learning_rate=nan), beta_1=nan, ...)
            # and training then produces nothing but NaN; no Keras argument means NaN.
            if isinstance(value, float) and math.isnan(value):
                raise where.at(key).error(f"{cls.__name__}'s {key!r} is NaN; give a number")
    try:
        if isinstance(args, Mapping):
            return cls(**args)
        if isinstance(args, list):
            return cls(*args)
        return cls(args)
    except Exception as exc:  # a constructor given recipe values: whatever it raises is about them
        if isinstance(args, Mapping):
            check_arguments(cls, args, where, strict=True)
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise _at_argument(where, args, msg).error(
            f"cannot create {what} {cls.__name__}: {msg}"
        ) from None


def _at_argument(where: Where, args: Any, message: str) -> Where:
    """Point at the argument Keras's message names (`rate`, "Received: rate=1.5"), if any."""
    if isinstance(args, Mapping):
        for key in args:
            if isinstance(key, str) and re.search(
                rf"`{re.escape(key)}`|\b{re.escape(key)}=|'{re.escape(key)}'", message
            ):
                return where.at(key)
        if len(args) == 1:  # one argument given: it is the one Keras refused
            return where.at(next(iter(args)))
    return where


def registered(name: str, base: type, *, functions: bool = False, where: Where = NOWHERE):
    """What `keras.saving.register_keras_serializable` registered as `name` ("package>Name",
    or the bare class name, as for layers) if it is a `base` class (or, with `functions`, a
    function); else None. A bare name registered under several packages is an error that
    names them: which one is meant cannot be guessed."""

    def fits(obj) -> bool:
        return (inspect.isclass(obj) and issubclass(obj, base)) or (
            functions and inspect.isfunction(obj)
        )

    obj = keras.saving.get_registered_object(name)
    if obj is None and ">" not in name:
        found = {full: candidate for full, candidate in keras.saving.get_custom_objects().items()
                 if full.split(">")[-1] == name and fits(candidate)}  # fmt: skip
        if len(set(found.values())) > 1:
            raise where.error(
                f"{name!r} is registered under several packages ({', '.join(sorted(found))}); "
                "write the full name, e.g. " + repr(sorted(found)[0])
            )
        obj = next(iter(found.values()), None)
    return obj if obj is not None and fits(obj) else None


def resolve_object(kind: str, module, base: type, value: Any, where: Where, *, keep_strings: bool):
    """A Keras object from a name, {name: args}, or a ready object (passed through).

    A name is Keras's own (kept as a string for Keras's compile when `keep_strings`), one
    that Keras's compile resolves itself ("acc", "ce"), or a registered class or function.
    """
    if isinstance(value, base) or callable(value) and not isinstance(value, (str, Mapping)):
        return value
    if isinstance(value, str):
        if value.lower() in COMPILE_ALIASES.get(kind, ()):
            return value  # compile picks the accuracy / crossentropy that fits the shapes
        try:
            obj = module.get(value)
        except (ValueError, TypeError):
            obj = None
        if obj is not None:
            return value if keep_strings else obj
        found = registered(value, base, functions=kind in ("loss", "metric"), where=where)
        if found is None:
            raise where.error(unknown_name(kind, value, known_names(module)))
        return instantiate(found, {}, where, kind) if inspect.isclass(found) else found
    if isinstance(value, Mapping) and len(value) == 1:
        ((name, args),) = value.items()
        cls = find_class(module, str(name), base) or registered(
            str(name), base, where=where.at(name)
        )
        if cls is None:
            raise where.at(name).error(unknown_name(kind, name, known_names(module)))
        return instantiate(cls, args if args is not None else {}, where.at(name), kind)
    raise where.error(
        f"expected a {kind} name, {{name: {{args}}}} or a Keras object, got {value!r}"
    )


def _layer_names() -> list[str]:
    return [n for n in dir(keras.layers) if inspect.isclass(getattr(keras.layers, n, None))]


def get_layer_class(name: str, where: Where = NOWHERE) -> type:
    """A layer class by its Keras name, or a registered serializable name ("package>Name")."""
    if name in _REFUSED_LAYERS:
        raise where.error(_REFUSED_LAYERS[name])
    cls = getattr(keras.layers, name, None)
    if inspect.isclass(cls) and issubclass(cls, keras.layers.Layer):
        return cls
    if (cls := registered(name, keras.layers.Layer, where=where)) is not None:
        return cls
    known = _layer_names() + [k.split(">")[-1] for k in keras.saving.get_custom_objects()]
    raise where.error(
        f"unknown layer {name!r}{did_you_mean(name, known)}; use a class of keras.layers "
        "or a layer registered with keras.saving.register_keras_serializable"
    )


def check_arguments(
    cls: type, kwargs: Mapping, where: Where, name: str | None = None, *, strict: bool = False
) -> None:
    """Refuse keyword arguments `cls` cannot take, naming the close ones.

    Before an object is made (`strict=False`), a constructor that takes
    ``**kwargs`` of its own (outside Keras's layer base classes, whose accepted
    keywords are known) is not checked: it may accept more than its signature
    says. After Keras refused the arguments (`strict=True`), every argument
    outside the constructors' named ones is named.
    """
    own = inspect.signature(cls.__init__).parameters.values()
    kwargs_taken = any(p.kind is p.VAR_KEYWORD for p in own)
    if not strict and kwargs_taken and not issubclass(cls, keras.layers.Layer):
        return
    accepted = accepted_arguments(cls)
    for key in kwargs:
        if key not in accepted:
            raise where.at(key).error(
                f"{name or cls.__name__} has no argument {key!r}{did_you_mean(key, accepted)}; "
                f"its arguments are: {', '.join(a for a in accepted if not a.startswith('_'))}"
            )


def keras_callback_names() -> list[str]:
    """Names of the callback classes in `keras.callbacks`."""
    return sorted(
        name
        for name, obj in vars(keras.callbacks).items()
        if isinstance(obj, type)
        and issubclass(obj, keras.callbacks.Callback)
        and name not in ("Callback", "CallbackList", "History", "ProgbarLogger")
    )


def get_callback_class(name: str, where: Where = NOWHERE) -> type:
    """A callback class of `keras.callbacks` by name, or a registered one ("package>Name")."""
    if ">" in name:  # a callback registered with keras.saving.register_keras_serializable
        obj = keras.saving.get_registered_object(name)
        if isinstance(obj, type) and issubclass(obj, keras.callbacks.Callback):
            return obj
        raise where.error(
            f"no callback registered as {name!r}: register it with "
            "@keras.saving.register_keras_serializable() and import it before training"
        )
    names = keras_callback_names()
    if name not in names:
        raise where.error(
            f"unknown callback {name!r}{did_you_mean(name, names)}; "
            f"Keras callbacks: {', '.join(names)}"
        )
    return getattr(keras.callbacks, name)


# --------------------------------------------------------------------------- schedules


def schedule_names() -> list[str]:
    """The classes of keras.optimizers.schedules (as the index of Keras's names keeps them)."""
    module, base = keras.optimizers.schedules, keras.optimizers.schedules.LearningRateSchedule
    return sorted(
        n
        for n in dir(module)
        if inspect.isclass(c := getattr(module, n)) and issubclass(c, base) and c is not base
    )


def get_schedule(value: Any, where: Where = NOWHERE) -> Any:
    """A learning rate: a number, a schedule object, or {Schedule: {args}} by the name of a
    class of keras.optimizers.schedules or of one registered with Keras."""
    if not isinstance(value, Mapping):
        return value
    base = keras.optimizers.schedules.LearningRateSchedule
    if len(value) != 1:
        raise where.error(f"expected a number or one schedule {{Name: {{args}}}}, got {value!r}")
    ((name, args),) = value.items()
    cls = find_class(keras.optimizers.schedules, str(name), base) or registered(
        str(name), base, where=where.at(name)
    )
    if cls is None:
        raise where.at(name).error(unknown_name("schedule", name, schedule_names()))
    args = dict(args or {}) if isinstance(args, Mapping) else args
    for key, arg in args.items() if isinstance(args, Mapping) else ():
        if arg == "auto":  # resolve_compile fills it in where the run's length is known
            raise where.at(name, key).error(
                "'auto' is the number of training steps, filled in by kk.train and kerakit "
                "check from the data; give a number here"
            )
    return instantiate(cls, args, where.at(name), "learning-rate schedule")


# --------------------------------------------------------------------------- the way back


def as_recipe_value(value: Any) -> Any:
    """A Keras object as a recipe names it: {Name: arguments}, from its class (its registered
    "package>Name" if it has one) and `get_config()` less what its constructor takes by
    default (the learning rate always kept); a function by its (registered) name. Plain
    values stay as they are, lists and mappings are walked."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(k): as_recipe_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_recipe_value(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()  # a NumPy scalar
    if not hasattr(value, "get_config") or inspect.isclass(value):
        return keras.saving.get_registered_name(value) if callable(value) else repr(value)
    cls = type(value)
    defaults = {
        p.name: p.default
        for p in inspect.signature(cls).parameters.values()
        if p.default is not p.empty
    }
    args = {}
    # a loss's config with what Keras 3.15.1 leaves out (Huber's delta: kerakit._compat)
    config = loss_config(value) if isinstance(value, keras.losses.Loss) else value.get_config()
    for key, arg in config.items():
        if isinstance(arg, Mapping) and {"class_name", "config"} <= set(arg):
            arg = keras.saving.deserialize_keras_object(arg)  # a schedule inside an optimizer
        arg = as_recipe_value(arg)
        if key == "learning_rate" and isinstance(arg, float):
            arg = float(str(np.float32(arg)))  # kept in float32: 0.001, not 0.0010000000474974513
        elif key in defaults and arg == defaults[key] and type(arg) is type(defaults[key]):
            continue
        elif key == "name" and isinstance(value, keras.optimizers.Optimizer):
            if re.sub(r"_\d+$", "", str(arg)).replace("_", "") == cls.__name__.lower():
                continue  # "adam_1": a name Keras made up, different in every process
        args[key] = arg
    return {keras.saving.get_registered_name(cls): args}
