"""An index of Keras's names, read with no TensorFlow: a misspelled layer, argument,
activation, optimizer, loss, metric or learning-rate schedule is refused while the recipe loads.

`ensure_index()` (which imports Keras: call it where Keras is loaded anyway) writes the
names once per Keras version to `cache_dir()`/keras-names-<version>-f<FORMAT>.json
(what it holds: `kerakit.recipe.keras_index`).
The checks refuse only what Keras is certain to refuse, with the message and position
`kerakit.models.names` gives; what a user could have registered (`package>Name`, a bare
name not one slip from a Keras name, arguments of a class taking **kwargs) is left to
the check while building, and so is all when the index is missing, stale or corrupt,
or Keras is imported already.
"""

from __future__ import annotations

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
from kerakit.recipe.keras_index import COMPILE_KINDS, FORMAT, build_index, keras_version

# Refused first by kerakit.models: layers that run code, a lookup layer's file arguments.
REFUSED_LAYERS = ("Lambda", "TFSMLayer")
FILE_ARGUMENTS = ("vocabulary", "stop_words", "idf_weights")
# How a kind is named in messages, and the Keras module its names come from.
WORDS = {"schedule": "learning-rate schedule"}
MODULES = {"optimizer": "keras.optimizers", "loss": "keras.losses", "metric": "keras.metrics",
           "schedule": "keras.optimizers.schedules"}  # fmt: skip
_loaded: dict = {}  # (path, mtime, size) -> (index, KerasNames)


def unknown_name(kind: str, name: Any, known) -> str:
    """The one message for an unknown optimizer, loss, metric or schedule name (the models
    stage gives it too: `kerakit check` says the same with or without the index)."""
    return (
        f"unknown {WORDS.get(kind, kind)} {name!r}{did_you_mean(str(name), known)}; use a name "
        f"from {MODULES[kind]} or one registered with keras.saving.register_keras_serializable"
    )


def cache_dir() -> Path:
    """$KERAKIT_CACHE, else $XDG_CACHE_HOME/kerakit, else ~/.cache/kerakit."""
    if os.environ.get("KERAKIT_CACHE"):
        return Path(os.environ["KERAKIT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kerakit"


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
        self.aliases = {k: {a.lower() for a in _strs(data[k]["aliases"])} for k in COMPILE_KINDS}

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
        """One optimizer, loss, metric or schedule (`kind`): a name, or {Name: {args}}. A name
        not Keras's is refused only when it is a slip of one (it may be registered)."""
        known, attrs, classes = self.tables[kind]
        if isinstance(value, str) and value not in known and ">" not in value:
            # keras.losses.get and keras.metrics.get look in Keras's own table (then kerakit
            # in the registry); keras.optimizers.get ignores case; compile takes its aliases
            lower = value.lower() in {k.lower() for k in known} and kind == "optimizer"
            if value.lower() in self.aliases[kind] or lower or not value.isidentifier():
                return
            if _slip(value, known):
                raise where.error(unknown_name(kind, value, known))
        elif isinstance(value, Mapping) and len(value) == 1:
            ((name, args),) = value.items()
            if (info := _find_class(attrs, classes, str(name))) is None:
                if ">" not in str(name) and _slip(str(name), known):
                    raise where.at(name).error(unknown_name(kind, name, known))
                return
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
