"""Recipes: YAML (or Python values) in, a validated, resolved `Recipe` out.

This module knows YAML and the recipe schema, not TensorFlow: a recipe with a
schema error is rejected before TensorFlow is imported. What only Keras can
check (layer, optimizer, loss and metric names, shapes) is checked while
building, with the same file:line:col and key path.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kerakit import _schema as S
from kerakit._yaml import dump_yaml, load_yaml
from kerakit.errors import RecipeError, Where, did_you_mean
from kerakit.presets import PRESETS, by_output

TOP_KEYS = [
    "name",
    "seed",
    "deterministic",
    "data",
    "augment",
    "model",
    "compile",
    "train",
    "output",
]
MODEL_KINDS = ["sequential", "functional", "transfer"]
COMPILE_KEYS = [
    "preset", "optimizer", "loss", "metrics", "loss_weights", "steps_per_execution", "jit_compile",
]  # fmt: skip
TRAIN_KEYS = [
    "epochs", "callbacks", "distribute", "precision", "tpu", "verbose", "class_weight",
]  # fmt: skip
DISTRIBUTE = ["none", "mirrored", "multi_worker", "tpu"]
PRECISION = ["auto", "float32", "mixed_bfloat16", "mixed_float16"]
FORMATS = ["keras", "h5", "savedmodel"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


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

    def fingerprint(self, sections: Iterable[str] = ("data", "augment", "model", "compile")) -> str:
        """A hash of the sections that decide what a backup holds (for safe resume)."""
        part = {k: self._data.get(k) for k in sections}
        text = json.dumps(part, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def replace(self, section: str, value: Any) -> Recipe:
        """A copy with one section replaced (used to record build-time choices)."""
        data = self.to_dict()
        data[section] = value
        return Recipe(data, file=self.file, base_dir=self.base_dir, positions=self.positions)


# --------------------------------------------------------------------------- loading


def load_recipe(
    source: str | os.PathLike | Mapping | Recipe,
    *,
    overrides: Iterable[str] | Mapping[str, Any] | None = None,
) -> Recipe:
    """Load, validate and resolve a recipe.

    Args:
        source: a YAML file path, a mapping of plain values (as the YAML would
            give), or a `Recipe` (re-resolved, with `overrides` applied).
        overrides: ``["train.epochs=5", "model.sequential[0].Dense.units=32"]``
            (values typed like YAML) or a mapping of dotted path to value.

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
    data = resolve(raw, Where(file, positions), default_name=Path(file).stem if file else "recipe")
    return Recipe(data, file=file, base_dir=base_dir, positions=positions)


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
                node = node[part]
            else:
                if not isinstance(node, dict):
                    raise RecipeError(
                        "this is not a mapping; cannot set a key in it", file=label, path=where[:-1]
                    )
                if node.get(part) is None:
                    node[part] = {}
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


def resolve(raw: Any, where: Where, *, default_name: str = "recipe") -> dict:
    """Validate the whole recipe and fill every default (TF-free)."""
    S.check_mapping(raw, where, "a mapping with sections data:, model:, ...")
    S.check_keys(raw, TOP_KEYS, where, required=("data", "model"), section="the recipe")
    out: dict = {}
    name = raw.get("name", default_name)
    S.check_str(name, where.at("name"), "a name")
    if not _NAME.match(name) or ".." in name:
        raise where.at("name").error(
            f"{name!r} cannot be a run name: use letters, digits, '.', '_' and '-' only "
            "(it names a folder under output.dir, so no '/' or '..')"
        )
    out["name"] = name
    seed = raw.get("seed", 42)
    if seed is not None:
        S.check_number(seed, where.at("seed"), integer=True, minimum=0, maximum=2**32 - 1)
    out["seed"] = seed
    out["deterministic"] = S.check_bool(raw.get("deterministic", False), where.at("deterministic"))

    from kerakit.data_spec import resolve_data

    data = raw["data"]
    model = raw["model"] if isinstance(raw["model"], Mapping) else {}
    if "transfer" in model and isinstance(data, Mapping) and "rescale" not in data:
        # the backbone's own preprocess_input is inside a transfer model: feed it raw 0-255 pixels
        data = {**data, "rescale": None}
    out["data"] = resolve_data(data, where.at("data"))
    if raw.get("augment") is not None:
        from kerakit.augment_spec import resolve_augment

        out["augment"] = resolve_augment(raw["augment"], where.at("augment"), seed=seed)
    else:
        out["augment"] = None
    out["model"] = resolve_model(
        raw["model"], where.at("model"), image_size=out["data"].get("image_size")
    )
    out["compile"] = resolve_compile_section(raw.get("compile") or {}, where.at("compile"))
    out["train"] = resolve_train(raw.get("train") or {}, where.at("train"))
    out["output"] = resolve_output(raw.get("output") or {}, where.at("output"))
    return out


