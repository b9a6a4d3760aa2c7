"""Callback bundles as data, and `resolve_callbacks` (no TensorFlow import).

`train.callbacks` in a recipe is one of:

```yaml
callbacks: standard                  # a bundle name
callbacks:                           # a list of Keras callbacks (class name + Keras arguments)
  - EarlyStopping: {patience: 5}
  - TerminateOnNaN
callbacks:                           # a bundle with members overridden, dropped or added
  bundle: standard
  EarlyStopping: {patience: 5}       # merged into the member's arguments
  ReduceLROnPlateau: false           # dropped
  TensorBoard: {}                    # any Keras callback, added
```

`resolve_callbacks` turns each into the same expanded spec, an ordered list
of ``{ClassName: {argument: value}}``, which is YAML-dumpable and which
`resolve_callbacks` accepts unchanged. Class names and arguments are checked
against Keras itself by `kerakit.callbacks.make_callbacks`; the run folder
paths and the monitor (`val_loss` with validation data, else `loss`) are
filled in there.
"""

from __future__ import annotations

import copy
import math
import re
import string
from collections.abc import Mapping
from typing import Any

from kerakit.errors import NOWHERE, Where, did_you_mean
from kerakit.recipe.registry import Registry
from kerakit.recipe.schema import show, type_name

_STANDARD = [
    {"EarlyStopping": {"patience": 5, "restore_best_weights": True}},
    {"ModelCheckpoint": {"save_best_only": True}},
    {"ReduceLROnPlateau": {"factor": 0.5, "patience": 2}},
    {"CSVLogger": {}},
    {"TerminateOnNaN": {}},
    {"BackupAndRestore": {}},
]

# Adding a bundle is one entry.
BUNDLES = Registry(
    "bundles",
    "callback bundles: `train.callbacks: NAME`",
    {
        "none": {"description": "no callbacks", "callbacks": []},
        "minimal": {
            "description": "stop on NaN; history.csv in the run folder",
            "callbacks": [{"TerminateOnNaN": {}}, {"CSVLogger": {}}],
        },
        "standard": {
            "description": "early stopping (best weights kept), best model saved to best.keras, "
            "learning rate cut on plateaus, history.csv, stop on NaN, crash-safe resume",
            "callbacks": _STANDARD,
        },
        "full": {
            "description": "standard plus TensorBoard logs in the run folder (needs the tensorboard package)",
            "callbacks": [*_STANDARD, {"TensorBoard": {}}],
        },
    },
)
DEFAULT_BUNDLE = "standard"

# Arguments that take a save/update frequency: "epoch" or a positive count.
_FREQ_KEYS = ("save_freq",)
# Arguments that name a file or folder (filled in, inside the run folder).
PATH_KEYS = {
    "ModelCheckpoint": "filepath",
    "CSVLogger": "filename",
    "BackupAndRestore": "backup_dir",
    "TensorBoard": "log_dir",
}
# Callbacks a recipe cannot hold: they run Python code or reach the network. Each can
# still be given as an object from Python: kk.train(recipe, callbacks=[...]).
REFUSED = {
    "LambdaCallback": "runs Python functions, which a recipe (plain data) cannot hold",
    "LearningRateScheduler": "takes a Python function, which a recipe (plain data) cannot hold; "
    "use a learning-rate schedule in compile.optimizer, or ReduceLROnPlateau",
    "RemoteMonitor": "posts every epoch's metrics to a URL (a recipe from someone else must "
    "not send your data anywhere)",
}
# A placeholder Keras fills in a path: a plain name ({epoch}, {val_loss}) with an optional
# format spec ({epoch:02d}); no attribute or index lookup ({epoch.__doc__[3]} spells any
# character, and so any path).
_PLACEHOLDER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FORMAT_SPEC = re.compile(r"^[<>=^]?[+\- ]?#?0?\d*[,_]?(\.\d+)?[bcdeEfFgGnosxX%]?$")


def list_bundles() -> dict[str, str]:
    """Bundle name -> one-line description, for `kerakit list bundles`."""
    return BUNDLES.describe()


def bundle(name: str, where: Where = NOWHERE) -> list[dict]:
    """The expanded members of a bundle (a fresh copy)."""
    if not isinstance(name, str) or name not in BUNDLES:
        raise where.error(
            f"unknown callback bundle {show(name)}"
            f"{did_you_mean(name, BUNDLES) if isinstance(name, str) else ''}; "
            f"choose one of: {', '.join(BUNDLES)}, or give a list of Keras callbacks"
        )
    return copy.deepcopy(BUNDLES[name]["callbacks"])


