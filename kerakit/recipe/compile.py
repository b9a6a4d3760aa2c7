"""The `compile:` section and the compile presets as data (no TensorFlow).

A preset fills `optimizer`, `loss` and `metrics`; anything the recipe (or the
caller) gives overrides it. `activation`/`units` say which output layer the
preset expects, which is how a preset is inferred when none is given.
Optimizer, loss and metric names are checked against Keras while compiling
(`kerakit.models.compile`), and a misspelled one already here, from the index of
Keras's names when there is one (`kerakit.recipe.keras_names`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from kerakit.errors import Where
from kerakit.recipe import keras_names
from kerakit.recipe import schema as S
from kerakit.recipe.registry import Registry

COMPILE_KEYS = [
    "preset", "optimizer", "loss", "metrics", "loss_weights", "steps_per_execution", "jit_compile",
]  # fmt: skip

PRESETS = Registry(
    "presets",
    "compile presets: the optimizer, loss and metrics for a kind of task",
    {
        "multiclass": {
            "description": "one of N classes, integer labels; softmax output of N units",
            "optimizer": "adam",
            "loss": "sparse_categorical_crossentropy",
            "metrics": ["accuracy"],
            "label_mode": "int",
            "activation": "softmax",
        },
        "multiclass_onehot": {
            "description": "one of N classes, one-hot labels; softmax output of N units",
            "optimizer": "adam",
            "loss": "categorical_crossentropy",
            "metrics": ["accuracy"],
            "label_mode": "onehot",
            "activation": "softmax",
        },
        "binary": {
            "description": "yes/no, labels 0/1; one sigmoid unit",
            "optimizer": "adam",
            "loss": "binary_crossentropy",
            "metrics": ["accuracy", "precision", "recall", "auc"],
            "label_mode": "int",
            "activation": "sigmoid",
        },
        "multilabel": {
            "description": "any of N labels, multi-hot labels; N sigmoid units",
            "optimizer": "adam",
            "loss": "binary_crossentropy",
            "metrics": ["binary_accuracy", {"AUC": {"multi_label": True, "name": "auc"}}],
            "label_mode": "multihot",
            "activation": "sigmoid",
        },
        "regression": {
            "description": "real-valued targets; linear output",
            "optimizer": "adam",
            "loss": "mse",
            "metrics": ["mae"],
            "label_mode": "float",
            "activation": "linear",
        },
    },
)


def infer_preset_name(activation: str | None, units: int | None) -> tuple[str, str]:
    """The preset that fits an output layer, and why (for the user to read)."""
    act = (activation or "linear").lower()
    if act == "softmax":
        return "multiclass", f"the output layer is softmax with {units} units"
    if act == "sigmoid":
        if units == 1:
            return "binary", "the output layer is one sigmoid unit"
        return "multilabel", f"the output layer is sigmoid with {units} units"
    return "regression", f"the output layer's activation is {act!r}"


def by_output(value) -> bool:
    """Whether a `loss`/`metrics` value is a mapping by output name.

    ``{digit: sparse_categorical_crossentropy, parity: binary_crossentropy}`` is by
    output; ``{SparseCategoricalCrossentropy: {from_logits: true}}`` (one name with
    its arguments) is a single loss.
    """
    from collections.abc import Mapping

    if not isinstance(value, Mapping):
        return False
    return len(value) != 1 or isinstance(next(iter(value.values())), (list, str))


def _check_named(value: Any, where: Where, what: str) -> Any:
    """A name, {name: {args}}, or (for metrics/losses by output) a mapping of those."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and len(value) == 1:
        ((name, args),) = value.items()
        if args is None:
            return {name: {}}
        S.check_mapping(args, where.at(name), f"the keyword arguments of {what} {name!r}")
        return {name: dict(args)}
    example = {
        "loss": "'mse' or a mapping {Huber: {delta: 2.0}}",
        "metric": "'accuracy' or a mapping {AUC: {curve: PR}}",
    }
    ex = example.get(what, "'adam' or a mapping {adam: {learning_rate: 0.001}}")
    raise where.error(
        f"expected {'an' if what[0] in 'aeiou' else 'a'} {what} name such as {ex}, got {S.type_name(value)} {S.show(value)}"
    )


