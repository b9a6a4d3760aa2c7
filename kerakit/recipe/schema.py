"""Small, TensorFlow-free validators that every `*_spec` resolver shares.

Each takes the value, a `Where`, and raises `RecipeError` with the position,
the key path, what was received and what to do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from kerakit.errors import Where, did_you_mean


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_mapping(value: Any, where: Where, what: str = "a mapping") -> Mapping:
    if not isinstance(value, Mapping):
        raise where.error(f"expected {what}, got {type_name(value)} {show(value)}")
    return value


def check_keys(
    mapping: Mapping, allowed, where: Where, *, required=(), section: str = "this section"
) -> None:
    """Unknown keys get 'did you mean'; missing required keys are named."""
    allowed = list(allowed)
    for key in mapping:
        if key not in allowed:
            raise where.at(key).error(
                f"unknown key {key!r} in {section}{did_you_mean(key, allowed)}; "
                f"allowed keys: {', '.join(allowed)}"
            )
    for key in required:
        if key not in mapping:
            raise where.error(f"missing required key {key!r} in {section}")


def check_choice(value: Any, choices, where: Where, what: str = "value") -> str:
    choices = list(choices)
    if not isinstance(value, str) or value not in choices:
        raise where.error(
            f"unknown {what} {show(value)}{did_you_mean(value, choices) if isinstance(value, str) else ''}; "
            f"choose one of: {', '.join(map(str, choices))}"
        )
    return value


def check_bool(value: Any, where: Where) -> bool:
    if not isinstance(value, bool):
        raise where.error(f"expected true or false, got {type_name(value)} {show(value)}")
    return value


def check_str(value: Any, where: Where, what: str = "a string") -> str:
    if not isinstance(value, str) or not value:
        raise where.error(f"expected {what}, got {type_name(value)} {show(value)}")
    return value


def check_number(
    value: Any,
    where: Where,
    *,
    integer: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    exclusive_maximum: bool = False,
    what: str | None = None,
) -> float | int:
    """A finite int/float within bounds (booleans are not numbers here)."""
    kind = "an integer" if integer else "a number"
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok:
        hint = ""
        if isinstance(value, str):
            hint = " (write it without quotes)"
        raise where.error(f"expected {what or kind}, got {type_name(value)} {show(value)}{hint}")
    if isinstance(value, float) and not math.isfinite(value):
        raise where.error(f"expected a finite number, got {value!r}")
    if not integer and isinstance(value, int) and not _fits_float(value):
        # Too big for a float: every float(value) downstream would raise OverflowError.
        raise where.error(f"{show(value, 30)} is too large for a number; expected a finite number")
    low_bad = minimum is not None and (value <= minimum if exclusive_minimum else value < minimum)
    high_bad = maximum is not None and (value >= maximum if exclusive_maximum else value > maximum)
    if low_bad or high_bad:
        lo = "" if minimum is None else ("(" if exclusive_minimum else "[") + f"{minimum}"
        hi = "" if maximum is None else f"{maximum}" + (")" if exclusive_maximum else "]")
        if minimum is not None and maximum is not None:
            rng = f"in {lo}, {hi}"
        elif minimum is not None:
            rng = f"{'>' if exclusive_minimum else '>='} {minimum}"
        else:
            rng = f"{'<' if exclusive_maximum else '<='} {maximum}"
        raise where.error(f"{value!r} is out of range: expected {what or kind} {rng}")
    return value


def check_auto_or_number(value: Any, where: Where, what: str, **bounds) -> Any:
    """ "auto", or a number within `bounds` (as `check_number` takes them)."""
    if value != "auto":
        check_number(value, where, what=what, **bounds)
    return value


def _fits_float(value: int) -> bool:
    try:
        float(value)
    except OverflowError:
        return False
    return True


def check_shape(value: Any, where: Where, what: str = "a shape") -> tuple:
    """A list of positive integers (or null for a free dimension)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise where.error(
            f"expected {what} such as [28, 28, 1], got {type_name(value)} {show(value)}"
        )
    for i, dim in enumerate(value):
        if dim is None:
            continue
        check_number(dim, where.at(i), integer=True, minimum=1, what="a positive integer")
    return tuple(value)
