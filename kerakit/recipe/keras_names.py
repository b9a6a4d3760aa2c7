"""An index of Keras's names, read with no TensorFlow: a misspelled layer, argument,
activation, optimizer, loss or metric is refused while the recipe loads.

`ensure_index()` (which imports Keras: call it where Keras is loaded anyway) writes the
names once per Keras version to `cache_dir()`/keras-names-<version>-f<FORMAT>.json.
The checks refuse only what Keras is certain to refuse, with the message and position
`kerakit.models.names` gives; what a user could have registered (`package>Name`, a bare
name not one slip from a Keras name, arguments of a class taking **kwargs) is left to
the check while building, and so is all when the index is missing, stale or corrupt,
or Keras is imported already.
"""

from __future__ import annotations

import ast
import functools
import itertools
import json
import math
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kerakit._files import write_json
from kerakit.errors import Where, did_you_mean

FORMAT = 1
COMPILE_KINDS = ("optimizer", "loss", "metric")
# What a Keras layer takes through **kwargs (as kerakit.models.names.accepted_arguments).
LAYER_KEYWORDS = ["input_shape", "input_dim", "batch_size", "name", "dtype", "trainable"]
ACTIVATION_ARGUMENTS = ("activation", "recurrent_activation")  # keras.activations.get's
# Refused first by kerakit.models: layers that run code, a lookup layer's file arguments.
REFUSED_LAYERS = ("Lambda", "TFSMLayer")
FILE_ARGUMENTS = ("vocabulary", "stop_words", "idf_weights")
_NOT_CALLBACKS = ("Callback", "CallbackList", "History", "ProgbarLogger")  # keras_callback_names
_PROBES = ("kerakit_probe_7a1c", "kerakit_probe_e93f")
_loaded: dict = {}  # (path, mtime, size) -> (index, KerasNames)


