"""The `search:` section: what a hyperparameter search varies, and how (no TensorFlow).

    search:
      metric: val_accuracy
      direction: maximize          # or inferred: max for accuracy/auc, min for losses
      trials: 20                   # and/or timeout: 2h
      sampler: tpe                 # tpe | random | grid
      pruner: median               # median | successive_halving | none
      space:
        compile.optimizer.adam.learning_rate: {float: [1.0e-4, 1.0e-2], log: true}
        model.sequential[0].Conv2D.filters: {choice: [16, 32, 64]}
        data.batch_size: {int: [16, 128], step: 16}

Each key of `space` is a key path of the same recipe (as `--set` takes it); `kerakit.search`
checks every value it could take by resolving the recipe with it, before any trial.
"""

from __future__ import annotations

import math
import re
from typing import Any

from kerakit.errors import Where, did_you_mean
from kerakit.recipe import schema as S

SEARCH_KEYS = ["metric", "direction", "trials", "timeout", "sampler", "pruner", "seed",
               "storage", "workers", "space"]  # fmt: skip
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "successive_halving", "none")
DIRECTIONS = ("maximize", "minimize")
KINDS = ("float", "int", "choice", "bool")
_MAXIMIZED = ("acc", "auc", "precision", "recall", "f1", "iou", "r2", "top_k")
_MINIMIZED = ("loss", "error", "mse", "mae", "mape", "msle", "crossentropy", "hinge")
TRIAL_ENV = "KERAKIT_TRIAL"  # a search trial's run: the study to report to (JSON)
PRUNED_FILE = "pruned.json"  # in a trial's run folder: the pruner stopped this run
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")


def resolve_search(section: Any, where: Where) -> dict:
    """Validates ``search:`` and fills its defaults; round-trips (resolving it again gives
    the same). The key paths are checked against the recipe by `kerakit.search`."""
    S.check_mapping(section, where, "a mapping with metric:, space: and trials: or timeout:")
    S.check_keys(section, SEARCH_KEYS, where, required=["metric", "space"], section="search")
    metric = S.check_str(section["metric"], where.at("metric"), "a logged metric such as val_loss")
    direction = section.get("direction") or infer_direction(metric)
    if direction is None:
        raise where.at("metric").error(
            f"cannot tell whether {metric!r} is better high or low; add direction: maximize "
            "or direction: minimize"
        )
    S.check_choice(direction, DIRECTIONS, where.at("direction"), "direction")
    trials = section.get("trials")
    if trials is not None:
        S.check_number(trials, where.at("trials"), integer=True, minimum=1)
    timeout = parse_duration(section.get("timeout"), where.at("timeout"))
    if trials is None and timeout is None:
        raise where.error("say when the search ends: trials: N, timeout: 2h, or both")
    sampler = S.check_choice(
        section.get("sampler", "tpe"), SAMPLERS, where.at("sampler"), "sampler"
    )
    pruner = S.check_choice(section.get("pruner", "median"), PRUNERS, where.at("pruner"), "pruner")
    seed = section.get("seed")
    if seed is not None:
        S.check_number(seed, where.at("seed"), integer=True, minimum=0, maximum=2**32 - 1)
    storage = section.get("storage")
    if storage is not None:
        S.check_str(storage, where.at("storage"), "a database URL such as sqlite:///study.db")
    workers = S.check_number(
        section.get("workers", 1), where.at("workers"), integer=True, minimum=1
    )
    space = S.check_mapping(
        section["space"], where.at("space"), "a mapping KEY.PATH: {float: [low, high]}"
    )
    if not space:
        raise where.at("space").error("is empty; name at least one key path to search")
    out_space = {str(k): _resolve_dimension(v, where.at("space", k)) for k, v in space.items()}
    if sampler == "grid":
        for key, dim in out_space.items():
            if dim["kind"] == "float" or (
                dim["kind"] == "int" and dim.get("step") is None and dim.get("log")
            ):
                raise where.at("space", key).error(
                    "sampler: grid takes only values it can list: choice, bool, or int with a "
                    "step; give {choice: [...]} here, or use sampler: tpe"
                )
    return {
        "metric": metric, "direction": direction, "trials": trials, "timeout": timeout,
        "sampler": sampler, "pruner": pruner, "seed": seed, "storage": storage,
        "workers": workers, "space": out_space,
    }  # fmt: skip


def infer_direction(metric: str) -> str | None:
    """maximize for accuracy-like metrics, minimize for losses and errors, else None."""
    name = metric.lower().removeprefix("val_")
    if any(w in name for w in _MINIMIZED):
        return "minimize"
    if any(w in name for w in _MAXIMIZED):
        return "maximize"
    return None


