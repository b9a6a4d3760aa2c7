"""Blocks of a functional graph: named groups of nodes with parameters, used N times.

    functional:
      blocks:
        down:
          params: {size: null, kernel: 3}     # null: the node must give it
          inputs: [x]
          graph:
            - c: {SeparableConv2D: {filters: $size, kernel_size: $kernel, padding: same}, in: x}
            - y: {Concatenate: {}, in: [c, x]}
          outputs: y
      graph:
        - b1:    {block: down, in: image, size: 64}
        - stack: {block: down, in: b1, repeat: {size: [128, 256]}}   # chained: out of one, into the next

Here, with no TensorFlow: the parameters a block takes, the `$name` references in its
layer arguments, a node's parameters, and `expand`, which unrolls the graph into plain
nodes (as `kerakit.models.builders` builds them and `kerakit.recipe.model` checks them).
An instance's inner layers are named `NODE_inner` (`NODE_2_inner` for the second of a
repeat); the layer that gives a block's output is named after the node itself.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from kerakit.errors import RecipeError, Where, did_you_mean
from kerakit.recipe import schema as S

RESERVED = ("block", "in", "repeat", "call")  # keys of a block node that are not parameters
MAX_NODES = 10_000  # nodes of the unrolled graph: a typo in `repeat:` must not eat the memory
_WHOLE = re.compile(r"\$(?:([A-Za-z_]\w*)|\{([A-Za-z_]\w*)\})")
_EMBEDDED = re.compile(r"\$\{([A-Za-z_]\w*)\}")


class InstanceWhere(Where):
    """A position in a block's definition, for one of its instances: errors name both."""

    def __init__(self, base: Where, context: str):
        super().__init__(base.file, base.positions, base.path)
        self.context = context

    def at(self, *keys) -> InstanceWhere:
        return InstanceWhere(super().at(*keys), self.context)

    def error(self, message: str, cls: type[RecipeError] = RecipeError) -> RecipeError:
        return super().error(f"{message} (in {self.context})", cls)


# --------------------------------------------------------------------------- parameters


def references(value: Any, path: tuple = ()) -> list[tuple[tuple, str]]:
    """Every `$name` / `${name}` inside a value, with the key path to it."""
    if isinstance(value, str):
        whole = _WHOLE.fullmatch(value)
        names = [whole.group(1) or whole.group(2)] if whole else _EMBEDDED.findall(value)
        return [(path, n) for n in names]
    if isinstance(value, Mapping):
        return [r for k, v in value.items() for r in references(v, (*path, k))]
    if isinstance(value, list):
        return [r for i, v in enumerate(value) for r in references(v, (*path, i))]
    return []


def substitute(value: Any, params: Mapping) -> Any:
    """The value with each parameter reference replaced: `$size` by the value itself (a
    number stays a number), `${size}` inside a longer string by its text."""
    if isinstance(value, str):
        if whole := _WHOLE.fullmatch(value):
            return copy.deepcopy(params[whole.group(1) or whole.group(2)])
        return _EMBEDDED.sub(lambda m: str(params[m.group(1)]), value)
    if isinstance(value, Mapping):
        return {k: substitute(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, params) for v in value]
    return value


def check_references(value: Any, params: Mapping | None, where: Where, block: str | None) -> None:
    """Refuse a `$name` that is no parameter of the block (or any, outside a block)."""
    for path, name in references(value):
        w = where.at(*path)
        if block is None:
            raise w.error(
                f"${name} is a block parameter, but this node is not inside a block; "
                "write the value itself, or move the node into functional.blocks"
            )
        if name not in params:
            raise w.error(
                f"${name} is not a parameter of block {block!r}{did_you_mean(name, params)}; "
                f"its parameters: {', '.join(params) or 'none'} (declare it under params:)"
            )