def resolve_model(section: Any, where: Where, *, image_size=None) -> dict:
    S.check_mapping(section, where, "a mapping with one of sequential:, functional:, transfer:")
    S.check_keys(section, ["input_shape", "name", *MODEL_KINDS], where, section="model")
    kinds = [k for k in MODEL_KINDS if k in section]
    if len(kinds) != 1:
        got = f"both {kinds[0]!r} and {kinds[1]!r}" if len(kinds) > 1 else "none of them"
        raise where.error(
            f"model needs exactly one of sequential, functional or transfer; got {got}"
        )
    kind = kinds[0]
    out: dict = {}
    if section.get("name") is not None:
        out["name"] = S.check_str(section["name"], where.at("name"))
    if section.get("input_shape") is not None:
        if kind == "functional":
            raise where.at("input_shape").error(
                "a functional model names its inputs under functional.inputs; remove input_shape"
            )
        out["input_shape"] = list(S.check_shape(section["input_shape"], where.at("input_shape")))
    if kind == "sequential":
        out["sequential"] = resolve_sequential(section["sequential"], where.at("sequential"))
    elif kind == "functional":
        out["functional"] = resolve_functional(section["functional"], where.at("functional"))
    else:
        from kerakit.transfer_spec import resolve_transfer

        out["transfer"] = resolve_transfer(
            section["transfer"], where.at("transfer"), image_size=image_size
        )
    return out


def layer_entry(entry: Any, where: Where, *, extra: Iterable[str] = ()) -> tuple[str, Any, dict]:
    """One `- Dense: {units: 64}` entry -> ("Dense", args, {extra keys}).

    args is a mapping of keyword arguments, a scalar or list of positional
    arguments (`Dense: 64`), or None. `extra` names non-layer keys that may sit
    beside the class name (a functional node's `in:`).
    """
    if isinstance(entry, str):
        return entry, {}, {}
    if not isinstance(entry, Mapping) or not entry:
        raise where.error(
            f"expected a layer such as `Dense: {{units: 64}}` or a bare name such as `Flatten`, "
            f"got {S.type_name(entry)} {S.show(entry)}"
        )
    rest = {k: v for k, v in entry.items() if k in extra}
    names = [k for k in entry if k not in extra]
    if len(names) != 1:
        what = "no layer class" if not names else f"{len(names)} layer classes ({', '.join(names)})"
        raise where.error(
            f"each entry holds exactly one layer class, found {what}; split it into separate entries"
        )
    name = names[0]
    args = entry[name]
    if args is None:
        args = {}
    if not isinstance(name, str) or not name.isidentifier():
        raise where.at(name).error(f"{name!r} is not a layer class name")
    return name, args, rest


def resolve_sequential(section: Any, where: Where) -> list:
    if not isinstance(section, list) or not section:
        raise where.error(
            f"expected a list of layers, got {S.type_name(section)} {S.show(section)}"
        )
    out = []
    for i, entry in enumerate(section):
        name, args, _ = layer_entry(entry, where.at(i))
        out.append({name: copy.deepcopy(args)})
    return out


