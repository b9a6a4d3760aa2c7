"""Building the index of Keras's names (`kerakit.recipe.keras_names` reads and checks it).

Keras is imported inside `build_index` only, where Keras is loaded anyway (training and
`kerakit check` call `keras_names.ensure_index()` once per Keras version): importing this
module imports no TensorFlow. What the index holds must agree with what the models stage
computes (`kerakit.models.names`); tests compare them.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect

FORMAT = 2  # 2: learning-rate schedules, the names Keras's compile resolves itself
COMPILE_KINDS = ("optimizer", "loss", "metric", "schedule")
# What a Keras layer takes through **kwargs (as kerakit.models.names.accepted_arguments).
LAYER_KEYWORDS = ["input_shape", "input_dim", "batch_size", "name", "dtype", "trainable"]
ACTIVATION_ARGUMENTS = ("activation", "recurrent_activation")  # keras.activations.get's
# Names Keras's `compile` resolves itself, in any case (keras/src/trainers/compile_utils.py:
# get_metric, get_loss), by the shapes of labels and outputs: "accuracy"/"acc" become
# Binary-, Sparse- or CategoricalAccuracy, "crossentropy"/"ce" the matching crossentropy.
COMPILE_ALIASES = {"metric": ["accuracy", "acc"], "loss": ["crossentropy", "ce"]}
_NOT_CALLBACKS = ("Callback", "CallbackList", "History", "ProgbarLogger")  # keras_callback_names
_PROBES = ("kerakit_probe_7a1c", "kerakit_probe_e93f")


@functools.cache
def keras_version() -> str | None:
    """The installed Keras's version, from its metadata (no import); None without Keras."""
    from importlib import metadata

    try:
        return metadata.version("keras")
    except metadata.PackageNotFoundError:
        return None


def build_index() -> dict:
    """Keras's names, their classes' arguments and messages, as plain data. Imports Keras."""
    import keras

    def table(module) -> dict:  # keras.src.<module>.ALL_OBJECTS_DICT: what `get` looks in
        try:
            src = importlib.import_module("keras.src." + module.__name__.rsplit(".", 1)[-1])
        except ImportError:  # keras.optimizers.schedules: no `get`, no table
            return {}
        return getattr(src, "ALL_OBJECTS_DICT", {})

    layers = keras.layers
    names = [n for n in dir(layers) if inspect.isclass(getattr(layers, n, None))]
    lookup = (layers.StringLookup, layers.IntegerLookup, layers.TextVectorization)
    classes = {}
    for n in names:
        if issubclass(cls := getattr(layers, n), layers.Layer):
            classes[n] = info = _class_info(cls, layer=True)
            info["lookup"] = issubclass(cls, lookup)
            info["activation"] = {
                arg: parts
                for arg in ACTIVATION_ARGUMENTS
                if arg in info["args"] and (parts := _probe_activation(cls, arg))
            }
    out = {
        "format": FORMAT,
        "keras": keras_version() or keras.__version__,
        "backend": keras.backend.backend(),
        "layers": {
            "names": names,
            "registered": [k.split(">")[-1] for k, c in keras.saving.get_custom_objects().items()
                           if k.startswith("kerakit>") and inspect.isclass(c)
                           and issubclass(c, layers.Layer)],
            "classes": classes,
        },
        # keras.activations.get(name) is ALL_OBJECTS_DICT.get(name), if callable
        "activations": sorted(n for n, f in table(keras.activations).items() if callable(f)),
        "callbacks": sorted(n for n, c in vars(keras.callbacks).items() if isinstance(c, type)
                            and issubclass(c, keras.callbacks.Callback)
                            and n not in _NOT_CALLBACKS),
    }  # fmt: skip
    schedules = keras.optimizers.schedules
    for kind, module, base in (("optimizer", keras.optimizers, keras.optimizers.Optimizer),
                               ("loss", keras.losses, keras.losses.Loss),
                               ("metric", keras.metrics, keras.metrics.Metric),
                               ("schedule", schedules, schedules.LearningRateSchedule)):  # fmt: skip
        classes = {
            n: _class_info(obj, layer=False)
            for n in dir(module)
            if inspect.isclass(obj := getattr(module, n, None)) and issubclass(obj, base)
        }
        # known: as kerakit.models.names.known_names (a schedule: its classes, bar the base)
        known = sorted({n for n in dir(module) if not n.startswith("_")} | set(table(module)))
        if kind == "schedule":
            known = sorted(n for n in classes if n != base.__name__)
        out[kind] = {"known": known, "dir": dir(module), "classes": classes,
                     "aliases": COMPILE_ALIASES.get(kind, [])}  # fmt: skip
    return out


