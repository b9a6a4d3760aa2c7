"""Old module paths that keep working for one more release, each warning once with its new home.

kerakit 0.1.0 kept 27 modules side by side in `kerakit/`; they now live in
one folder per stage of the flow. Code that imports an old path
(``from kerakit.checkpoint import SafeBackupAndRestore``) keeps working: the
old name is served from `MOVED` below, with one FutureWarning naming the new
path. A module that moved whole is the new module itself (the same objects,
so `isinstance` checks and monkeypatching agree); one that was split gives
each name from the first of its new modules that has it.

The table is the only place old paths live: nothing under `kerakit/` imports them.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

# old module -> its new module(s), in the order names are looked up
MOVED: dict[str, tuple[str, ...]] = {
    "kerakit._yaml": ("kerakit.recipe.reader",),
    "kerakit._schema": ("kerakit.recipe.schema",),
    "kerakit.presets": ("kerakit.recipe.compile",),
    "kerakit.data_spec": ("kerakit.recipe.data",),
    "kerakit.augment_spec": ("kerakit.recipe.augment",),
    "kerakit.transfer_spec": ("kerakit.recipe.transfer",),
    "kerakit.callbacks_spec": ("kerakit.recipe.callbacks",),
    "kerakit.plots": ("kerakit.report.plots",),
    "kerakit.compile": ("kerakit.models.compile", "kerakit.models.names"),
    "kerakit.safety": (
        "kerakit.saving.safety",
        "kerakit.saving.savedmodel",
        "kerakit.saving.bounds",
    ),
    "kerakit.run": ("kerakit.training.run", "kerakit.training.build", "kerakit.training.fit"),
    "kerakit.runfolder": ("kerakit.training.runfolder", "kerakit.report.history", "kerakit._files"),
    "kerakit.checkpoint": (
        "kerakit.training.backups",
        "kerakit.training.guards",
        "kerakit.training.callbacks",
        "kerakit.recipe.fingerprint",
        "kerakit._compat",
    ),
    "kerakit.callbacks": ("kerakit.training.callbacks", "kerakit.models.names"),
    "kerakit.distribute": (
        "kerakit.training.distribute",
        "kerakit.training.cluster",
        "kerakit._compat",
    ),
    "kerakit.transfer_run": ("kerakit.training.transfer",),
    "kerakit.transfer": (
        "kerakit.models.transfer",
        "kerakit.models.backbones",
        "kerakit.models.layers",
        "kerakit.recipe.transfer",
    ),
}

# names that changed as well as moving: old module -> {old name: "new.module.name"}
RENAMED: dict[str, dict[str, str]] = {
    "kerakit.checkpoint": {
        "recipe_hash": "kerakit.recipe.fingerprint.content_hash",
        "recipe_changes": "kerakit.recipe.fingerprint.changes",
    },
}


def _warn(old: str, new: tuple[str, ...]) -> None:
    where = " and ".join(new)
    warnings.warn(
        f"{old} has moved to {where}; import it from there (the old path is kept for one "
        "more release)",
        FutureWarning,
        stacklevel=4,
    )


class _Forward(types.ModuleType):
    """An old module that was split: each name comes from the first new module that has it."""

    def __init__(self, name: str, targets: tuple[str, ...]):
        super().__init__(name, f"Moved to {', '.join(targets)}.")
        self.__targets = [importlib.import_module(t) for t in targets]

    def __getattr__(self, name: str):
        for module in self.__targets:
            if hasattr(module, name):
                return getattr(module, name)
        renamed = RENAMED.get(self.__name__, {}).get(name)
        if renamed is not None:
            module, _, attr = renamed.rpartition(".")
            return getattr(importlib.import_module(module), attr)
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")

    def __dir__(self):
        return sorted({n for m in self.__targets for n in dir(m)})


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        targets = MOVED[spec.name]
        _warn(spec.name, targets)
        if len(targets) == 1:
            return importlib.import_module(targets[0])
        return _Forward(spec.name, targets)

    def exec_module(self, module):
        pass


_FINDER = _Finder()


def install() -> None:
    """Serve the old paths (called once by `kerakit/__init__.py`)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.append(_FINDER)
