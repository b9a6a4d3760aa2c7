"""The `compile:` section and the compile presets as data (no TensorFlow).

A preset fills `optimizer`, `loss` and `metrics`; anything the recipe (or the
caller) gives overrides it. A classification loss says which preset fits (and its
`from_logits` which metrics); else `activation`/`units` say which output layer the
preset expects, which is how a preset is inferred when none is given.
Optimizer, schedule, loss and metric names are checked against Keras while compiling
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
    "from_python",
]  # fmt: skip
# Values that kk.train may take as Keras objects (recorded by their Keras config, and
# named in `from_python`, a note: "these came from Python").
PYTHON_KEYS = ("optimizer", "loss", "metrics")
# The arguments of keras.optimizers.schedules' classes checked here: steps (`auto` where
# the run's length fills them in), rates (>= 0), other numbers, lists of numbers, flags.
AUTO_STEPS = ("decay_steps", "first_decay_steps")
_SCHEDULE_ARGS = {
    **dict.fromkeys(AUTO_STEPS, "steps"), "warmup_steps": "warmup",
    **dict.fromkeys(("initial_learning_rate", "end_learning_rate", "warmup_target"), "rate"),
    **dict.fromkeys(("decay_rate", "alpha", "t_mul", "m_mul", "power"), "number"),
    **dict.fromkeys(("boundaries", "values"), "numbers"), **dict.fromkeys(("staircase", "cycle"), "flag"),
}  # fmt: skip
# Keras's classification losses, however spelled (sparse_categorical_crossentropy,
# SparseCategoricalCrossentropy, ...), and the preset each implies.
_CLASSIFICATION_LOSSES = {
    "sparsecategoricalcrossentropy": "multiclass", "categoricalcrossentropy": "multiclass_onehot",
    "categoricalfocalcrossentropy": "multiclass_onehot", "binarycrossentropy": "binary",
    "bce": "binary", "binaryfocalcrossentropy": "binary",
}  # fmt: skip

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
            # with a loss from_logits: the same names, thresholds at logit 0 (probability 0.5)
            "logits_metrics": [
                {"BinaryAccuracy": {"threshold": 0.0, "name": "accuracy"}},
                {"Precision": {"thresholds": 0.0, "name": "precision"}},
                {"Recall": {"thresholds": 0.0, "name": "recall"}},
                {"AUC": {"from_logits": True, "name": "auc"}},
            ],
            "label_mode": "int",
            "activation": "sigmoid",
        },
        "multilabel": {
            "description": "any of N labels, multi-hot labels; N sigmoid units",
            "optimizer": "adam",
            "loss": "binary_crossentropy",
            "metrics": ["binary_accuracy", {"AUC": {"multi_label": True, "name": "auc"}}],
            "logits_metrics": [
                {"BinaryAccuracy": {"threshold": 0.0, "name": "binary_accuracy"}},
                {"AUC": {"multi_label": True, "from_logits": True, "name": "auc"}},
            ],
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


def loss_preset(loss: Any) -> tuple[str | None, bool, str]:
    """(the preset a classification loss implies, or None; whether it takes logits; its
    name) of a loss name or {Name: {args}}."""
    if isinstance(loss, str):
        name, logits = loss, False
    elif isinstance(loss, Mapping) and len(loss) == 1 and not by_output(loss):
        ((name, args),) = loss.items()
        logits = isinstance(args, Mapping) and args.get("from_logits") is True
    else:
        return None, False, ""
    task = _CLASSIFICATION_LOSSES.get(str(name).split(">")[-1].lower().replace("_", ""))
    return task, logits, str(name)


def takes_logits(section: Mapping) -> bool:
    """Whether a resolved compile section's (single) loss takes logits (`from_logits: true`):
    the model then outputs logits, so its pictures and `kerakit predict` apply a sigmoid
    or softmax before reading them as probabilities."""
    return loss_preset(section.get("loss"))[1]


def preset_metrics(preset: str, logits: bool = False) -> list:
    """A preset's metrics (a fresh copy); with `logits`, those that read logits."""
    entry = PRESETS[preset]
    return copy.deepcopy(
        entry.get("logits_metrics", entry["metrics"]) if logits else entry["metrics"]
    )


