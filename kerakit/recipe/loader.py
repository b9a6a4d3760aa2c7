"""Recipes: YAML (or Python values) in, a validated, resolved `Recipe` out.

This module knows YAML and the recipe schema, not TensorFlow: a recipe with a
schema error is rejected before TensorFlow is imported. What only Keras can
check (layer, optimizer, loss and metric names, shapes) is checked while
building, with the same file:line:col and key path.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kerakit.errors import RecipeError, Where
from kerakit.recipe import schema as S
from kerakit.recipe.augment import resolve_augment
from kerakit.recipe.compile import resolve_compile_section
from kerakit.recipe.data import resolve_data
from kerakit.recipe.fingerprint import RESUME_SECTIONS, fingerprint
from kerakit.recipe.model import resolve_model
from kerakit.recipe.output import resolve_output
from kerakit.recipe.reader import dump_yaml, load_yaml
from kerakit.recipe.search import resolve_search
from kerakit.recipe.train import resolve_train
from kerakit.recipe.usercode import import_code, resolve_imports

TOP_KEYS = [
    "name",
    "imports",
    "seed",
    "deterministic",
    "data",
    "augment",
    "model",
    "compile",
    "train",
    "output",
    "search",
]
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_NAME = 100  # a folder name; file systems allow 255 bytes, with the timestamp folder below


class Recipe(Mapping):
    """A validated recipe with every default filled in, and where each value came from.

    Behaves as a read-only mapping of its sections (``recipe["model"]``).
    `to_yaml()` dumps it; loading that dump gives the same recipe.

    Attributes:
        file: the recipe file, or None for a recipe made from Python values.
        base_dir: the folder relative paths in the recipe are relative to.
        where: the root `Where`; ``recipe.where.at("model")`` locates a section.
    """

    def __init__(self, data: dict, *, file: str | None, base_dir: str, positions: dict):
        self._data = data
        self.file = file
        self.base_dir = base_dir
        self.positions = positions
        self.where = Where(file, positions)
        self.code: list[dict] = []  # what `imports:` imported (kerakit.recipe.usercode)

    def __getitem__(self, key):
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self):
        return len(self._data)

    def __repr__(self) -> str:
        return f"<Recipe {self.name!r} from {self.file or 'Python values'}>"

    @property
    def name(self) -> str:
        return self._data["name"]

    def to_dict(self) -> dict:
        """A deep copy of the resolved values."""
        return copy.deepcopy(self._data)

    def to_yaml(self) -> str:
        return dump_yaml(self._data)

    def fingerprint(self, sections: Iterable[str] = RESUME_SECTIONS) -> str:
        """A hash of the sections that decide what a backup holds (for safe resume)."""
        return fingerprint(self._data, sections)

    def replace(self, section: str, value: Any) -> Recipe:
        """A copy with one section replaced (used to record build-time choices)."""
        data = self.to_dict()
        data[section] = value
        copied = Recipe(data, file=self.file, base_dir=self.base_dir, positions=self.positions)
        copied.code = self.code
        return copied


# --------------------------------------------------------------------------- loading


def load_recipe(
    source: str | os.PathLike | Mapping | Recipe,
    *,
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
    run_imports: bool = True,
) -> Recipe:
    """Load, validate and resolve a recipe.

    Args:
        source: a YAML file path, a mapping of plain values (as the YAML would
            give), or a `Recipe` (re-resolved, with `overrides` applied).
        overrides: ``["train.epochs=5", "model.sequential[0].Dense.units=32"]``
            (values typed like YAML) or a mapping of dotted path to value.
        run_imports: import the code the recipe names under `imports:` (before the
            model is checked, so its registered names are known); `recipe.code` says
            what was imported. A run folder's recipe is loaded with False after its
            recorded files were checked (`kerakit.recipe.usercode`).

    Returns:
        A `Recipe` with every default filled in.

    Raises:
        RecipeError: with file:line:col and the key path of what is wrong.

    Example:
        >>> recipe = load_recipe("configs/digits_cnn.yaml", overrides=["train.epochs=3"])
    """
    if isinstance(source, Recipe):
        raw, file, base_dir, positions = (
            source.to_dict(),
            source.file,
            source.base_dir,
            dict(source.positions),
        )
    elif isinstance(source, Mapping):
        raw, file, base_dir, positions = copy.deepcopy(dict(source)), None, os.getcwd(), {}
    else:
        path = Path(source)
        file = str(source)
        if not path.is_file():
            hint = " (it is a folder)" if path.is_dir() else ""
            raise RecipeError(f"recipe file not found{hint}; check the path", file=file)
        data = path.read_bytes() if path.stat().st_size <= 2_000_000 else b"x" * 2_000_000
        raw, positions = load_yaml(data, file)
        base_dir = str(path.resolve().parent)
        if raw is None:
            raise RecipeError(
                "the recipe is empty; it needs at least `data:` and `model:`",
                file=file,
                line=1,
                col=1,
            )
    if overrides:
        apply_overrides(raw, overrides, positions)
    where = Where(file, positions)
    code: list[dict] = []
    if isinstance(raw, Mapping) and raw.get("imports") is not None:
        entries = resolve_imports(raw["imports"], where.at("imports"), base_dir)
        if run_imports:  # before the model is resolved: the code registers names it uses
            code = import_code(entries, base_dir, where.at("imports"))
    data = resolve(
        raw, where, default_name=Path(file).stem if file else "recipe", base_dir=base_dir
    )
    recipe = Recipe(data, file=file, base_dir=base_dir, positions=positions)
    recipe.code = code
    return recipe


_SEGMENT = re.compile(r"([^.\[\]]+)|\[(-?\d+)\]")


def parse_key_path(text: str) -> tuple:
    """'model.sequential[2].Dense.units' -> ('model', 'sequential', 2, 'Dense', 'units')."""
    parts: list = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        if text[pos] == "." and parts:
            pos += 1
        m = _SEGMENT.match(text, pos)
        if not m:
            raise RecipeError(
                f"cannot read the key path {text!r}; write it like train.epochs or model.sequential[0].Dense.units"
            )
        parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if not parts:
        raise RecipeError("an override needs a key path before '=', like train.epochs=5")
    return tuple(parts)


def apply_overrides(raw: dict, overrides, positions: dict) -> None:
    """Apply ``KEY=VALUE`` overrides (dotted paths; values typed like YAML) in place."""
    items = (
        overrides.items()
        if isinstance(overrides, Mapping)
        else [_split_override(o) for o in overrides]
    )
    for key, value in items:
        label = f"--set {key}={value}" if not isinstance(overrides, Mapping) else f"override {key}"
        try:
            path = parse_key_path(key)
        except RecipeError as exc:  # name the flag, as every other override error does
            raise RecipeError(exc.message, file=label) from None
        if not isinstance(overrides, Mapping):
            try:
                value, _ = load_yaml(value, label)
            except RecipeError as exc:
                raise RecipeError(f"cannot read the value: {exc.message}", file=label) from None
        node: Any = raw
        for i, part in enumerate(path[:-1]):
            where = path[: i + 1]
            if isinstance(part, int):
                if not isinstance(node, list) or not -len(node) <= part < len(node):
                    raise RecipeError(f"there is no item [{part}] here", file=label, path=where)
                if isinstance(node[part], str) and path[i + 1] == node[part]:
                    node[part] = {node[part]: {}}  # a bare layer name -> {Flatten: {}}
                node = node[part]
            else:
                if not isinstance(node, dict):
                    raise RecipeError(
                        "this is not a mapping; cannot set a key in it", file=label, path=where[:-1]
                    )
                if node.get(part) is None:
                    node[part] = {}
                elif isinstance(node[part], str) and path[i + 1] == node[part]:
                    node[part] = {node[part]: {}}  # `optimizer: adam` -> {adam: {}}
                node = node[part]
        last = path[-1]
        if isinstance(last, int):
            if not isinstance(node, list) or not -len(node) <= last < len(node):
                raise RecipeError(f"there is no item [{last}] here", file=label, path=path)
        elif not isinstance(node, dict):
            raise RecipeError(
                "this is not a mapping; cannot set a key in it", file=label, path=path[:-1]
            )
        node[last] = value
        for known in [p for p in positions if p[: len(path)] == path]:
            del positions[known]
        positions[path] = (label,)


def _split_override(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise RecipeError(
            f"needs KEY=VALUE, got {text!r}; for example --set train.epochs=5", file=f"--set {text}"
        )
    key, value = text.split("=", 1)
    return key.strip(), value


# --------------------------------------------------------------------------- resolving


def resolve(
    raw: Any, where: Where, *, default_name: str = "recipe", base_dir: str | None = None
) -> dict:
    """Validate the whole recipe and fill every default (TF-free; imports nothing)."""
    S.check_mapping(raw, where, "a mapping with sections data:, model:, ...")
    S.check_keys(raw, TOP_KEYS, where, required=("data", "model"), section="the recipe")
    out: dict = {}
    name = raw.get("name", default_name)
    S.check_str(name, where.at("name"), "a name")
    if not _NAME.fullmatch(name) or ".." in name or len(name) > MAX_NAME:
        raise where.at("name").error(
            f"{S.show(name)} cannot be a run name: use letters, digits, '.', '_' and '-' only, "
            f"at most {MAX_NAME} characters (it names a folder under output.dir, so no '/', "
            "'..' or line breaks)"
        )
    out["name"] = name
    seed = raw.get("seed", 42)
    if seed is not None:
        S.check_number(seed, where.at("seed"), integer=True, minimum=0, maximum=2**32 - 1)
    out["seed"] = seed
    out["deterministic"] = S.check_bool(raw.get("deterministic", False), where.at("deterministic"))
    if raw.get("imports"):  # only when given: recipes without code stay as they were
        out["imports"] = resolve_imports(
            raw["imports"], where.at("imports"), base_dir or os.getcwd()
        )

    data = raw["data"]
    model = raw["model"] if isinstance(raw["model"], Mapping) else {}
    if "transfer" in model and isinstance(data, Mapping) and "rescale" not in data:
        # the backbone's own preprocess_input is inside a transfer model: feed it raw 0-255 pixels
        data = {**data, "rescale": None}
    out["data"] = resolve_data(data, where.at("data"))
    if raw.get("augment") is not None:
        out["augment"] = resolve_augment(raw["augment"], where.at("augment"), seed=seed)
    else:
        out["augment"] = None
    out["model"] = resolve_model(
        raw["model"], where.at("model"), image_size=out["data"].get("image_size")
    )
    out["compile"] = resolve_compile_section(raw.get("compile") or {}, where.at("compile"))
    out["train"] = resolve_train(raw.get("train") or {}, where.at("train"))
    out["output"] = resolve_output(raw.get("output") or {}, where.at("output"))
    if raw.get("search") is not None:  # only when given: a trial's recipe and others as before
        out["search"] = resolve_search(raw["search"], where.at("search"))
    return out