def resolve_params(value: Any, where: Where) -> dict:
    """`params: {size: null, kernel: 3}`: name -> default, null for one the node must give."""
    if value is None:
        return {}
    S.check_mapping(value, where, "a mapping of parameter name to default (null: required)")
    for name in value:
        if not isinstance(name, str) or not name.isidentifier():
            raise where.at(name).error(f"{name!r} cannot be a parameter name; use letters and _")
        if name in RESERVED:
            raise where.at(name).error(
                f"{name!r} is a key of a block node; name the parameter otherwise"
            )
    return copy.deepcopy(dict(value))


def check_instance(spec: Mapping, block: str, header: Mapping, n_in: int, where: Where) -> None:
    """A `{block: NAME, in: ..., PARAM: value, repeat: ...}` node against its block."""
    params, inputs = header["params"], header["inputs"]
    if n_in != len(inputs):
        raise where.at("in").error(
            f"block {block!r} takes {len(inputs)} input{'s' * (len(inputs) != 1)} "
            f"({', '.join(inputs)}), got {n_in}"
        )
    for key in spec:
        if key not in RESERVED and key not in params:
            raise where.at(key).error(
                f"unknown parameter {key!r} of block {block!r}{did_you_mean(key, params)}; "
                f"its parameters: {', '.join(params) or 'none'}"
            )
    varying = _check_repeat(spec.get("repeat"), block, params, n_in, spec, where.at("repeat"))
    for name, default in params.items():
        if default is None and name not in spec and name not in varying:
            raise where.error(
                f"block {block!r} needs parameter {name!r}; add `{name}: ...` to the node"
            )


def _check_repeat(value, block, params, n_in, spec, where: Where) -> dict:
    if value is None:
        return {}
    if n_in != 1:
        raise where.error("repeat chains one instance into the next: the block needs one input")
    if isinstance(value, int) and not isinstance(value, bool):
        S.check_number(value, where, integer=True, minimum=1, maximum=MAX_NODES)
        return {}
    S.check_mapping(value, where, "a count (repeat: 3) or lists of values (repeat: {size: [...]})")
    lengths = set()
    for key, values in value.items():
        if key not in params:
            raise where.at(key).error(
                f"unknown parameter {key!r} of block {block!r}{did_you_mean(key, params)}; "
                f"its parameters: {', '.join(params) or 'none'}"
            )
        if key in spec:
            raise where.at(key).error(f"{key!r} is given both beside repeat: and in it; keep one")
        if not isinstance(values, list) or not values:
            raise where.at(key).error(
                f"expected a list of values, one per instance, got {S.type_name(values)} "
                f"{S.show(values)}"
            )
        lengths.add(len(values))
    if len(lengths) > 1:
        raise where.error(f"the lists under repeat: differ in length ({sorted(lengths)})")
    if not value:
        raise where.error("repeat: needs a count or at least one list of values")
    return dict(value)


def instances(spec: Mapping) -> list[dict]:
    """A block node's instances: the parameters each gets from the node (not the defaults)."""
    fixed = {k: v for k, v in spec.items() if k not in RESERVED}
    repeat = spec.get("repeat")
    if repeat is None:
        return [fixed]
    if isinstance(repeat, int):
        return [dict(fixed) for _ in range(repeat)]
    n = len(next(iter(repeat.values())))
    return [{**fixed, **{k: v[i] for k, v in repeat.items()}} for i in range(n)]


