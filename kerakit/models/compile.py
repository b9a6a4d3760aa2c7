"""Compile presets and `compile_model`: optimizer, loss and metrics by Keras name or object.

    kk.compile_model(model, preset="multiclass", optimizer={"adam": {"learning_rate": 1e-3}})

A preset (see `kerakit.recipe.compile.PRESETS`) fills optimizer, loss and metrics;
anything given overrides it. With no preset, one is inferred from the loss (a
classification loss, and its `from_logits`) or else the output layer (softmax ->
multiclass, one sigmoid unit -> binary, ...) and the choice is reported. Names resolve
through Keras itself (`keras.optimizers.get`, ...) and its registry of custom objects;
a learning rate may be a schedule by name, whose `decay_steps: auto` is the run's length.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import keras

from kerakit._compat import keep_loss_arguments, loss_config
from kerakit.errors import NOWHERE, RecipeError, Where, did_you_mean, format_path
from kerakit.models.names import as_recipe_value, get_schedule, resolve_object
from kerakit.recipe.compile import (
    AUTO_STEPS,
    PRESETS,
    by_output,
    infer_preset_name,
    loss_preset,
    preset_metrics,
)

__all__ = ["PRESETS", "compile_model", "infer_preset", "resolve_compile"]


def get_optimizer(value: Any, where: Where = NOWHERE) -> keras.optimizers.Optimizer:
    """An optimizer from a name, {name: {args}} (`learning_rate` a number, a schedule object
    or {Schedule: {args}}), or an object."""
    if isinstance(value, Mapping) and len(value) == 1:
        ((name, args),) = value.items()
        if isinstance(args, Mapping) and isinstance(args.get("learning_rate"), Mapping):
            rate = get_schedule(args["learning_rate"], where.at(name, "learning_rate"))
            value = {name: {**args, "learning_rate": rate}}
    return resolve_object(
        "optimizer", keras.optimizers, keras.optimizers.Optimizer, value, where, keep_strings=False
    )


def get_loss(value: Any, where: Where = NOWHERE):
    return resolve_object("loss", keras.losses, keras.losses.Loss, value, where, keep_strings=True)


def get_metric(value: Any, where: Where = NOWHERE):
    return resolve_object(
        "metric", keras.metrics, keras.metrics.Metric, value, where, keep_strings=True
    )


def _output_layers(model: keras.Model) -> dict[str, keras.layers.Layer]:
    """{output name: the layer that makes it}, looking inside nested models (a model
    wrapped with `placement: model` augmentation ends in the inner model)."""
    out = {}
    for tensor in model.outputs:
        layer = tensor._keras_history[0]
        name = layer.name
        while isinstance(layer, keras.Model) and len(getattr(layer, "outputs", None) or []) == 1:
            layer = layer.outputs[0]._keras_history[0]  # a subclassed model has no outputs: stop
        out[name] = layer
    return out


def _activation_of(layer) -> str | None:
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    act = getattr(layer, "activation", None)
    if act is None:
        return None
    name = getattr(act, "__name__", None) or str(act)
    return name


def _plain_loss(loss: Any) -> Any:
    """A loss as the recipe writes it (a loss object as {Class: config}), to infer from."""
    if loss is None or isinstance(loss, (str, Mapping, list)) or not hasattr(loss, "get_config"):
        return getattr(loss, "__name__", loss) if callable(loss) else loss
    config = loss_config(loss) if isinstance(loss, keras.losses.Loss) else loss.get_config()
    return {type(loss).__name__: config}


def _loss_of(loss: Any, output: str, index: int) -> Any:
    if by_output(loss):
        return loss.get(output)
    return loss[index] if isinstance(loss, list) and index < len(loss) else loss


def infer_preset(model: keras.Model, loss: Any = None) -> dict[str, tuple[str, str]]:
    """{output name: (preset, reason)} from each output's loss (a classification loss and
    its from_logits, when given) or else its layer's activation and units."""
    result = {}
    for i, ((name, layer), tensor) in enumerate(zip(_output_layers(model).items(), model.outputs)):
        own = _plain_loss(_loss_of(loss, name, i))
        result[name] = infer_preset_name(_activation_of(layer), tensor.shape[-1], own)
    return result


