"""The `model:` section: one of sequential, functional or transfer, checked with no TensorFlow.

Layer names and arguments are checked against Keras itself while building
(`kerakit.models`); here the shape of the section is: one layer class per
entry, a functional graph whose nodes exist, with no cycle and no unused input.
A misspelled Keras layer, argument or activation is refused here too, from the
index of Keras's names when there is one (`kerakit.recipe.keras_names`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kerakit.errors import Where, did_you_mean
from kerakit.recipe import blocks, keras_names
from kerakit.recipe import schema as S
from kerakit.recipe.reader import load_yaml
from kerakit.recipe.transfer import resolve_transfer

# A Keras class name, or a registered one as `package>Name` (register_keras_serializable).
LAYER_NAME = re.compile(r"(?:[A-Za-z_][\w.]*>)?[A-Za-z_]\w*")

MODEL_KINDS = ["sequential", "functional", "transfer"]


DTYPES = ["float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64",
          "uint8", "bool", "string"]  # fmt: skip
MODEL_KEYS = ("sequential", "functional", "recipe")  # a shared layer that is a whole model
MAX_NESTING = 8  # recipes naming recipes


def resolve_model(section: Any, where: Where, *, image_size=None, within: tuple = ()) -> dict:
    """The `model:` section. `within`: the recipe files being resolved around this one (a
    recipe naming itself through `{recipe: ...}` layers is refused, not followed)."""
    S.check_mapping(section, where, "a mapping with one of sequential:, functional:, transfer:")
    S.check_keys(section, ["input_shape", "input_dtype", "name", *MODEL_KINDS], where,
                 section="model")  # fmt: skip
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
    for key in ("input_shape", "input_dtype"):
        if section.get(key) is not None and kind == "functional":
            raise where.at(key).error(
                f"a functional model names its inputs under functional.inputs; remove {key}"
            )
    if section.get("input_shape") is not None:
        out["input_shape"] = list(S.check_shape(section["input_shape"], where.at("input_shape")))
    if section.get("input_dtype") is not None:
        if kind == "transfer":
            raise where.at("input_dtype").error("a transfer model takes images; remove input_dtype")
        out["input_dtype"] = check_dtype(section["input_dtype"], where.at("input_dtype"))
    if kind == "sequential":
        out["sequential"] = resolve_sequential(section["sequential"], where.at("sequential"))
    elif kind == "functional":
        out["functional"] = resolve_functional(
            section["functional"], where.at("functional"), within=within
        )
    else:
        out["transfer"] = resolve_transfer(
            section["transfer"],
            where.at("transfer"),
            image_size=image_size,
            layers=resolve_sequential,
        )
    return out


def check_dtype(value: Any, where: Where) -> str:
    """A dtype name of an input: one of DTYPES."""
    return S.check_choice(value, DTYPES, where, "dtype")


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
    if not isinstance(name, str) or not LAYER_NAME.fullmatch(name):
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
    if (names := keras_names.checker()) is not None:  # as kerakit.models.builders will meet them
        for i, entry in enumerate(out):
            ((name, args),) = entry.items()
            names.check_layer(name, args, where.at(i, name))
    return out


def resolve_functional(section: Any, where: Where, *, within: tuple = ()) -> dict:
    S.check_mapping(section, where)
    S.check_keys(section, ["inputs", "layers", "blocks", "graph", "outputs"], where,
                 required=("inputs", "graph", "outputs"), section="functional")  # fmt: skip
    inputs = S.check_mapping(
        section["inputs"],
        where.at("inputs"),
        "a mapping of input name to shape (or {shape, dtype})",
    )
    if not inputs:
        raise where.at("inputs").error("a functional model needs at least one input")
    out_inputs = {n: _resolve_input(s, where.at("inputs", n)) for n, s in inputs.items()}
    shared = section.get("layers") or {}
    S.check_mapping(shared, where.at("layers"), "a mapping of shared layer name to layer")
    out_shared = {
        lname: _resolve_shared(lname, entry, where.at("layers", lname), within)
        for lname, entry in shared.items()
    }
    out_blocks = blocks.resolve_blocks(
        section.get("blocks"),
        where.at("blocks"),
        lambda graph, w, ins, heads, block: _resolve_graph(graph, w, ins, out_shared, heads, block),
    )
    out_graph, nodes = _resolve_graph(
        section["graph"], where.at("graph"), list(out_inputs), out_shared, out_blocks
    )
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
    used = blocks.ancestors(outputs_list, nodes)
    for name in out_inputs:
        if name not in used:
            raise where.at("inputs", name).error(
                f"input {name!r} does not lead to any output; connect it with `in: {name}` or remove it"
            )
    out = {"inputs": out_inputs, "layers": out_shared, "graph": out_graph, "outputs": outputs}
    if out_blocks:
        out = {"inputs": out_inputs, "layers": out_shared, "blocks": out_blocks,
               "graph": out_graph, "outputs": outputs}  # fmt: skip
    _check_keras_names(out_shared, blocks.expand(out, where), where)
    return out


def is_submodel(entry: Any) -> bool:
    """Whether a resolved shared layer of a functional model is a whole model."""
    return isinstance(entry, Mapping) and any(k in entry for k in MODEL_KEYS)


def _resolve_input(value: Any, where: Where) -> list | dict:
    """`name: [shape]`, or `name: {shape: [...], dtype: int32}`."""
    if not isinstance(value, Mapping):
        return list(S.check_shape(value, where))
    S.check_keys(value, ["shape", "dtype"], where, required=("shape",), section="an input")
    shape = value["shape"]
    out: dict = {"shape": [] if shape == [] else list(S.check_shape(shape, where.at("shape")))}
    if value.get("dtype") is not None:
        out["dtype"] = check_dtype(value["dtype"], where.at("dtype"))
    return out


def _resolve_shared(lname: str, entry: Any, where: Where, within: tuple) -> dict:
    if not is_submodel(entry):
        cls, args, _ = layer_entry(entry, where)
        return {cls: copy.deepcopy(args)}
    entry = dict(entry)
    trainable = S.check_bool(entry.pop("trainable", True), where.at("trainable"))
    if "recipe" not in entry:
        S.check_keys(entry, ["input_shape", "input_dtype", "name", "trainable", "sequential",
                             "functional"],
                     where, section=f"layer {lname!r} (a model)")  # fmt: skip
        section, at = resolve_model(entry, where, within=within), where
    else:
        S.check_keys(entry, ["recipe", "trainable"], where,
                     section=f"layer {lname!r} (another recipe's model)")  # fmt: skip
        section, at = _other_recipe(entry["recipe"], where.at("recipe"), within)
        section["name"] = lname
    if "sequential" in section and "input_shape" not in section:
        raise at.error(
            f"a sequential model used as layer {lname!r} needs input_shape (e.g. [28, 28, 1])"
        )
    return {"name": lname, **section} | ({} if trainable else {"trainable": False})


def _other_recipe(value: Any, where: Where, within: tuple) -> tuple[dict, Where]:
    """The resolved `model:` section of another recipe file, relative to this recipe's folder
    (only its model: is read; its data:, imports: and the rest are not)."""
    S.check_str(value, where, "the path of a recipe file, relative to this recipe")
    base = Path(where.file).resolve().parent if where.file else Path.cwd()
    path = (base / value).resolve()
    within = within or ((str(Path(where.file).resolve()),) if where.file else ())
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise where.error(f"{value!r} is not a recipe: name a .yaml or .yml file")
    if not path.is_file():
        raise where.error(f"no recipe file {str(path)!r}; the path is relative to {str(base)!r}")
    if str(path) in within or len(within) >= MAX_NESTING:
        chain = " -> ".join(Path(p).name for p in (*within, str(path)))
        raise where.error(
            f"recipes name each other in a loop ({chain}); a model cannot hold itself"
        )
    data = path.read_bytes() if path.stat().st_size <= 2_000_000 else b"x" * 2_000_000
    raw, positions = load_yaml(data, str(path))
    other = Where(str(path), positions)
    if not isinstance(raw, Mapping) or not isinstance(raw.get("model"), Mapping):
        raise where.error(f"{value!r} has no model: section to use as a layer")
    at = other.at("model")
    section = resolve_model(raw["model"], at, within=(*within, str(path)))
    if "transfer" in section:
        raise at.at("transfer").error(
            "a model used as a layer is sequential or functional, not transfer"
        )
    return section, at


def _resolve_graph(
    graph: Any, where: Where, inputs: list, shared: dict, headers: dict, block: str | None = None
) -> tuple[list, dict]:
    """The nodes of a graph (the model's, or a block's): resolved, referring to what exists,
    with no cycle. Returns the resolved list and {node: {"in": [...]}}."""
    if not isinstance(graph, list) or not graph:
        raise where.error("expected a list of nodes such as `- conv: {Conv2D: {...}, in: image}`")
    nodes: dict[str, dict] = {}
    node_where: dict[str, Where] = {}
    out_graph = []
    for i, item in enumerate(graph):
        w = where.at(i)
        if not isinstance(item, Mapping) or len(item) != 1:
            raise w.error(
                "each graph entry is one `node_name: {LayerClass: {...}, in: input_or_node}`"
            )
        ((node, spec),) = item.items()
        w = w.at(node)
        if node in inputs:
            raise w.error(f"node {node!r} has the same name as an input; rename it")
        if node in nodes:
            raise w.error(f"node {node!r} is defined twice; node names must be unique")
        resolved, ins_list = _resolve_node(node, spec, w, shared, headers, block)
        nodes[node] = {"in": ins_list}
        node_where[node] = w
        out_graph.append({node: resolved})
    known = list(inputs) + list(nodes)
    what = "an input nor a node" if block is None else f"an input of block {block!r} nor its node"
    for node, info in nodes.items():
        for ref in info["in"]:
            if ref not in known:
                raise (
                    node_where[node]
                    .at("in")
                    .error(
                        f"node {node!r} takes {ref!r}, which is neither {what}{did_you_mean(ref, known)}"
                    )
                )
    blocks.check_cycles(nodes, node_where)
    return out_graph, nodes


def _resolve_node(node, spec, w: Where, shared, headers, block) -> tuple[dict, list]:
    S.check_mapping(spec, w, "a mapping like {Dense: {units: 8}, in: x}, {use: shared_layer, "
                    "in: x} or {block: block_name, in: x}")  # fmt: skip
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
    params = headers[block]["params"] if block else None
    if "block" in spec:
        name = S.check_str(
            spec["block"], w.at("block"), "the name of a block under functional.blocks"
        )
        if name not in headers:
            raise w.at("block").error(
                f"no block named {name!r} under functional.blocks{did_you_mean(name, headers)}"
            )
        blocks.check_instance(spec, name, headers[name], len(ins_list), w)
        rest = {k: v for k, v in spec.items() if k not in ("block", "in")}
        blocks.check_references(rest, params, w, block)
        return copy.deepcopy(dict(spec)), ins_list
    if "use" in spec:
        S.check_keys(spec, ["use", "in", "call"], w, section=f"node {node!r}")
        S.check_str(spec["use"], w.at("use"), "the name of a layer under functional.layers")
        if spec["use"] not in shared:
            raise w.at("use").error(
                f"no shared layer named {spec['use']!r} under functional.layers"
                f"{did_you_mean(spec['use'], shared)}"
            )
        resolved = {"use": spec["use"], "in": ins}
    else:
        cls, args, _ = layer_entry(spec, w, extra=("in", "call"))
        blocks.check_references(args, params, w.at(cls), block)
        resolved = {cls: copy.deepcopy(args), "in": ins}
    if spec.get("call"):
        resolved["call"] = blocks.check_call(spec["call"], w.at("call"))
        blocks.check_references(resolved["call"], params, w.at("call"), block)
    return resolved, ins_list


def _check_keras_names(shared: dict, flat: list, where: Where) -> None:
    """Keras's names of the layers, in the order kerakit.models.builders makes them: the
    shared layers, then each node (blocks unrolled) after the nodes it takes."""
    if (names := keras_names.checker()) is None:
        return
    for lname, entry in shared.items():
        if not is_submodel(entry):  # a model's own layers were checked with its section
            ((cls, args),) = entry.items()
            names.check_layer(cls, args, where.at("layers", lname, cls), default_name=lname)
    for node in blocks.topological(flat):
        if node["layer"] is not None:
            cls, args = node["layer"]
            names.check_layer(cls, args, node["where"], default_name=node["name"])