def resolve_blocks(value: Any, where: Where, resolve_graph) -> dict:
    """`functional.blocks`: each block's parameters, inputs, graph and output.

    `resolve_graph(graph, where, inputs, headers, block)` resolves a block's graph as
    `kerakit.recipe.model` resolves the model's: (resolved list, {node: {"in": [...]}}).
    """
    if value is None:
        return {}
    S.check_mapping(value, where, "a mapping of block name to {params, inputs, graph, outputs}")
    headers = {}
    for bname, bdef in value.items():
        w = where.at(bname)
        if not isinstance(bname, str) or not bname.isidentifier():
            raise w.error(f"{bname!r} cannot be a block name; use letters, digits and _")
        S.check_mapping(bdef, w, "a mapping with params:, inputs:, graph: and outputs:")
        S.check_keys(bdef, ["params", "inputs", "graph", "outputs"], w,
                     required=("inputs", "graph", "outputs"), section=f"block {bname!r}")  # fmt: skip
        ins = [bdef["inputs"]] if isinstance(bdef["inputs"], str) else bdef["inputs"]
        if not (isinstance(ins, list) and ins and all(isinstance(x, str) for x in ins)) or len(
            set(ins)
        ) != len(ins):
            raise w.at("inputs").error("`inputs:` takes a name or a list of distinct names")
        params = resolve_params(bdef.get("params"), w.at("params"))
        headers[bname] = {"params": params, "inputs": list(ins)}
    out, uses = {}, {}
    for bname, bdef in value.items():
        w, head = where.at(bname), headers[bname]
        graph, nodes = resolve_graph(bdef["graph"], w.at("graph"), head["inputs"], headers, bname)
        outputs = bdef["outputs"]
        if isinstance(outputs, list) and len(outputs) == 1:
            outputs = outputs[0]
        if not isinstance(outputs, str) or outputs not in nodes:
            raise w.at("outputs").error(
                f"a block's outputs: is one of its nodes, got {S.show(outputs)}"
                f"{did_you_mean(outputs, nodes) if isinstance(outputs, str) else ''}"
            )
        used = ancestors([outputs], nodes)
        for name in head["inputs"]:
            if name not in used:
                raise w.at("inputs").error(f"input {name!r} of block {bname!r} leads to no output")
        out[bname] = {**head, "graph": graph, "outputs": outputs}
        uses[bname] = {"in": [s["block"] for item in graph for s in item.values() if "block" in s]}
    check_cycles(uses, {b: where.at(b) for b in uses}, what="block")
    return out


def check_cycles(nodes: dict, node_where: dict, what: str = "graph") -> None:
    state: dict[str, int] = {}

    def visit(n: str, stack: list) -> None:
        if n not in nodes:
            return
        if state.get(n) == 1:
            cycle = stack[stack.index(n) :] + [n]
            raise node_where[n].error(
                f"the graph has a cycle: {' -> '.join(cycle)}; a node cannot feed itself"
                if what == "graph"
                else f"blocks use each other in a loop: {' -> '.join(cycle)}; a block cannot hold itself"
            )
        if state.get(n) == 2:
            return
        state[n] = 1
        for ref in nodes[n]["in"]:
            visit(ref, stack + [n])
        state[n] = 2

    for n in nodes:
        visit(n, [])


def ancestors(outputs: list, nodes: dict) -> set:
    seen: set = set()
    todo = list(outputs)
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        todo.extend(nodes.get(n, {}).get("in", []))
    return seen


# --------------------------------------------------------------------------- unrolling


def expand(section: Mapping, where: Where) -> list[dict]:
    """The functional graph with every block node unrolled, in the graph's order.

    Each node is {"name", "in" (a name or a list, as written), "layer": (class, args) or
    None, "use": shared layer or None, "call": {...}, "where" (of its layer), "at" (of the
    node)}; names are unique.
    """
    out: list[dict] = []
    blocks = section.get("blocks") or {}
    _expand(section["graph"], blocks, where, where, {}, "", {}, out)
    seen = set(section["inputs"])
    for node in out:
        if node["name"] in seen:
            raise node["where"].error(
                f"this block instance names a layer {node['name']!r}, which another node or "
                "input is named already; rename the node"
            )
        seen.add(node["name"])
    return out