def resolve_compile(
    section: Mapping | None, model: keras.Model, *, where: Where = NOWHERE, steps=None
) -> tuple[dict, list[str]]:
    """Fill a compile section for this model: the preset (inferred if 'auto'), optimizer,
    loss, metrics (those that read logits where the loss takes logits), and a schedule's
    `decay_steps: auto` from `steps` ({"epochs", "per_epoch", "why"}; per_epoch None: not
    known yet, the epochs stand in).

    Returns the resolved section (plain values, YAML-dumpable, but for objects given in
    Python) and notes on what was chosen.
    """
    section = dict(section or {})
    notes: list[str] = []
    preset = section.get("preset", "auto")
    outputs = list(_output_layers(model))
    loss = section.get("loss")
    if preset == "auto":
        inferred = infer_preset(model, loss)
        if len(outputs) == 1:
            preset, why = inferred[outputs[0]]
            said = f"inferred {why}" if why.startswith("from ") else f"inferred: {why}"
            notes.append(f"compile preset: {preset} ({said})")
        else:
            per = {o: p for o, (p, _) in inferred.items()}
            notes.append(
                "compile presets per output: " + ", ".join(f"{o}={p}" for o, p in per.items())
            )
            if "loss" not in section:
                section["loss"] = {o: PRESETS[p]["loss"] for o, p in per.items()}
            if "metrics" not in section:
                section["metrics"] = {
                    o: preset_metrics(p, _logits(_loss_of(loss, o, i)))
                    for i, (o, p) in enumerate(per.items())
                }
            preset = "per_output"
    base = PRESETS.get(preset, {})
    logits = _logits(loss) and "logits_metrics" in base
    if logits and section.get("metrics") == base["metrics"]:
        del section["metrics"]  # the preset's metrics for probabilities: those for logits
    for key in ("optimizer", "loss", "metrics"):
        if key not in section and base:
            section[key] = (
                copy.deepcopy(base[key]) if key != "metrics" else preset_metrics(preset, logits)
            )
            if key == "metrics" and logits:
                notes.append(
                    f"compile metrics: {_names(section[key])} (thresholds at logit 0: the loss takes logits)"
                )
    section["preset"] = "auto" if preset == "per_output" else preset
    section.setdefault("optimizer", "adam")
    section["optimizer"] = _fill_auto_steps(
        section["optimizer"], steps, where.at("optimizer"), notes
    )
    if section.get("steps_per_execution", "auto") == "auto":
        section["steps_per_execution"] = default_steps_per_execution()
        notes.append(f"steps_per_execution: {section['steps_per_execution']} (auto)")
    if section.get("jit_compile", "auto") == "auto":
        section["jit_compile"] = default_jit_compile()
    return section, notes


def _logits(loss: Any) -> bool:
    return loss_preset(_plain_loss(loss))[1]


def _names(metrics: list) -> str:
    """The names the metrics are logged under."""
    return ", ".join(m if isinstance(m, str) else next(iter(m.values())).get("name", next(iter(m)))
                     for m in metrics)  # fmt: skip


def _fill_auto_steps(optimizer: Any, steps, where: Where, notes: list) -> Any:
    """`decay_steps: auto` (`first_decay_steps: auto`) of a schedule by name: the steps of
    the run, epochs x steps per epoch, less CosineDecay's `warmup_steps` (it decays after)."""
    if not (isinstance(optimizer, Mapping) and len(optimizer) == 1):
        return optimizer
    ((name, args),) = optimizer.items()
    rate = args.get("learning_rate") if isinstance(args, Mapping) else None
    if not (isinstance(rate, Mapping) and len(rate) == 1):
        return optimizer
    ((schedule, kwargs),) = rate.items()
    kwargs = dict(kwargs or {}) if isinstance(kwargs, Mapping) else kwargs
    autos = [k for k in AUTO_STEPS if isinstance(kwargs, dict) and kwargs.get(k) == "auto"]
    at = where.at(name, "learning_rate", schedule)
    if autos and steps is None:
        raise at.at(autos[0]).error(
            "'auto' is the number of training steps, which kk.train and kerakit check know "
            "from the data; with compile_model give a number"
        )
    for key in autos:
        warmup = kwargs.get("warmup_steps", 0) if key == "decay_steps" else 0
        warmup = warmup if isinstance(warmup, (int, float)) and not isinstance(warmup, bool) else 0
        epochs, per_epoch = steps["epochs"], steps["per_epoch"]
        kwargs[key] = max(1, int(epochs * (per_epoch or 1) - warmup))
        less = f" - {warmup:g} warm-up steps" if warmup else ""
        per = f"{per_epoch} steps per epoch" if per_epoch else "1 step per epoch for now"
        notes.append(
            f"{format_path(at.at(key).path)}: {kwargs[key]} (auto: {epochs} epochs x {per}"
            f"{less}; {steps['why']})"
        )
    return {name: {**args, "learning_rate": {schedule: kwargs}}} if autos else optimizer


def record_python_values(
    section: Mapping, keys, *, where: Where = NOWHERE
) -> tuple[dict, list[str]]:
    """The section with the Keras objects given in Python under `keys` written as a recipe
    writes them (`as_recipe_value`), `from_python` naming those keys, and notes: what each
    was recorded as, and where the record does not find the class again by its name."""
    out, notes = dict(section), []
    for key in keys:
        out[key] = as_recipe_value(section[key])
        shown = str(out[key]) if len(str(out[key])) < 120 else str(out[key])[:117] + "..."
        note = f"compile.{key}: given in Python, recorded in the resolved recipe as {shown}"
        try:
            _resolve_all(key, out[key], where.at(key))
        except RecipeError as exc:
            note += f" (a rerun of that recipe needs it registered with keras.saving.register_keras_serializable: {exc})"
        notes.append(note)
    out["from_python"] = sorted(set(out.get("from_python") or []) | set(keys))
    return out, notes