def _class_info(cls: type, *, layer: bool) -> dict:
    args: list[str] = []  # as kerakit.models.names.accepted_arguments (a test compares them)
    for klass in cls.__mro__:
        try:
            params = inspect.signature(klass.__dict__["__init__"]).parameters.values()
        except (KeyError, TypeError, ValueError):
            continue
        args += [p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    args = [a for a in dict.fromkeys(args + (LAYER_KEYWORDS if layer else [])) if a != "self"]
    opened, swallowed = _kwargs_use(cls)
    return {"class": cls.__name__, "args": args, "swallowed": swallowed, "open": opened}


def _kwargs_use(cls: type) -> tuple[bool, list[str]]:
    """(open, swallowed): whether cls(...) may take a keyword no constructor names, and those
    one takes out of **kwargs itself (LeakyReLU's `alpha`), from the constructors' source
    along the MRO up to one that refuses the rest; anything unclear is open."""
    swallowed: list[str] = []
    for klass in cls.__mro__[:-1]:  # object.__init__ refuses any keyword
        if (init := klass.__dict__.get("__init__")) is None:
            continue
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            return True, swallowed
        kw = [p.name for p in params if p.kind is p.VAR_KEYWORD]
        verdict = _kwargs_verdict(init, kw[0], swallowed) if kw else "refuses"
        if verdict != "forwards":
            return verdict == "open", sorted(set(swallowed))
    return False, sorted(set(swallowed))


def _kwargs_verdict(init, kw: str, swallowed: list[str]) -> str:
    """'refuses' (`if kwargs: raise`), 'forwards' (to super().__init__ only), or 'open'."""
    import textwrap

    try:
        func = ast.parse(textwrap.dedent(inspect.getsource(init))).body[0]
    except (OSError, TypeError, SyntaxError, IndexError):
        return "open"
    parent = {child: node for node in ast.walk(func) for child in ast.iter_child_nodes(node)}

    def text(node) -> bool:
        return isinstance(node, ast.Constant) and isinstance(node.value, str)

    def in_raise(node) -> bool:  # named in the message of what it raises
        while (node := parent.get(node)) is not None:
            if isinstance(node, ast.Raise):
                return True
        return False

    forwards = refuses = False
    for node in ast.walk(func):
        if not (isinstance(node, ast.Name) and node.id == kw) or in_raise(node):
            continue
        up = parent.get(node)
        call = parent.get(up)
        first = call.args[0] if isinstance(call, ast.Call) and call.args else None
        if isinstance(up, ast.keyword) and up.arg is None:
            if not (isinstance(call, ast.Call) and ast.unparse(call.func) == "super().__init__"):
                return "open"
            forwards = True  # super().__init__(..., **kwargs)
        elif isinstance(up, ast.Attribute) and up.attr in ("pop", "get") and text(first):
            swallowed.append(first.value)  # kwargs.pop("x", ...)
        elif isinstance(up, ast.Compare) and up.comparators == [node] and text(up.left):
            swallowed.append(up.left.value)  # "x" in kwargs
        elif isinstance(up, ast.Subscript) and up.value is node and text(up.slice):
            swallowed.append(up.slice.value)  # kwargs["x"]
        elif isinstance(up, ast.If) and up.test is node and ast.Raise in map(type, up.body):
            refuses = True  # if kwargs: raise ...
        else:
            return "open"
    return "refuses" if refuses else "forwards" if forwards else "open"


def _probe_activation(cls: type, arg: str) -> list[str] | None:
    """Keras's message for an unknown activation given to `cls` as `arg`, split where the
    name goes; None unless the constructor says it (its other required arguments at 1)."""
    import warnings

    found = []
    for probe in _PROBES:
        try:
            params = inspect.signature(cls).parameters.values()
            kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            required = {p.name: 1 for p in params if p.default is p.empty and p.kind in kinds}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cls(**{**required, arg: probe})
            return None
        except Exception as exc:  # noqa: BLE001 - meant to fail; how it fails is the answer
            found.append(str(exc).split(probe))
    return found[0] if len(found[0]) > 1 and found[0] == found[1] else None