def resolve_functional(section: Any, where: Where) -> dict:
    S.check_mapping(section, where)
    S.check_keys(section, ["inputs", "layers", "graph", "outputs"], where,
                 required=("inputs", "graph", "outputs"), section="functional")  # fmt: skip
    inputs = S.check_mapping(
        section["inputs"], where.at("inputs"), "a mapping of input name to shape"
    )
    if not inputs:
        raise where.at("inputs").error("a functional model needs at least one input")
    out_inputs = {n: list(S.check_shape(s, where.at("inputs", n))) for n, s in inputs.items()}
    shared = section.get("layers") or {}
    S.check_mapping(shared, where.at("layers"), "a mapping of shared layer name to layer")
    out_shared = {}
    for lname, entry in shared.items():
        cls, args, _ = layer_entry(entry, where.at("layers", lname))
        out_shared[lname] = {cls: copy.deepcopy(args)}
    graph = section["graph"]
    if not isinstance(graph, list) or not graph:
        raise where.at("graph").error(
            "expected a list of nodes such as `- conv: {Conv2D: {...}, in: image}`"
        )
    nodes: dict[str, dict] = {}
    node_where: dict[str, Where] = {}
    out_graph = []
    for i, item in enumerate(graph):
        w = where.at("graph", i)
        if not isinstance(item, Mapping) or len(item) != 1:
            raise w.error(
                "each graph entry is one `node_name: {LayerClass: {...}, in: input_or_node}`"
            )
        ((node, spec),) = item.items()
        w = w.at(node)
        if node in out_inputs:
            raise w.error(f"node {node!r} has the same name as an input; rename it")
        if node in nodes:
            raise w.error(f"node {node!r} is defined twice; node names must be unique")
        S.check_mapping(
            spec, w, "a mapping like {Dense: {units: 8}, in: x} or {use: shared_layer, in: x}"
        )
        if "in" not in spec:
            raise w.error(f"node {node!r} has no `in:`; say which input or node feeds it")
        ins = spec["in"]
        ins_list = [ins] if isinstance(ins, str) else ins
        if (
            not isinstance(ins_list, list)
            or not ins_list
            or not all(isinstance(x, str) for x in ins_list)
        ):
            raise w.at("in").error("`in:` takes a name or a list of names of inputs/nodes")
        if "use" in spec:
            S.check_keys(spec, ["use", "in"], w, section=f"node {node!r}")
            S.check_str(spec["use"], w.at("use"), "the name of a layer under functional.layers")
            if spec["use"] not in out_shared:
                raise w.at("use").error(
                    f"no shared layer named {spec['use']!r} under functional.layers"
                    f"{did_you_mean(spec['use'], out_shared)}"
                )
            resolved = {"use": spec["use"], "in": ins}
        else:
            cls, args, _ = layer_entry(spec, w, extra=("in",))
            resolved = {cls: copy.deepcopy(args), "in": ins}
        nodes[node] = {"in": ins_list}
        node_where[node] = w
        out_graph.append({node: resolved})
    known = list(out_inputs) + list(nodes)
    for node, info in nodes.items():
        for ref in info["in"]:
            if ref not in known:
                raise (
                    node_where[node]
                    .at("in")
                    .error(
                        f"node {node!r} takes {ref!r}, which is neither an input nor a node{did_you_mean(ref, known)}"
                    )
                )
    _check_cycles(nodes, node_where)
    outputs = section["outputs"]
    outputs_list = [outputs] if isinstance(outputs, str) else outputs
    if not isinstance(outputs_list, list) or not outputs_list:
        raise where.at("outputs").error("`outputs:` takes a node name or a list of node names")
    for j, o in enumerate(outputs_list):
        w = where.at("outputs") if isinstance(outputs, str) else where.at("outputs", j)
        if not isinstance(o, str):
            raise w.error(f"expected a node name, got {S.type_name(o)} {S.show(o)}")
        if o not in nodes:
            raise w.error(f"output {o!r} is not a node of the graph{did_you_mean(o, list(nodes))}")
    used = _ancestors(outputs_list, nodes)
    for name in out_inputs:
        if name not in used:
            raise where.at("inputs", name).error(
                f"input {name!r} does not lead to any output; connect it with `in: {name}` or remove it"
            )
    return {"inputs": out_inputs, "layers": out_shared, "graph": out_graph, "outputs": outputs}


