"""Errors of kerakit, and `Where`: the place in a recipe a value came from.

Every error a user can cause is a `KerakitError`. Errors about a recipe (or
about the Python values that stand in for one) are `RecipeError`s and say
where: ``FILE:LINE:COL: key.path[2].name: what is wrong, and what to do``.
The classes subclass built-ins so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

Path = tuple  # a key path: ("model", "sequential", 2, "Dense", "units")


class KerakitError(Exception):
    """Base class of every error kerakit raises on purpose."""


class RecipeError(KerakitError, ValueError):
    """A recipe (YAML or Python values) is wrong; the message says where and what to do."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        col: int | None = None,
        path: Path | str | None = None,
    ):
        self.message = message
        self.file = file
        self.line = line
        self.col = col
        self.path = format_path(path) if not isinstance(path, str) else path
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = []
        if self.file:
            loc = str(self.file)
            if self.line is not None:
                loc += f":{self.line}"
                if self.col is not None:
                    loc += f":{self.col}"
            where.append(loc)
        if self.path:
            where.append(self.path)
        return ": ".join([*where, self.message])


class DataError(KerakitError, ValueError):
    """Input data is missing, unreadable or does not fit the model."""


class ModelFileError(KerakitError, ValueError):
    """A model file or run folder is missing, corrupt or refused as unsafe."""


class ResumeError(KerakitError, RuntimeError):
    """A run cannot be resumed (changed recipe, missing backup, ...)."""


def format_path(path: Iterable | None) -> str:
    """("model", "sequential", 2, "Dense") -> "model.sequential[2].Dense"."""
    if not path:
        return ""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def did_you_mean(name: Any, choices: Iterable[str], n: int = 3) -> str:
    """A ' (did you mean 'X'?)' suffix, or '' when nothing is close."""
    choices = [str(c) for c in choices]
    name = str(name)
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.6)
    if not close:
        lower = {c.lower(): c for c in choices}
        close = [
            lower[c] for c in difflib.get_close_matches(name.lower(), list(lower), n=n, cutoff=0.6)
        ]
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"


class Where:
    """A position in a recipe: file, key path, and the line/column of each path.

    Concept modules take an optional ``where`` and raise ``where.at(key).error(msg)``
    so a mistake found while building (even one only Keras can find) still
    names the file, the line and the key path. With no recipe file behind the
    values (plain Python use), the error names just the key path.
    """

    def __init__(
        self,
        file: str | None = None,
        positions: Mapping[tuple, tuple[int, int]] | None = None,
        path: tuple = (),
    ):
        self.file = file
        self.positions = positions or {}
        self.path = tuple(path)

    def at(self, *keys) -> Where:
        return Where(self.file, self.positions, self.path + tuple(keys))

    def position(self) -> tuple:
        """(line, col) of the nearest recorded ancestor (a default has none of its own).

        A value set with ``--set KEY=VALUE`` is recorded as ``("--set KEY=VALUE",)``.
        """
        path = self.path
        while True:
            if path in self.positions:
                return self.positions[path]
            if not path:
                return None, None
            path = path[:-1]

    def error(self, message: str, cls: type[RecipeError] = RecipeError) -> RecipeError:
        pos = self.position()
        if len(pos) == 1:  # came from the command line, not the file
            return cls(message, file=pos[0], path=self.path)
        line, col = pos
        return cls(message, file=self.file, line=line, col=col, path=self.path)

    def __repr__(self) -> str:
        return f"Where({self.file!r}, {format_path(self.path)!r})"


NOWHERE = Where()


class RecipeDataError(RecipeError, DataError):
    """A mistake in the data found at a recipe position: both a `RecipeError` (it names the
    file, line and key path) and a `DataError`."""


def data_error(where: Where, key: str, message: str) -> RecipeDataError:
    """A DataError that names the recipe position and key path like a RecipeError."""
    return where.at(key).error(message, cls=RecipeDataError)


def where_of(obj: Any, *keys) -> Where:
    """The `Where` of a recipe-like object (a `Recipe` has `.where`), else a bare path."""
    base = getattr(obj, "where", None)
    if isinstance(base, Where):
        return base.at(*keys)
    return Where(path=keys)


class TrainingInterrupted(KerakitError, RuntimeError):
    """Training was stopped by SIGINT/SIGTERM after a resumable backup was written."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class TrainingDiverged(KerakitError, RuntimeError):
    """The loss became NaN or infinite; nothing non-finite was saved."""