def _resolve_all(key: str, value: Any, where: Where) -> None:
    get = {"optimizer": get_optimizer, "loss": get_loss, "metrics": get_metric}[key]
    for part in value.values() if key != "optimizer" and by_output(value) else [value]:
        for item in part if isinstance(part, list) and key != "optimizer" else [part]:
            get(item, where)


def default_steps_per_execution() -> int:
    # 32 steps per call measured faster than 1 on CPU (docs/performance.md).
    return 32


def default_jit_compile() -> bool:
    # XLA measured slower on CPU (docs/performance.md); accelerators: Keras's own "auto" (on).
    import tensorflow as tf

    return any(d.device_type in ("GPU", "TPU") for d in tf.config.list_physical_devices())


def compile_model(
    model: keras.Model,
    preset: str | None = None,
    *,
    optimizer: Any = None,
    loss: Any = None,
    metrics: Any = None,
    loss_weights: Any = None,
    steps_per_execution: int | str = "auto",
    jit_compile: bool | str = "auto",
    where: Where = NOWHERE,
    verbose: bool = False,
) -> keras.Model:
    """Compile `model` from a preset plus overrides, all by Keras name.

    Args:
        model: a built `keras.Model`.
        preset: "multiclass", "multiclass_onehot", "binary", "multilabel",
            "regression", or None/"auto" to infer it from the loss or the output layer.
        optimizer: "adam", {"adam": {"learning_rate": 1e-3}}, or an optimizer object; a
            learning rate may be a schedule object or {"CosineDecay": {...}} by name.
        loss: a loss name (Keras's, one `compile` resolves such as "ce", or one
            registered with Keras), {name: args}, an object, or a mapping by output name.
        metrics: a list of those ("acc" too), or a mapping by output name.
        loss_weights: per output, for multi-output models.
        steps_per_execution: "auto" (chosen per device) or an integer.
        jit_compile: "auto" (off on CPU, where XLA measured slower) or a boolean.
        verbose: print the notes on what "auto" chose.

    Returns:
        The same model, compiled.

    Example:
        >>> compile_model(model, "multiclass", optimizer={"adam": {"learning_rate": 1e-3}})
    """
    section = {
        "preset": preset or "auto",
        "steps_per_execution": steps_per_execution,
        "jit_compile": jit_compile,
    }
    for key, value in (
        ("optimizer", optimizer),
        ("loss", loss),
        ("metrics", metrics),
        ("loss_weights", loss_weights),
    ):
        if value is not None:
            section[key] = value
    if section["preset"] not in ("auto", *PRESETS):
        raise where.at("preset").error(
            f"unknown preset {preset!r}{did_you_mean(preset, PRESETS)}; choose one of: {', '.join(PRESETS)}"
        )
    resolved, notes = resolve_compile(section, model, where=where)
    if verbose:
        for note in notes:
            print(note)
    apply_compile(model, resolved, where=where)
    return model


def apply_compile(model: keras.Model, section: Mapping, *, where: Where = NOWHERE) -> None:
    """model.compile(...) from a resolved compile section."""
    outputs = list(_output_layers(model))

    def per_output(value, fn, w, many):
        if by_output(value):
            for name in value:
                if name not in outputs:
                    raise w.at(name).error(
                        f"the model has no output named {name!r}{did_you_mean(name, outputs)}; its outputs are {outputs}"
                    )
            return {k: per_output(v, fn, w.at(k), many) for k, v in value.items()}
        if many:
            items = value if isinstance(value, list) else [value]
            return [fn(v, w.at(i) if isinstance(value, list) else w) for i, v in enumerate(items)]
        return fn(value, w)

    loss = section.get("loss")
    metrics = section.get("metrics")
    kwargs = {
        "optimizer": get_optimizer(section.get("optimizer", "adam"), where.at("optimizer")),
        "loss": per_output(loss, get_loss, where.at("loss"), many=False)
        if loss is not None
        else None,
        "metrics": per_output(metrics, get_metric, where.at("metrics"), many=True)
        if metrics
        else None,
        "steps_per_execution": section.get("steps_per_execution", 1),
        "jit_compile": section.get("jit_compile", False),
    }
    if isinstance(kwargs["loss"], list) and len(outputs) == 1:
        kwargs["loss"] = kwargs["loss"][0]
    if len(outputs) > 1 and isinstance(kwargs["metrics"], list):
        kwargs["metrics"] = {o: list(kwargs["metrics"]) for o in outputs}
    if len(outputs) > 1 and isinstance(kwargs["loss"], (str, keras.losses.Loss)):
        kwargs["loss"] = {o: kwargs["loss"] for o in outputs}
    lw = section.get("loss_weights")
    if lw is not None:
        if isinstance(lw, Mapping):
            for name in lw:
                if name not in outputs:
                    raise where.at("loss_weights", name).error(
                        f"the model has no output named {name!r}{did_you_mean(name, outputs)}"
                    )
        kwargs["loss_weights"] = dict(lw) if isinstance(lw, Mapping) else list(lw)
    try:
        model.compile(**kwargs)
    except (ValueError, TypeError) as exc:
        raise where.error(f"Keras refused to compile the model: {exc}") from None
    keep_loss_arguments(model)  # a saved Huber keeps its delta (kerakit._compat)
