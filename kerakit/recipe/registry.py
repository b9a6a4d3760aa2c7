"""Registries: small, listable tables of named entries, each with a one-line description.

Four exist, each beside the recipe section that names its entries:
compile presets (`recipe/compile.py`), callback bundles (`recipe/callbacks.py`),
augmentation presets (`recipe/augment.py`) and backbones (`recipe/transfer.py`).
They share one shape; `kerakit.recipe.registries()` lists them all (`kerakit list`).

    PRESETS = Registry("presets", "compile presets: optimizer, loss and metrics for a task")
    PRESETS.register("regression", {"description": "real-valued targets", ...})
    PRESETS.describe()   # {"regression": "real-valued targets"}
"""

from __future__ import annotations

from typing import Any

REGISTRIES: dict[str, Registry] = {}  # kind -> registry, in the order they were made


class Registry(dict):
    """A dict of name -> entry whose entries each carry a one-line description.

    An entry is a mapping with a ``"description"`` key or an object with a
    ``description`` attribute. Registering a name twice is an error (TF Model
    Garden's rule): a second entry never silently replaces the first.

    Args:
        kind: the name `kerakit list KIND` knows it by ("presets", "bundles", ...).
        summary: one line saying what the entries are.
        entries: name -> entry, registered in order.
    """

    def __init__(self, kind: str, summary: str, entries: dict | None = None):
        super().__init__()
        if kind in REGISTRIES:
            raise ValueError(f"a registry of {kind!r} exists already")
        self.kind = kind
        self.summary = summary
        REGISTRIES[kind] = self
        for name, entry in (entries or {}).items():
            self.register(name, entry)

    def register(self, name: str, entry: Any) -> Any:
        """Add `entry` under `name`; returns the entry."""
        if name in self:
            raise ValueError(
                f"{self.kind[:-1] if self.kind.endswith('s') else self.kind} {name!r} is already "
                f"registered ({description(self[name])}); pick another name"
            )
        if not description(entry):
            raise ValueError(f"{name!r} needs a one-line description")
        self[name] = entry
        return entry

    def describe(self) -> dict[str, str]:
        """Name -> one-line description, in registration order."""
        return {name: description(entry) for name, entry in self.items()}


def description(entry: Any) -> str:
    """The one-line description of a registry entry."""
    if isinstance(entry, dict):
        return str(entry.get("description") or "")
    return str(getattr(entry, "description", "") or "")