def resolve_compile_section(section: Any, where: Where) -> dict:
    S.check_mapping(section, where)
    S.check_keys(section, COMPILE_KEYS, where, section="compile")
    out: dict = {}
    preset = section.get("preset", "auto")
    S.check_choice(preset, ["auto", *PRESETS], where.at("preset"), "preset")
    out["preset"] = preset
    base = PRESETS.get(preset, {})
    if "optimizer" in section:
        out["optimizer"] = _check_named(section["optimizer"], where.at("optimizer"), "optimizer")
        _check_lr(out["optimizer"], where.at("optimizer"))
    elif base:
        out["optimizer"] = base["optimizer"]
    if "loss" in section:
        out["loss"] = _check_loss_or_metrics(section["loss"], where.at("loss"), "loss", many=False)
    elif base:
        out["loss"] = base["loss"]
    if "metrics" in section:
        out["metrics"] = _check_loss_or_metrics(
            section["metrics"], where.at("metrics"), "metric", many=True
        )
    elif base:
        out["metrics"] = copy.deepcopy(base["metrics"])
    if section.get("loss_weights") is not None:
        lw = section["loss_weights"]
        if isinstance(lw, Mapping):
            for k, v in lw.items():
                S.check_number(v, where.at("loss_weights", k), minimum=0)
        elif isinstance(lw, list):
            for i, v in enumerate(lw):
                S.check_number(v, where.at("loss_weights", i), minimum=0)
        else:
            raise where.at("loss_weights").error(
                "expected a mapping of output name to weight, or a list"
            )
        out["loss_weights"] = copy.deepcopy(lw)
    out["steps_per_execution"] = S.check_auto_or_number(
        section.get("steps_per_execution", "auto"), where.at("steps_per_execution"),
        "'auto' or a positive integer", integer=True, minimum=1,
    )  # fmt: skip
    jit = section.get("jit_compile", "auto")
    if jit != "auto":
        S.check_bool(jit, where.at("jit_compile"))
    out["jit_compile"] = jit
    _check_keras_names(out, where)
    return out


def _check_keras_names(out: dict, where: Where) -> None:
    """Keras's names of the optimizer, losses and metrics, walked as
    kerakit.models.compile.apply_compile walks them."""
    if (names := keras_names.checker()) is None:
        return

    def walk(value: Any, kind: str, w: Where, many: bool) -> None:
        if by_output(value):
            for key, v in value.items():
                walk(v, kind, w.at(key), many)
        elif many and isinstance(value, list):
            for i, v in enumerate(value):
                names.check_name(kind, v, w.at(i))
        else:
            names.check_name(kind, value, w)

    if "optimizer" in out:
        names.check_name("optimizer", out["optimizer"], where.at("optimizer"))
    if out.get("loss") is not None:
        walk(out["loss"], "loss", where.at("loss"), many=False)
    if out.get("metrics"):
        walk(out["metrics"], "metric", where.at("metrics"), many=True)


def _check_lr(optimizer: Any, where: Where) -> None:
    if isinstance(optimizer, Mapping):
        ((name, args),) = optimizer.items()
        if "learning_rate" in args and not isinstance(args["learning_rate"], Mapping):
            S.check_number(
                args["learning_rate"],
                where.at(name, "learning_rate"),
                minimum=0,
                exclusive_minimum=True,
            )


def _check_loss_or_metrics(value: Any, where: Where, what: str, *, many: bool) -> Any:
    def one(v, w):
        if many:
            if isinstance(v, list):
                return [_check_named(x, w.at(i), what) for i, x in enumerate(v)]
            return [_check_named(v, w, what)]
        return _check_named(v, w, what)

    if by_output(value):  # {digit: sparse_categorical_crossentropy, parity: binary_crossentropy}
        return {k: one(v, where.at(k)) for k, v in value.items()}
    if isinstance(value, list) and not many:
        return [_check_named(x, where.at(i), what) for i, x in enumerate(value)]
    return one(value, where)


def pipeline_label_mode(preset: str) -> str:
    """`make_pipeline`'s label mode for a preset: "onehot" converts class ids; "int" passes
    labels as given (class ids, 0/1, multi-hot rows or real-valued targets)."""
    return "onehot" if PRESETS.get(preset, {}).get("label_mode") == "onehot" else "int"
