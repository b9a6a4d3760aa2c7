"""Compile presets and `compile_model`: optimizer, loss and metrics by Keras name.

    kk.compile_model(model, preset="multiclass", optimizer={"adam": {"learning_rate": 1e-3}})

A preset (see `kerakit.recipe.compile.PRESETS`) fills optimizer, loss and metrics;
anything given overrides it. With no preset, one is inferred from the output
layer (softmax -> multiclass, one sigmoid unit -> binary, ...) and the choice
is reported. Names resolve through Keras itself (`keras.optimizers.get`, ...).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import keras

from kerakit.errors import NOWHERE, Where, did_you_mean
from kerakit.models.names import resolve_object
from kerakit.recipe.compile import PRESETS, by_output, infer_preset_name

__all__ = ["PRESETS", "compile_model", "infer_preset", "resolve_compile"]


def get_optimizer(value: Any, where: Where = NOWHERE) -> keras.optimizers.Optimizer:
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


def infer_preset(model: keras.Model) -> dict[str, tuple[str, str]]:
    """{output name: (preset, reason)} from each output layer's activation and units."""
    result = {}
    for (name, layer), tensor in zip(_output_layers(model).items(), model.outputs):
        units = tensor.shape[-1]
        result[name] = infer_preset_name(_activation_of(layer), units)
    return result


def resolve_compile(
    section: Mapping | None, model: keras.Model, *, where: Where = NOWHERE
) -> tuple[dict, list[str]]:
    """Fill a compile section for this model: the preset (inferred if 'auto'), optimizer, loss, metrics.

    Returns the resolved section (plain values, YAML-dumpable) and notes on what was chosen.
    """
    section = dict(section or {})
    notes: list[str] = []
    preset = section.get("preset", "auto")
    outputs = list(_output_layers(model))
    if preset == "auto":
        inferred = infer_preset(model)
        if len(outputs) == 1:
            preset, why = inferred[outputs[0]]
            notes.append(f"compile preset: {preset} (inferred: {why})")
        else:
            per = {o: p for o, (p, _) in inferred.items()}
            notes.append(
                "compile presets per output: " + ", ".join(f"{o}={p}" for o, p in per.items())
            )
            if "loss" not in section:
                section["loss"] = {o: PRESETS[p]["loss"] for o, p in per.items()}
            if "metrics" not in section:
                section["metrics"] = {
                    o: copy.deepcopy(PRESETS[p]["metrics"]) for o, p in per.items()
                }
            preset = "per_output"
    base = PRESETS.get(preset, {})
    for key in ("optimizer", "loss", "metrics"):
        if key not in section and base:
            section[key] = copy.deepcopy(base[key])
    section["preset"] = "auto" if preset == "per_output" else preset
    section.setdefault("optimizer", "adam")
    if section.get("steps_per_execution", "auto") == "auto":
        section["steps_per_execution"] = default_steps_per_execution()
        notes.append(f"steps_per_execution: {section['steps_per_execution']} (auto)")
    if section.get("jit_compile", "auto") == "auto":
        section["jit_compile"] = default_jit_compile()
    return section, notes


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
            "regression", or None/"auto" to infer it from the output layer.
        optimizer: "adam", {"adam": {"learning_rate": 1e-3}}, or an optimizer object.
        loss: a loss name, {name: args}, an object, or a mapping by output name.
        metrics: a list of those, or a mapping by output name.
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