def _expand(graph, blocks, root, where, params, prefix, rename, out, context=None) -> None:
    """Append the nodes of `graph` (a block's, with `params`, when `context` is set);
    `root` is the functional section's position, `where` the graph's container's."""

    def name(ref: str) -> str:
        return rename.get(ref, prefix + ref)

    for i, item in enumerate(graph):
        ((node, spec),) = item.items()
        w = where.at("graph", i, node)
        w = InstanceWhere(w, context) if context else w
        ins = spec["in"]
        ins = name(ins) if isinstance(ins, str) else [name(r) for r in ins]
        if "block" in spec:
            _expand_block(node, substitute(spec, params), blocks, root, name(node), ins, out, w)
            continue
        call = substitute(spec.get("call") or {}, params)
        for key, value in call.items():
            if not _scalar(value):
                raise w.at("call", key).error(_not_scalar(value))
        entry = {"name": name(node), "in": ins, "layer": None, "use": None, "call": call, "at": w}
        if "use" in spec:
            entry["use"] = spec["use"]
            entry["where"] = w
        else:
            ((cls, args),) = ((k, v) for k, v in spec.items() if k not in ("in", "call"))
            entry["layer"] = (cls, substitute(args, params))
            entry["where"] = w.at(cls)
        if len(out) >= MAX_NODES:
            raise w.error(f"the graph unrolls to over {MAX_NODES} nodes; use fewer repeats")
        out.append(entry)


def _expand_block(node, spec, blocks, root, full, ins, out, w: Where) -> None:
    block = blocks[spec["block"]]
    runs = instances(spec)
    for k, given in enumerate(runs):
        label = full if len(runs) == 1 or k == len(runs) - 1 else f"{full}_{k + 1}"
        prefix = f"{full}_" if len(runs) == 1 else f"{full}_{k + 1}_"
        values = {**block["params"], **given}
        inputs = [ins] if isinstance(ins, str) else ins
        rename = dict(zip(block["inputs"], inputs)) | {block["outputs"]: label}
        shown = ", ".join(f"{p}={values[p]!r}" for p in given)
        context = f"block {spec['block']!r} at node {node!r}" + (
            f", instance {k + 1} of {len(runs)}" if len(runs) > 1 else ""
        )
        context += f" ({shown})" if shown else ""
        if isinstance(w, InstanceWhere):
            context += f", {w.context}"
        bw = root.at("blocks", spec["block"])
        _expand(block["graph"], blocks, root, bw, values, prefix, rename, out, context)
        ins = label


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _not_scalar(value: Any) -> str:
    return (
        f"a call argument takes a plain value (true/false, a number, a string or null), "
        f"got {S.type_name(value)} {S.show(value)}"
    )


def check_call(value: Any, where: Where) -> dict:
    """A node's `call: {training: false}`: keyword arguments of plain values."""
    S.check_mapping(value, where, "a mapping of call keyword arguments, like {training: false}")
    for key, v in value.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise where.at(key).error(f"{key!r} cannot be a keyword argument name")
        if key == "training":  # keras.src.models.functional.operation_fn, Keras 3.15
            raise where.at(key).error(
                "a node's training: has no effect in Keras 3: fit, evaluate and predict pass "
                "their own training to every layer of the model. To keep a BatchNormalization "
                "or a model used as a layer in inference mode, give it `trainable: false`; "
                "remove training from call:"
            )
        if not _scalar(v):
            raise where.at(key).error(_not_scalar(v))
    return copy.deepcopy(dict(value))


def topological(flat: list[dict]) -> list[dict]:
    """The unrolled nodes, each after the nodes it takes (else in the graph's order)."""
    by_name = {n["name"]: n for n in flat}
    order: list[dict] = []
    done: set = set()

    def visit(node: dict) -> None:
        if node["name"] in done:
            return
        done.add(node["name"])
        for ref in [node["in"]] if isinstance(node["in"], str) else node["in"]:
            if ref in by_name:
                visit(by_name[ref])
        order.append(node)

    for node in flat:
        visit(node)
    return order