def _check_cycles(nodes: dict, node_where: dict) -> None:
    state: dict[str, int] = {}

    def visit(n: str, stack: list) -> None:
        if n not in nodes:
            return
        if state.get(n) == 1:
            cycle = stack[stack.index(n) :] + [n]
            raise node_where[n].error(
                f"the graph has a cycle: {' -> '.join(cycle)}; a node cannot feed itself"
            )
        if state.get(n) == 2:
            return
        state[n] = 1
        for ref in nodes[n]["in"]:
            visit(ref, stack + [n])
        state[n] = 2

    for n in nodes:
        visit(n, [])


def _ancestors(outputs: list, nodes: dict) -> set:
    seen: set = set()
    todo = list(outputs)
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        todo.extend(nodes.get(n, {}).get("in", []))
    return seen


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
    spe = section.get("steps_per_execution", "auto")
    if spe != "auto":
        S.check_number(
            spe,
            where.at("steps_per_execution"),
            integer=True,
            minimum=1,
            what="'auto' or a positive integer",
        )
    out["steps_per_execution"] = spe
    jit = section.get("jit_compile", "auto")
    if jit != "auto":
        S.check_bool(jit, where.at("jit_compile"))
    out["jit_compile"] = jit
    return out


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


def resolve_train(section: Any, where: Where) -> dict:
    S.check_mapping(section, where)
    S.check_keys(section, TRAIN_KEYS, where, section="train")
    out: dict = {}
    out["epochs"] = S.check_number(
        section.get("epochs", 10), where.at("epochs"), integer=True, minimum=1
    )
    from kerakit.callbacks_spec import resolve_callbacks

    out["callbacks"] = resolve_callbacks(
        section.get("callbacks", "standard"), where.at("callbacks")
    )
    out["distribute"] = S.check_choice(
        section.get("distribute", "none"), DISTRIBUTE, where.at("distribute"), "distribute strategy"
    )
    if out["distribute"] == "tpu":
        tpu = section.get("tpu", "")
        if not isinstance(tpu, str):
            raise where.at("tpu").error(
                "`tpu:` is the TPU's name or address, a string ('' for the local TPU)"
            )
        out["tpu"] = tpu
    elif "tpu" in section:
        raise where.at("tpu").error("`tpu:` is only used with `distribute: tpu`")
    out["precision"] = S.check_choice(
        section.get("precision", "auto"), PRECISION, where.at("precision"), "precision"
    )
    verbose = section.get("verbose", "auto")
    if verbose != "auto":
        S.check_number(
            verbose,
            where.at("verbose"),
            integer=True,
            minimum=0,
            maximum=2,
            what="'auto', 0, 1 or 2",
        )
    out["verbose"] = verbose
    if section.get("class_weight") is not None:
        cw = section["class_weight"]
        if cw != "balanced":
            S.check_mapping(
                cw, where.at("class_weight"), "'balanced' or a mapping of class index to weight"
            )
            for k, v in cw.items():
                S.check_number(v, where.at("class_weight", k), minimum=0)
        out["class_weight"] = copy.deepcopy(cw)
    return out


def resolve_output(section: Any, where: Where) -> dict:
    S.check_mapping(section, where)
    S.check_keys(section, ["dir", "formats"], where, section="output")
    out = {"dir": S.check_str(section.get("dir", "runs"), where.at("dir"), "a folder path")}
    formats = section.get("formats", ["keras"])
    if isinstance(formats, str):
        formats = [formats]
    if not isinstance(formats, list) or not formats:
        raise where.at("formats").error(f"expected a list of formats from {FORMATS}")
    for i, f in enumerate(formats):
        S.check_choice(f, FORMATS, where.at("formats", i), "format")
    out["formats"] = list(dict.fromkeys(formats))
    return out
