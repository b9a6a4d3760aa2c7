"""Model builders: Sequential and Functional models from plain values.

    kk.build_model({"sequential": [{"Dense": {"units": 64, "activation": "relu"}},
                                   {"Dense": {"units": 10, "activation": "softmax"}}]},
                   input_shape=(784,))

Layers are Keras layers by class name with their Keras arguments (or layers
registered with `keras.saving.register_keras_serializable`). Mistakes only
Keras can find (a Conv2D on a flat input) come back as `RecipeError`s naming
the layer entry, its line, and the shapes involved.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import keras

from kerakit.errors import NOWHERE, RecipeError, Where, did_you_mean
from kerakit.models import budget
from kerakit.models.names import get_layer_class, instantiate
from kerakit.recipe import blocks
from kerakit.recipe.model import is_submodel

__all__ = ["build_model", "get_layer_class", "make_layer"]


def _is_layer_spec(value: Any) -> bool:
    if not (isinstance(value, Mapping) and len(value) == 1):
        return False
    name = next(iter(value))
    return (
        isinstance(name, str)
        and name[:1].isupper()
        and inspect.isclass(getattr(keras.layers, name, None))
    )


# Lookup layers read a vocabulary (or stop words) from a file when given a string: a recipe
# from someone else must not make kerakit read files it names (docs/security.md).
_FILE_ARGUMENTS = {"vocabulary", "stop_words", "idf_weights"}


def _refuse_file_arguments(cls: type, args: Any, where: Where) -> None:
    """A lookup layer given a string where it takes values reads that file: refuse it, in
    whatever form the arguments came (keywords, one positional value or a list)."""
    lookup = (keras.layers.StringLookup, keras.layers.IntegerLookup, keras.layers.TextVectorization)
    if not issubclass(cls, lookup):
        return
    if isinstance(args, Mapping):
        named = dict(args)
    else:
        positional = args if isinstance(args, list) else [args]
        params = [
            p.name
            for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self" and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        named = dict(zip(params, positional))
    for key in _FILE_ARGUMENTS & set(named):
        if isinstance(named[key], str):
            raise where.at(key).error(
                f"{cls.__name__}.{key} names a file; a recipe does not make kerakit read files: "
                "give the values as a list in the recipe, or adapt() the layer in Python"
            )


def make_layer(name: str, args: Any, where: Where = NOWHERE, *, default_name: str | None = None):
    """One layer from its class name and arguments (a mapping, a positional value or list)."""
    cls = get_layer_class(name, where)
    _refuse_file_arguments(cls, args, where)
    if isinstance(args, Mapping):
        # Nested layers (Bidirectional's `layer`, TimeDistributed's) are written as layer entries too.
        args = {
            k: make_layer(*next(iter(v.items())), where.at(k)) if _is_layer_spec(v) else v
            for k, v in args.items()
        }
        if default_name and "name" not in args:
            args["name"] = default_name
    elif default_name:
        layer = instantiate(cls, args, where, "layer")
        # Positional short forms cannot carry a name; set the node's name after creation.
        layer.name = default_name
        return layer
    return instantiate(cls, args, where, "layer")


def _shape_text(shape) -> str:
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
        return ", ".join(_shape_text(s) for s in shape)
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def _call_error(exc: Exception, name: str, where: Where, in_shape) -> RecipeError:
    if "OOM when allocating" in str(exc) or type(exc).__name__ == "ResourceExhaustedError":
        return where.error(
            f"{name}'s weights for an input of shape {_shape_text(in_shape)} do not fit in memory; "
            "use fewer units or filters, or a smaller input"
        )
    text = str(exc).strip().splitlines()
    first = " ".join(line.strip() for line in text[:3] if line.strip())
    if len(first) > 300:
        first = first[:297] + "..."
    return where.error(f"{name} cannot take an input of shape {_shape_text(in_shape)}: {first}")


def build_sequential(
    layers: list,
    input_shape,
    *,
    name: str | None = None,
    dtype: str | None = None,
    where: Where = NOWHERE,
) -> keras.Model:
    model = keras.Sequential(name=name)
    model.add(keras.Input(shape=tuple(input_shape), dtype=dtype))
    shape = (None, *input_shape)
    weights = 0
    for i, entry in enumerate(layers):
        ((cls_name, args),) = entry.items()
        w = where.at(i, cls_name)
        layer = make_layer(cls_name, args, w)
        weights = budget.check_layer(layer, shape, weights, cls_name, w)
        try:
            model.add(layer)
            shape = model.output_shape
        except Exception as exc:  # Keras raises ValueError, TypeError, tf errors ...
            raise _call_error(exc, cls_name, w, shape) from None
    return model


def _input(name: str, spec) -> keras.KerasTensor:
    """`[shape]`, or `{shape: [...], dtype: int32}`."""
    if isinstance(spec, Mapping):
        return keras.Input(shape=tuple(spec["shape"]), name=name, dtype=spec.get("dtype"))
    return keras.Input(shape=tuple(spec), name=name)


def _submodel(lname: str, spec: Mapping, where: Where) -> keras.Model:
    """A shared layer that is a whole model (inline, or another recipe's `model:`), untrained."""
    name = spec.get("name", lname)
    if "functional" in spec:
        model = build_functional(spec["functional"], name=name, where=where.at("functional"))
    else:
        model = build_sequential(spec["sequential"], spec["input_shape"], name=name,
                                 dtype=spec.get("input_dtype"), where=where.at("sequential"))  # fmt: skip
    model.trainable = spec.get("trainable", True)  # false: frozen, BatchNorm in inference mode
    return model


def _check_call(layer, call: Mapping, label: str, where: Where) -> None:
    """Refuse a call argument the layer's `call` does not take (Keras itself takes `training`)."""
    params = list(inspect.signature(layer.call).parameters.values())[1:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    known = [p.name for p in params if p.kind is not p.VAR_POSITIONAL]
    known += [] if "training" in known else ["training"]
    for key in call:
        if key not in known:
            raise where.at(key).error(
                f"{label} takes no call argument {key!r}{did_you_mean(key, known)}; "
                f"its call arguments: {', '.join(known)}"
            )


def build_functional(
    spec: Mapping, *, name: str | None = None, where: Where = NOWHERE
) -> keras.Model:
    inputs = {n: _input(n, s) for n, s in spec["inputs"].items()}
    shared = {}
    for lname, entry in (spec.get("layers") or {}).items():
        w = where.at("layers", lname)
        if is_submodel(entry):
            shared[lname] = _submodel(lname, entry, w)
            continue
        ((cls_name, args),) = entry.items()
        shared[lname] = make_layer(cls_name, args, w.at(cls_name), default_name=lname)
    tensors: dict[str, Any] = dict(inputs)
    weights = 0
    for node in blocks.topological(blocks.expand(spec, where)):
        w, ins = node["where"], node["in"]
        args_in = tensors[ins] if isinstance(ins, str) else [tensors[x] for x in ins]
        if node["use"] is not None:
            layer, label = shared[node["use"]], node["use"]
        else:
            cls_name, args = node["layer"]
            layer = make_layer(cls_name, args, w, default_name=node["name"])
            label = cls_name
        if not isinstance(args_in, list) and not layer.built:
            weights = budget.check_layer(layer, args_in.shape, weights, label, w)
        _check_call(layer, node["call"], label, node["at"].at("call"))
        try:
            tensors[node["name"]] = layer(args_in, **node["call"])
        except Exception as exc:
            shape = args_in.shape if not isinstance(args_in, list) else [t.shape for t in args_in]
            raise _call_error(exc, label, w, shape) from None
    outs = spec["outputs"]
    if isinstance(outs, str):
        outputs = tensors[outs]
    else:
        outputs = {o: tensors[o] for o in outs} if len(outs) > 1 else tensors[outs[0]]
    model_inputs = inputs if len(inputs) > 1 else next(iter(inputs.values()))
    return keras.Model(inputs=model_inputs, outputs=outputs, name=name)


def build_model(
    spec: Any,
    *,
    input_shape: tuple | None = None,
    num_classes: int | None = None,
    name: str | None = None,
    where: Where | None = None,
) -> keras.Model:
    """Build a `keras.Model` from a recipe, or from a `model:` section given as plain values.

    Args:
        spec: a `Recipe` (or a path to one), a mapping with one of
            ``sequential``, ``functional`` or ``transfer`` (the `model:` section),
            or a whole recipe mapping (with ``model:`` and ``data:``).
        input_shape: the input shape without the batch dimension, where the
            section has no ``input_shape``. With a recipe, it is otherwise
            taken from the data.
        num_classes: classes for a transfer head that does not say.
        name: the model's name (default: the recipe's name).
        where: where the section sits in a recipe (for error messages).

    Returns:
        An uncompiled `keras.Model`.

    Example:
        >>> model = build_model({"sequential": [{"Dense": {"units": 10, "activation": "softmax"}}]},
        ...                     input_shape=(784,))
    """
    from kerakit.recipe import Recipe, load_recipe, resolve_model

    recipe = None
    if isinstance(spec, (str,)) or hasattr(spec, "__fspath__"):
        spec = load_recipe(spec)
    if isinstance(spec, Mapping) and "model" in spec and not isinstance(spec, Recipe):
        spec = load_recipe(spec)
    if isinstance(spec, Recipe):
        recipe = spec
        section = recipe["model"]
        where = recipe.where.at("model")
        name = name or section.get("name") or recipe.name
    else:
        where = where or Where(path=("model",))
        section = resolve_model(spec, where)
        name = name or section.get("name")
    if "transfer" in section:
        return _build_transfer(section["transfer"], recipe, num_classes, where.at("transfer"), name)
    if "functional" in section:
        return build_functional(section["functional"], name=name, where=where.at("functional"))
    shape = section.get("input_shape") or input_shape
    if shape is None and recipe is not None:
        from kerakit.data import load_recipe_data

        shape = load_recipe_data(recipe).input_shape
    if shape is None:
        raise where.error(
            "the model needs an input shape: set model.input_shape (e.g. [28, 28, 1]) or pass input_shape="
        )
    return build_sequential(section["sequential"], shape, name=name,
                            dtype=section.get("input_dtype"), where=where.at("sequential"))  # fmt: skip


def _build_transfer(section: Mapping, recipe, num_classes, where: Where, name) -> keras.Model:
    from kerakit.models.transfer import build_transfer

    spec = dict(section)
    if isinstance(spec.get("head"), list):  # layers of your own, built like `sequential:`
        spec["head"] = [
            make_layer(*next(iter(entry.items())), where.at("head", i, next(iter(entry))))
            for i, entry in enumerate(spec["head"])
        ]
        return build_transfer(spec, where=where)
    head = dict(spec.get("head") or {})
    if head.get("classes") is None:
        head["classes"] = num_classes
    if head["classes"] is None and recipe is not None:
        from kerakit.data import load_recipe_data

        head["classes"] = load_recipe_data(recipe).num_classes
    spec["head"] = head
    preset = recipe["compile"].get("preset") if recipe is not None else None
    return build_transfer(spec, preset=None if preset in (None, "auto") else preset, where=where)