def infer_preset_name(
    activation: str | None, units: int | None, loss: Any = None
) -> tuple[str, str]:
    """The preset that fits an output layer and its loss, and why (for the user to read).

    A classification loss decides (with `from_logits: true` the output layer has no
    softmax or sigmoid); any other loss leaves it to the output layer's activation."""
    act = (activation or "linear").lower()
    task, logits, name = loss_preset(loss)
    if task is not None:
        preset = ("binary" if units == 1 else "multilabel") if task == "binary" else task
        said = f"{name} with from_logits: true" if logits else name
        why = f"from the loss {said} and {units} output unit{'s' * (units != 1)}"
        if logits and act in ("softmax", "sigmoid"):
            why += f"; but the output layer's {act} gives probabilities, not logits"
        elif not logits and act not in ("softmax", "sigmoid"):
            why += (
                f"; but the output layer's activation is {act!r}: give the loss from_logits: true"
            )
        return preset, why
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
        _check_learning_rate(out["optimizer"], where.at("optimizer"))
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
        out["metrics"] = preset_metrics(preset, loss_preset(out.get("loss"))[1])
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
    if section.get("from_python"):  # a note in a resolved recipe: these were Keras objects
        noted = section["from_python"]
        if not isinstance(noted, list) or any(k not in PYTHON_KEYS for k in noted):
            raise where.at("from_python").error(
                f"expected a list of {', '.join(PYTHON_KEYS)} (those given as Keras objects "
                f"in Python), got {S.show(noted)}"
            )
        out["from_python"] = list(noted)
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
        if (schedule := _schedule(out["optimizer"])) is not None:
            ((name, _),) = out["optimizer"].items()
            names.check_name("schedule", schedule, where.at("optimizer", name, "learning_rate"))
    if out.get("loss") is not None:
        walk(out["loss"], "loss", where.at("loss"), many=False)
    if out.get("metrics"):
        walk(out["metrics"], "metric", where.at("metrics"), many=True)


def _schedule(optimizer: Any) -> Mapping | None:
    """The {Schedule: {args}} of an optimizer {name: {learning_rate: ...}}, or None."""
    if isinstance(optimizer, Mapping) and len(optimizer) == 1:
        args = next(iter(optimizer.values()))
        if isinstance(args, Mapping) and isinstance(args.get("learning_rate"), Mapping):
            return args["learning_rate"]
    return None


def has_schedule(optimizer: Any) -> bool:
    """Whether an optimizer's learning rate is a schedule (which Keras cannot set: no
    ReduceLROnPlateau)."""
    return _schedule(optimizer) is not None


def _check_learning_rate(optimizer: Any, where: Where) -> None:
    """A positive number, `auto` (found by lr_find when training: kerakit.training.lr_find),
    or a schedule {Name: {args}} whose numbers are numbers."""
    if not isinstance(optimizer, Mapping):
        return
    ((name, args),) = optimizer.items()
    if "learning_rate" not in args:
        return
    at, lr = where.at(name, "learning_rate"), args["learning_rate"]
    if isinstance(lr, str):
        if lr == "auto":  # a constant rate, found by lr_find before the first epoch
            return
        from kerakit.errors import did_you_mean

        raise at.error(
            f"expected a positive number, 'auto' (found by lr_find when training) or a "
            f"schedule, got {S.show(lr)}{did_you_mean(lr, ['auto'])}"
        )
    if not isinstance(lr, Mapping):
        S.check_number(lr, at, minimum=0, exclusive_minimum=True)
        return
    if len(lr) != 1:
        raise at.error(
            "expected a number or one schedule of keras.optimizers.schedules such as "
            "{ExponentialDecay: {initial_learning_rate: 0.1, decay_steps: 1000, decay_rate: 0.96}}"
            f", got {S.show(lr)}"
        )
    ((schedule, kwargs),) = lr.items()
    S.check_mapping(kwargs or {}, at.at(schedule), f"the keyword arguments of {schedule!r}")
    args["learning_rate"] = {schedule: dict(kwargs or {})}
    for key, value in (kwargs or {}).items():
        w, kind = at.at(schedule, key), _SCHEDULE_ARGS.get(key)
        if value == "auto" and kind == "rate":
            raise w.error(
                "'auto' is a constant learning rate, which lr_find finds: a schedule's rates "
                "are numbers. Write learning_rate: auto without the schedule, or find a rate "
                "for it with `kerakit lr-find RECIPE` and write that number here"
            )
        if kind == "steps":  # "auto": the run's steps, epochs x steps per epoch
            S.check_auto_or_number(
                value, w, "'auto' or a number of steps", minimum=0, exclusive_minimum=True
            )
        elif kind in ("warmup", "rate") and not (key == "warmup_target" and value is None):
            S.check_number(value, w, minimum=0)
        elif kind == "number":
            S.check_number(value, w)
        elif kind == "numbers":
            if not isinstance(value, list):
                raise w.error(
                    f"expected a list of numbers, got {S.type_name(value)} {S.show(value)}"
                )
            for i, v in enumerate(value):
                S.check_number(v, w.at(i))
        elif kind == "flag":
            S.check_bool(value, w)


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