def parse_duration(value: Any, where: Where) -> float | None:
    """Seconds from 90, "90s", "30m", "2h", "1d" (None stays None)."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    m = _DURATION.match(str(value)) if isinstance(value, str) else None
    if not m or float(m.group(1)) <= 0:
        raise where.error(f"expected a duration such as 90s, 30m or 2h, got {S.show(value)}")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2) or "s"]


def _written(value: Any) -> Any:
    """A resolved dimension ({kind: float, low, high, ...}) as a recipe writes it, so that
    resolving a resolved recipe again gives the same."""
    if not (isinstance(value, dict) and value.get("kind") in KINDS):
        return value
    kind = value["kind"]
    if kind == "bool":
        return "bool"
    if kind == "choice":
        return {"choice": value.get("choices")}
    out = {kind: [value.get("low"), value.get("high")], "log": value.get("log", False)}
    return out if value.get("step") is None else {**out, "step": value["step"]}


def _resolve_dimension(value: Any, where: Where) -> dict:
    value = _written(value)
    if value == "bool" or value == {"bool": True} or value == {"bool": None}:
        return {"kind": "bool"}
    if not isinstance(value, dict) or not value:
        raise where.error(
            f"expected {{float: [low, high]}}, {{int: [low, high]}}, {{choice: [...]}} or bool, "
            f"got {S.show(value)}"
        )
    kinds = [k for k in value if k in KINDS]
    if len(kinds) != 1:
        extra = [k for k in value if k not in KINDS and k not in ("log", "step")]
        hint = did_you_mean(str(extra[0]), KINDS) if extra else ""
        raise where.error(f"expected exactly one of {', '.join(KINDS)}, got {S.show(value)}{hint}")
    kind = kinds[0]
    allowed = {"float": ["float", "log", "step"], "int": ["int", "log", "step"],
               "choice": ["choice"], "bool": ["bool"]}[kind]  # fmt: skip
    S.check_keys(value, allowed, where, section="search.space entry")
    if kind == "bool":
        return {"kind": "bool"}
    if kind == "choice":
        choices = value["choice"]
        if not isinstance(choices, list) or not choices:
            raise where.at("choice").error(
                f"expected a non-empty list of values, got {S.show(choices)}"
            )
        return {"kind": "choice", "choices": list(choices)}
    bounds = value[kind]
    if not (isinstance(bounds, list) and len(bounds) == 2):
        raise where.at(kind).error(f"expected [low, high], got {S.show(bounds)}")
    low, high = (
        S.check_number(b, where.at(kind, i), integer=kind == "int") for i, b in enumerate(bounds)
    )
    if not low < high:
        raise where.at(kind).error(f"the range [{low}, {high}] is empty; low must be below high")
    log = S.check_bool(value.get("log", False), where.at("log"))
    if log and low <= 0:
        raise where.at(kind).error(f"log: true needs a positive low end, got {low}")
    out: dict = {"kind": kind, "low": low, "high": high, "log": log}
    step = value.get("step")
    if step is not None:
        S.check_number(
            step, where.at("step"), integer=kind == "int", minimum=0, exclusive_minimum=True
        )
        if log:
            raise where.at("step").error("log: true and step cannot go together (Optuna's rule)")
        if kind == "int" and (high - low) % step:
            raise where.at("step").error(
                f"[{low}, {high}] is not a whole number of steps of {step}; make high {low + (high - low) // step * step}"
            )
    out["step"] = step
    return out


def corners(space: dict) -> list[dict]:
    """The values `kerakit check` builds the model at: every dimension low, every
    dimension high, and each choice at least once."""
    widest = max([len(d["choices"]) for d in space.values() if d["kind"] == "choice"] + [2])
    out = []
    for i in range(widest):
        point = {}
        for key, dim in space.items():
            if dim["kind"] == "choice":
                point[key] = dim["choices"][i % len(dim["choices"])]
            elif dim["kind"] == "bool":
                point[key] = bool(i % 2)
            else:
                point[key] = dim["low"] if i % 2 == 0 else dim["high"]
        out.append(point)
    return out


def grid_values(dim: dict) -> list:
    """The values of a dimension a grid sampler lists."""
    if dim["kind"] == "choice":
        return list(dim["choices"])
    if dim["kind"] == "bool":
        return [False, True]
    n = int(math.floor((dim["high"] - dim["low"]) / dim["step"] + 1e-9)) + 1
    return [dim["low"] + i * dim["step"] for i in range(n)]


def make_pruner(name: str):
    """Optuna's pruner by the recipe's name (median | successive_halving | none)."""
    import optuna

    return {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
        "successive_halving": lambda: optuna.pruners.SuccessiveHalvingPruner(),
        "none": lambda: optuna.pruners.NopPruner(),
    }[name]()