def cache_dir() -> Path:
    """$KERAKIT_CACHE, else $XDG_CACHE_HOME/kerakit, else ~/.cache/kerakit."""
    if os.environ.get("KERAKIT_CACHE"):
        return Path(os.environ["KERAKIT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kerakit"


@functools.cache
def keras_version() -> str | None:
    """The installed Keras's version, from its metadata (no import); None without Keras."""
    from importlib import metadata

    try:
        return metadata.version("keras")
    except metadata.PackageNotFoundError:
        return None


def index_path(version: str | None = None) -> Path | None:
    """The index file of a Keras version (default: the installed one); None without Keras."""
    if (version := version or keras_version()) is None:
        return None
    safe = re.sub(r"[^0-9A-Za-z_.+-]", "_", version)
    return cache_dir() / f"keras-names-{safe}-f{FORMAT}.json"


def load_index(path: str | os.PathLike | None = None) -> dict | None:
    """The index of the installed Keras; None when it is missing, stale or corrupt."""
    version = keras_version()
    path = Path(path) if path is not None else index_path(version)
    try:
        stat = path.stat()  # an AttributeError without Keras (no path)
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        if key not in _loaded:
            data = json.loads(path.read_text(encoding="utf-8"))
            _loaded[key] = (data, KerasNames(data))  # KerasNames refuses what is no index
        data = _loaded[key][0]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None  # missing, unreadable, not JSON, not an index: as if there were none
    want = (FORMAT, version, os.environ.get("KERAS_BACKEND") or data.get("backend"))
    return data if (data.get("format"), data.get("keras"), data.get("backend")) == want else None


def checker() -> KerasNames | None:
    """The installed index's checks; None without a good index, or once Keras is imported
    (names may be registered then, and the check while building costs no import)."""
    if "keras" in sys.modules or (data := load_index()) is None:
        return None
    return next(names for d, names in _loaded.values() if d is data)


class KerasNames:
    """Checks against one index; each raises the RecipeError Keras's side would, or nothing."""

    def __init__(self, data: dict):
        layers = data["layers"]
        self.layer_names = set(_strs(layers["names"]))
        self.layer_known = layers["names"] + _strs(layers["registered"])  # get_layer_class's
        self.layers = _classes(layers["classes"])
        self.activations = set(_strs(data["activations"]))
        self.tables = {k: (_strs(data[k]["known"]), _strs(data[k]["dir"]),
                           _classes(data[k]["classes"])) for k in COMPILE_KINDS}  # fmt: skip

    def check_layer(self, name: Any, args: Any, where: Where, *, default_name: Any = None) -> None:
        """One layer entry, as kerakit.models.builders.make_layer will meet it."""
        if not isinstance(name, str) or ">" in name or name in REFUSED_LAYERS:
            return
        if (info := self.layers.get(name)) is None:  # refused only if surely not the user's own
            known = name in self.layer_known  # a class of keras.layers but no layer, or kerakit's
            if not known and did_you_mean(name, self.layer_names) and _slip(name, self.layer_names):
                raise where.error(
                    f"unknown layer {name!r}{did_you_mean(name, self.layer_known)}; use a class "
                    "of keras.layers or a layer registered with keras.saving.register_keras_serializable"
                )
            return
        if not isinstance(args, Mapping) or (
            info["lookup"] and any(isinstance(args.get(k), str) for k in FILE_ARGUMENTS)
        ):
            return  # positional arguments, or refused for naming a file first
        for key, value in args.items():  # nested layers (Bidirectional's `layer`) are made first
            if isinstance(value, Mapping) and len(value) == 1:
                ((inner, inner_args),) = value.items()
                if isinstance(inner, str) and inner[:1].isupper() and inner in self.layer_names:
                    self.check_layer(inner, inner_args, where.at(key))
        kwargs = dict(args)
        if default_name and "name" not in kwargs:
            kwargs["name"] = default_name
        if not _check_arguments(info, kwargs, where):
            return
        for arg, parts in info["activation"].items():
            value = kwargs.get(arg)
            if isinstance(value, str) and value not in self.activations and ">" not in value:
                if _slip(value, self.activations):
                    msg = " ".join(value.join(parts).split())
                    raise _at_argument(where, kwargs, msg).error(
                        f"cannot create layer {info['class']}: {msg}"
                    )

    def check_name(self, kind: str, value: Any, where: Where) -> None:
        """One optimizer, loss or metric (`kind`): a name, or {Name: {args}}."""
        known, attrs, classes = self.tables[kind]
        if isinstance(value, str) and value not in known:
            # keras.losses.get and keras.metrics.get look in Keras's own table only;
            # keras.optimizers.get ignores case, and finds registered names too
            lower = value.lower() in {k.lower() for k in known}
            if kind != "optimizer" or (value.isidentifier() and not lower and _slip(value, known)):
                raise where.error(f"unknown {kind} {value!r}{did_you_mean(value, known)}")
        elif isinstance(value, Mapping) and len(value) == 1:
            ((name, args),) = value.items()
            if (info := _find_class(attrs, classes, str(name))) is None:
                # found among the Keras module's attributes only, so certainly unknown
                raise where.at(name).error(f"unknown {kind} {name!r}{did_you_mean(name, known)}")
            args = {} if args is None else args
            if isinstance(args, Mapping):
                _check_arguments(info, args, where.at(name))


def _strs(value: Any) -> list:  # a list of names, or a TypeError
    if not (isinstance(value, list) and all(isinstance(x, str) for x in value)):
        raise TypeError("not a list of names")
    return value


def _classes(value: dict) -> dict:  # {name: class}, or a TypeError or KeyError
    out = {}
    for name, c in value.items():
        if not (isinstance(c["class"], str) and isinstance(c["open"], bool)):
            raise TypeError("not a class")
        out[name] = {
            "class": c["class"], "args": _strs(c["args"]), "swallowed": set(_strs(c["swallowed"])),
            "open": c["open"], "lookup": c.get("lookup") is True,
            "activation": {a: _strs(p) for a, p in c.get("activation", {}).items()},
        }  # fmt: skip
    return out


def _check_arguments(info: dict, kwargs: Mapping, where: Where) -> bool:
    # As names.instantiate: Keras refuses a keyword no constructor names or takes out of
    # **kwargs, then check_arguments(strict=True) names the first one outside the named.
    if any(isinstance(v, float) and math.isnan(v) for v in kwargs.values()):
        return False  # refused as NaN before the constructor runs
    accepted = info["args"]
    if info["open"] or all(k in accepted or k in info["swallowed"] for k in kwargs):
        return True
    key = next(k for k in kwargs if k not in accepted)
    raise where.at(key).error(
        f"{info['class']} has no argument {key!r}{did_you_mean(key, accepted)}; "
        f"its arguments are: {', '.join(a for a in accepted if not a.startswith('_'))}"
    )


def _at_argument(where: Where, args: Mapping, message: str) -> Where:
    # As kerakit.models.names._at_argument: the argument Keras's message names, if any.
    for key in args:
        if isinstance(key, str) and re.search(rf"`{(k := re.escape(key))}`|\b{k}=|'{k}'", message):
            return where.at(key)
    return where.at(next(iter(args))) if len(args) == 1 else where


def _find_class(attrs: list, classes: dict, name: str) -> dict | None:
    # As kerakit.models.names.find_class, over the module's attributes kept in the index.
    camel = "".join(p[:1].upper() + p[1:] for p in re.split(r"_+", name))
    for cand in (name, camel, name.upper()):
        if cand in classes:
            return classes[cand]
    hit = {n.lower(): n for n in attrs}.get(name.lower().replace("_", ""))
    return classes.get(hit) if hit else None


def _slip(name: str, choices) -> bool:
    """Whether `name` is a slip of one of `choices` (the same but for case, or one edit
    away, two past 10 characters), rather than a name of the user's own."""
    low, limit = name.lower(), 1 if len(name) <= 10 else 2
    return any(
        abs(len(c) - len(low)) <= limit and _distance(low, c.lower()) <= limit for c in choices
    )


def _distance(a: str, b: str) -> int:
    """Edit distance, a swap of neighbours counting as one edit."""
    d = {(i, -1): i + 1 for i in range(-1, len(a))} | {(-1, j): j + 1 for j in range(len(b))}
    for i, j in itertools.product(range(len(a)), range(len(b))):
        d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (a[i] != b[j]))
        if i and j and a[i] == b[j - 1] and a[i - 1] == b[j]:
            d[i, j] = min(d[i, j], d[i - 2, j - 2] + 1)
    return d[len(a) - 1, len(b) - 1]


def ensure_index() -> Path | None:
    """Write the index unless a good one is there; its path, or None. Never raises: the
    index only makes a later `kerakit check` quicker. Imports Keras."""
    try:
        return index_path() if load_index() is not None else build_index_file()
    except Exception:  # noqa: BLE001 - a cache: whatever goes wrong, the run goes on without it
        return None


def build_index_file(path: str | os.PathLike | None = None) -> Path | None:
    """Build the index of the installed Keras and write it atomically; its path."""
    path = Path(path) if path is not None else index_path()
    return None if path is None else write_json(path, build_index())


def build_index() -> dict:
    """Keras's names, their classes' arguments and messages, as plain data. Imports Keras."""
    import importlib
    import inspect

    import keras

    def table(module) -> dict:  # keras.src.<module>.ALL_OBJECTS_DICT: what `get` looks in
        src = "keras.src." + module.__name__.rsplit(".", 1)[-1]
        return getattr(importlib.import_module(src), "ALL_OBJECTS_DICT", {})

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
            "registered": [k.split(">")[-1] for k in keras.saving.get_custom_objects()
                           if k.startswith("kerakit>")],
            "classes": classes,
        },
        # keras.activations.get(name) is ALL_OBJECTS_DICT.get(name), if callable
        "activations": sorted(n for n, f in table(keras.activations).items() if callable(f)),
        "callbacks": sorted(n for n, c in vars(keras.callbacks).items() if isinstance(c, type)
                            and issubclass(c, keras.callbacks.Callback)
                            and n not in _NOT_CALLBACKS),
    }  # fmt: skip
    for kind, module, base in (("optimizer", keras.optimizers, keras.optimizers.Optimizer),
                               ("loss", keras.losses, keras.losses.Loss),
                               ("metric", keras.metrics, keras.metrics.Metric)):  # fmt: skip
        out[kind] = {  # known: as kerakit.models.names.known_names
            "known": sorted({n for n in dir(module) if not n.startswith("_")} | set(table(module))),
            "dir": dir(module),
            "classes": {
                n: _class_info(obj, layer=False)
                for n in dir(module)
                if inspect.isclass(obj := getattr(module, n, None)) and issubclass(obj, base)
            },
        }
    return out


def _class_info(cls: type, *, layer: bool) -> dict:
    import inspect

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
    import inspect

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
    import inspect
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
    import inspect
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
