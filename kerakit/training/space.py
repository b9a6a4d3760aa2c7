"""`kerakit check` of a recipe with a `search:` section: the space, and the model built at
its corners (every range low, every range high, each choice at least once), so a value
that cannot build is refused before a search starts."""

from __future__ import annotations

import json

from kerakit.errors import RecipeError
from kerakit.recipe import Recipe, load_recipe
from kerakit.recipe.search import corners, grid_values
from kerakit.training.build import build_compiled


def check_space(recipe) -> list[dict]:
    """Resolves the recipe at every value a dimension can end at (each choice, both ends of
    a range); a value that does not fit is refused at its search entry. Returns the corners
    `kerakit check` builds."""
    spec = recipe["search"]
    where = recipe.where.at("search", "space")
    for key, dim in spec["space"].items():
        if dim["kind"] in ("float", "int"):
            values = [dim["low"], dim["high"]]
        else:
            values = grid_values(dim)
        for value in values:
            try:
                load_recipe(recipe, overrides=["search=null", f"{key}={json.dumps(value)}"])
            except RecipeError as exc:
                raise where.at(key).error(
                    f"the value {value!r} does not fit the recipe: {exc.message}"
                ) from None
    return corners(spec["space"])


def describe_space(spec: dict) -> list[str]:
    """A line per dimension, as `kerakit check` prints them."""
    lines = [f"search: {spec['metric']} ({spec['direction']}), sampler {spec['sampler']}, "
             f"pruner {spec['pruner']}, trials {spec['trials'] or 'until the timeout'}"]  # fmt: skip
    for key, dim in spec["space"].items():
        if dim["kind"] == "choice":
            what = f"one of {dim['choices']}"
        elif dim["kind"] == "bool":
            what = "true or false"
        else:
            step = f", step {dim['step']}" if dim.get("step") else ""
            what = f"{dim['kind']} in [{dim['low']}, {dim['high']}]{' (log)' if dim['log'] else ''}{step}"
        lines.append(f"  {key}: {what}")
    return lines


def check_search(recipe: Recipe, bundle, print_fn=print) -> None:
    """Prints the space and builds (and compiles) the model at each corner; a corner that
    does not build is refused at the search entry whose value breaks it."""
    for line in describe_space(recipe["search"]):
        print_fn(line)
    for point in check_space(recipe):
        try:
            model = _build_at(recipe, bundle, point)
        except Exception as exc:  # which value? each alone, at its own line
            for key, value in point.items():
                try:
                    _build_at(recipe, bundle, {key: value})
                except Exception as alone:  # noqa: BLE001 - Keras's own words go in the message
                    raise recipe.where.at("search", "space", key).error(
                        f"the model does not build with {key} = {value!r}: {_words(alone)}"
                    ) from None
            raise recipe.where.at("search", "space").error(
                f"the model does not build with {point}: {_words(exc)}"
            ) from None
        print_fn(f"  corner {point}: {model.count_params():,} parameters")


def _build_at(recipe: Recipe, bundle, point: dict):
    sets = [f"{k}={json.dumps(v)}" for k, v in point.items()]
    return build_compiled(load_recipe(recipe, overrides=["search=null", *sets]), bundle)[0]


def _words(exc: Exception) -> str:
    return getattr(exc, "message", None) or str(exc)