def resolve_callbacks(value: Any = None, where: Where = NOWHERE) -> list[dict]:
    """Expand `train.callbacks` into an ordered list of ``{ClassName: kwargs}``.

    Args:
        value: a bundle name, a list of entries (``{Name: kwargs}`` or a bare
            ``Name``), or a mapping ``{bundle: NAME, Name: kwargs | false, ...}``.
            None means the default bundle, "standard".
        where: position of `train.callbacks` in the recipe.

    Returns:
        A list of one-key dicts, YAML-dumpable; `resolve_callbacks` returns it
        unchanged when given it again.

    Example:
        >>> resolve_callbacks({"bundle": "minimal", "CSVLogger": False})
        [{'TerminateOnNaN': {}}]
    """
    if value is None:
        value = DEFAULT_BUNDLE
    if isinstance(value, str):
        if value not in BUNDLES and _looks_like_class(value):
            raise where.error(
                f"{value!r} is not a bundle name; to use one callback write it as a list: "
                f"[{value}] (bundles: {', '.join(BUNDLES)})"
            )
        return bundle(value, where)
    if isinstance(value, (list, tuple)):
        return [_entry(item, where.at(i)) for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        return _with_overrides(value, where)
    raise where.error(
        f"expected a bundle name ({', '.join(BUNDLES)}), a list of callbacks or a mapping "
        f"with `bundle:` and overrides, got {type_name(value)} {show(value)}"
    )


def _looks_like_class(name: str) -> bool:
    return name[:1].isupper() and name.isidentifier()


def _check_name(name: Any, where: Where, extra: tuple = ()) -> str:
    # Class names are CamelCase; "package>Name" is a registered custom callback.
    if isinstance(name, str) and name in REFUSED:
        raise where.error(
            f"{name} cannot be used in a recipe: it {REFUSED[name]}; pass it from Python with "
            "kk.train(recipe, callbacks=[...]) if you trust it"
        )
    if isinstance(name, str) and (
        _looks_like_class(name) or (">" in name and _looks_like_class(name.split(">")[-1]))
    ):
        return name
    hint = did_you_mean(name, extra) if isinstance(name, str) and extra else ""
    raise where.error(
        f"expected a Keras callback class name such as 'EarlyStopping', got "
        f"{type_name(name)} {show(name)}{hint}"
    )


def _entry(item: Any, where: Where) -> dict:
    if isinstance(item, str):
        return {_check_name(item, where): {}}
    if isinstance(item, Mapping) and len(item) == 1:
        ((name, kwargs),) = item.items()
        _check_name(name, where)
        return {name: _kwargs(name, kwargs, where.at(name))}
    raise where.error(
        "each callback is a class name (`- TerminateOnNaN`) or one class name with its "
        f"arguments (`- EarlyStopping: {{patience: 5}}`), got {type_name(item)} {show(item)}"
    )


def _kwargs(name: str, kwargs: Any, where: Where) -> dict:
    if kwargs is None:
        return {}
    if not isinstance(kwargs, Mapping):
        raise where.error(
            f"the arguments of {name} must be a mapping of Keras arguments, such as "
            f"{{patience: 5}}, got {type_name(kwargs)} {show(kwargs)}"
        )
    out = {}
    for key, arg in kwargs.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise where.error(f"{show(key)} is not an argument name of {name}")
        if key in _FREQ_KEYS:
            check_save_freq(arg, where.at(key))
        if key == "monitor" and (not isinstance(arg, str) or not arg):
            raise where.at(key).error(
                f"monitor must be the name of a logged value such as 'val_loss', got "
                f"{type_name(arg)} {show(arg)}"
            )
        if isinstance(arg, float) and not math.isfinite(arg):
            # Keras takes NaN here silently (ReduceLROnPlateau(factor=nan) ends in a NaN rate)
            raise where.at(key).error(f"{name}'s {key!r} is {arg}; give a finite number")
        if PATH_KEYS.get(name) == key:
            check_path_template(arg, where.at(key))
        out[key] = copy.deepcopy(arg)
    return out


def path_placeholders(value: str) -> list[str]:
    """The placeholder names in a callback path (``best-{epoch:02d}.keras`` -> ['epoch'])."""
    return [field for _, field, _, _ in string.Formatter().parse(value) if field is not None]


def check_path_template(value: Any, where: Where = NOWHERE) -> str:
    """A callback path may hold plain placeholders only (``{epoch}``, ``{val_loss:.3f}``).

    Keras runs `str.format` on ModelCheckpoint's `filepath`; an attribute or index
    lookup in a placeholder (``{epoch.__doc__[3]}``) spells any character, so a path
    that looks like it stays in the run folder could land anywhere.
    """
    if not isinstance(value, str) or not value:
        raise where.error(
            f"expected a path inside the run folder, got {type_name(value)} {show(value)}"
        )
    try:
        fields = list(string.Formatter().parse(value))
    except ValueError as exc:
        raise where.error(
            f"{show(value)} is not a valid path template ({exc}); write braces as {{{{ and }}}}"
        ) from None
    for _, field, spec, conversion in fields:
        if field is None:
            continue
        if not _PLACEHOLDER.match(field) or conversion or not _FORMAT_SPEC.match(spec or ""):
            raise where.error(
                f"{show(value)}: the placeholder {{{field}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}} is not allowed; use a plain name such as {{epoch}} "
                "or {val_loss:.3f} (no attribute or index lookups)"
            )
    return value


def check_save_freq(value: Any, where: Where = NOWHERE) -> str | int:
    """`save_freq` is "epoch" or a positive number of batches (Keras accepts false, 0, -1)."""
    if value == "epoch" and isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise where.error(
        f"save_freq must be 'epoch' or a positive number of batches, got "
        f"{type_name(value)} {show(value)} (Keras would save after every batch)"
    )


def _with_overrides(value: Mapping, where: Where) -> list[dict]:
    base = value.get("bundle", "none")
    members = bundle(base, where.at("bundle"))
    for name, override in value.items():
        if name == "bundle":
            continue
        at = where.at(name)
        _check_name(name, at, extra=("bundle",))
        index = next((i for i, m in enumerate(members) if name in m), None)
        if override is False:
            if index is None:
                names = [next(iter(m)) for m in members]
                raise at.error(
                    f"cannot drop {name!r}: it is not in the {base!r} bundle"
                    f"{did_you_mean(name, names)}; members: {', '.join(names) or 'none'}"
                )
            members.pop(index)
            continue
        kwargs = {} if override is True else _kwargs(name, override, at)
        if index is None:
            members.append({name: kwargs})
        else:
            members[index][name].update(kwargs)
    return members
