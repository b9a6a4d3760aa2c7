"""The `model:` section: one of sequential, functional or transfer, checked with no TensorFlow.

Layer names and arguments are checked against Keras itself while building
(`kerakit.models`); here the shape of the section is: one layer class per
entry, a functional graph whose nodes exist, with no cycle and no unused input.
A misspelled Keras layer, argument or activation is refused here too, from the
index of Keras's names when there is one (`kerakit.recipe.keras_names`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from kerakit.errors import Where, did_you_mean
from kerakit.recipe import keras_names
from kerakit.recipe import schema as S
from kerakit.recipe.transfer import resolve_transfer

MODEL_KINDS = ["sequential", "functional", "transfer"]


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
    if (names := keras_names.checker()) is not None:  # as kerakit.models.builders will meet them
        for i, entry in enumerate(out):
            ((name, args),) = entry.items()
            names.check_layer(name, args, where.at(i, name))
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
    _check_keras_names(out_shared, out_graph, nodes, where)
    return {"inputs": out_inputs, "layers": out_shared, "graph": out_graph, "outputs": outputs}


def _check_keras_names(shared: dict, graph: list, nodes: dict, where: Where) -> None:
    """Keras's names of the layers, in the order kerakit.models.builders makes them: the
    shared layers, then each node after the nodes it takes."""
    if (names := keras_names.checker()) is None:
        return
    for lname, entry in shared.items():
        ((cls, args),) = entry.items()
        names.check_layer(cls, args, where.at("layers", lname, cls), default_name=lname)
    order: list[str] = []

    def visit(n: str) -> None:
        if n in nodes and n not in order:
            for ref in nodes[n]["in"]:
                visit(ref)
            order.append(n)

    for n in nodes:
        visit(n)
    index = {next(iter(item)): i for i, item in enumerate(graph)}
    for node in order:
        spec = graph[index[node]][node]
        if "use" not in spec:
            ((cls, args),) = ((k, v) for k, v in spec.items() if k != "in")
            w = where.at("graph", index[node], node, cls)
            names.check_layer(cls, args, w, default_name=node)


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
