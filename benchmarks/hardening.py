"""Hardening figures: broken recipes fuzzed through `kerakit check`, raw tracebacks counted.

Every shipped recipe in ``configs/`` is mutated by a seeded generator (deleted
keys, wrong types, out-of-range values, unknown names, swapped sections,
truncated YAML, deep nesting, invalid UTF-8, YAML 1.1 traps, duplicate keys,
tags, alias bombs, empty files, bad ``--set`` flags) and run in-process through
what ``kerakit check`` runs: ``load_recipe`` (the TensorFlow-free schema stage),
then, for a sampled share, ``kerakit.training.run.check`` (Keras builds and compiles the
model). Each case must pass, or raise a `KerakitError` that says where
(``FILE:LINE:`` or the ``--set`` flag) and which key; anything else is a raw
traceback, and so is a case that runs past its time limit.

    python benchmarks/hardening.py                 # 2,000 recipes, ~140 built with Keras
    python benchmarks/hardening.py -n 20000 --seed 7

`tests/test_fuzz.py` runs the same generator (``KERAKIT_FUZZ_EXAMPLES`` sets
how many).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import random
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from kerakit.errors import KerakitError, RecipeError, format_path  # noqa: E402
from kerakit.recipe import load_recipe  # noqa: E402
from kerakit.recipe.reader import dump_yaml, load_yaml  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
SCHEMA_LIMIT_S = 10.0  # one schema-stage case (milliseconds normally; the machine is shared)
BUILD_LIMIT_S = 60.0  # one Keras build and compile
BIG = 4096  # no integer in a model section built with Keras is larger than this

# ----------------------------------------------------------------------------- value pools

WRONG = [None, True, False, "NO", "yes", "", "x", "1e-3", "1:30", 0, -1, 1.5, 10**30, -(10**30),
         math.nan, math.inf, -math.inf, [], {}, [1, [2]], {"a": {"b": None}}, "a" * 300,
         "../../etc/passwd", "\u202e\u00fc\U0001f600", [None], {"": 1}]  # fmt: skip
RANGE = [0, -1, -3, 1.5, -0.5, 2, 10**12, 2**63, -(2**63), 10**400, 1e308, -1e308, 1e-320,
         math.nan, math.inf, -math.inf, 0.0, 65536, 255]  # fmt: skip
NAMES = ["NoSuchThing", "dense", "DENSE", "Densse", "Conv2d", "adamm", "Adam", "sgdd", "crossentropy",
         "accuracyy", "EarlyStoping", "", " ", "keras.layers.Dense", "os.system", "__import__",
         "__class__", "../../x", "tfds:", "tfds:no_such_set", "directory:", "npz:/no/such.npz",
         "csv:missing.csv", "http://example.com/x", "Lambda", "TFSMLayer", "Layer", "Input",
         "InputLayer", "Sequential", "Model", "Functional", "mixed_bfloat16", "standard",
         "multiclass", "\x00", "Dense>", "kerakit>Nope", "1e-3", "NO"]  # fmt: skip
TRAPS = ["1e-3", "1E3", "NO", "No", "no", "yes", "Yes", "on", "Off", "y", "n", "1:30", "0o17", "017",
         "0x1F", "1_000", ".5", "+1", "-.inf", ".NaN", "~", "Null", "2001-12-14", "0b101", "1.", "-0",
         "'1'", '"yes"', "1e400", "-1e400", "0x", "12e", "2**8", "TRUE", "tRUE"]  # fmt: skip
TAGS = ['!!python/object/apply:os.system ["true"]', "!!python/name:os.system", "!custom x",
        "!!binary aGVsbG8=", "!!set {a, b}", "!!timestamp 2001-12-14", '!!int "12"', "!!float abc",
        "!!bool yes", "!!str 5", "!<tag:yaml.org,2002:python/tuple> [1]", "!!omap [{a: 1}]",
        "!!null x", "!!map [1]", "!!seq {a: 1}", "!!float 1e-3", "!!int 0x1f", "!!merge x"]  # fmt: skip
EMPTY = [b"", b" \n\t\n", b"# only a comment\n", b"---\n", b"...\n", b"~\n", b"null\n", b"[]\n", b"{}\n",
         b"42\n", b"- a\n- b\n", b"---\na: 1\n---\nb: 2\n", b"\xef\xbb\xbf", b"\x00", b"\xff\xfe",
         b"data: digits\n", b"model: {}\n", b"'just a string'\n", b"!!python/none\n", b"&a\n",
         b"*a\n", b"? \n", b":\n", b"- - - -\n"]  # fmt: skip
SET_VALUES = ["abc", "1e-3", "NO", "[", "{a: 1", "!!python/object/apply:os.system [true]", ".nan", "-5",
              "", "1:30", "'unterminated", "[" * 5000 + "]" * 5000, "&a [*a]", "*a", "\x00",
              "\xff", "{}", "[]", "null", "99999999999999999999", "yes", "dense",
              "{adam: {learning_rate: .nan}}", "a: b: c"]  # fmt: skip
SET_KEYS = ["", "=", "a..b", "[0]", ".x", "x[", "x]", "model.sequential[99].Dense.units",
            "model.sequential[-100]", "train.epochs.x", "model.sequential[0].Dense.units.foo",
            "data.source[0]", "model.sequential.0", "model.sequential[0]", "compile.optimizer.adam",
            "nosuch.key", "train", "model", "name", "data", "seed", "model.sequential[x]",
            "model..sequential", "model.sequential[1e3]"]  # fmt: skip

# Keras-stage mutations: (layer class, argument, bad values); only Keras can find these.
LAYER_ARGS = {
    "Dense": [
        ("units", [0, -3, 1.5, "64", None, [64], 10**20]),
        ("activation", ["nope", 3, "Relu", ""]),
        ("use_bias", ["yes", 2]),
        ("kernel_initializer", ["nope", 3]),
        ("kernel_regularizer", ["l3", {"l2": -1}]),
        ("unitz", [64]),
    ],
    "Dropout": [
        ("rate", [1.5, -0.1, 1.0, math.nan, math.inf, "half", None]),
        ("noise_shape", [3, "x"]),
        ("seed", ["x", -1]),
    ],
    "Conv2D": [
        ("filters", [0, -1, 2.5, "32", 10**20]),
        ("kernel_size", [0, -3, 100, [3], [3, 3, 3], "3", None]),
        ("strides", [0, -1, [1, 2, 3]]),
        ("padding", ["bogus", 3, "SAME"]),
        ("activation", ["reluu"]),
        ("dilation_rate", [0, -2]),
        ("groups", [0, 5]),
    ],
    "MaxPooling2D": [
        ("pool_size", [0, -2, 100, [2, 2, 2], "2"]),
        ("strides", [0, -1]),
        ("padding", ["x"]),
    ],
    "LSTM": [
        ("units", [0, -1, 1.5]),
        ("dropout", [1.5, -1]),
        ("activation", ["nope"]),
        ("return_sequences", ["yes", 3]),
    ],
    "Reshape": [("target_shape", [[7, 7], [-1, -1], [0], 5, "x", None, [10**20]])],
    "Concatenate": [("axis", [5, -9, "x", 1.5])],
    "Flatten": [("data_format", ["nope", 3])],
    "Add": [("bogus", [1])],
}
OPTIMIZER_ARGS = [("learning_rate", [math.nan, -1, 0, math.inf, "fast", 1e308, [0.1], None]),
                  ("beta_1", [2, -1, math.nan]), ("epsilon", [-1, math.nan]), ("clipnorm", [-1, "x"]),
                  ("weight_decay", [math.nan, "x"]), ("momentum", [-1]), ("bogus", [1])]  # fmt: skip
OPTIMIZERS = [
    "adam",
    "sgd",
    "rmsprop",
    "adamw",
    "nadam",
    "adagrad",
    "Adam",
    "NoSuchOpt",
    "adamm",
    "lion",
]
LOSSES = ["mse", "huber", "NoSuchLoss", "categorical_crossentropy", {"Huber": {"delta": -1}},
          {"SparseCategoricalCrossentropy": {"from_logits": "maybe"}}, {"NoSuch": {}}, 3]  # fmt: skip
METRICS = [["accuracy", "nope"], ["auc"], [{"Precision": {"thresholds": 2}}], [{"AUC": {"num_thresholds": -5}}],
           ["precision", "recall"], [3], "accuracyy", {"no_output": ["accuracy"]}, [{"TopKCategoricalAccuracy": {"k": "x"}}]]  # fmt: skip


@dataclass
class Case:
    """One fuzzed recipe: the file's bytes, any --set flags; `build`: a Keras-stage mutation."""

    index: int
    base: str
    kind: str
    data: bytes
    overrides: list = field(default_factory=list)
    build: bool = False


@dataclass
class Outcome:
    case: Case
    status: str  # passed | built | rejected | unlocated | raw | hang
    seconds: float
    message: str = ""
    stage: str = "schema"  # how far it got: schema (TF-free) or keras (build and compile)


# ----------------------------------------------------------------------------- tree helpers


def _walk(value, path=()):
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, path + (i,))


def _parent(tree, path):
    node = tree
    for part in path[:-1]:
        node = node[part]
    return node


def _set(tree, path, value):
    _parent(tree, path)[path[-1]] = value


def _rename_key(mapping: dict, old, new) -> None:
    items = [(new if k == old else k, v) for k, v in mapping.items()]
    mapping.clear()
    mapping.update(items)


def _typo(rng: random.Random, text: str) -> str:
    if len(text) < 2:
        return text + "x"
    i = rng.randrange(len(text) - 1)
    op = rng.randrange(4)
    if op == 0:
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    if op == 1:
        return text[:i] + text[i + 1 :]
    if op == 2:
        return text[:i] + text[i] + text[i:]
    return text.swapcase()


# ----------------------------------------------------------------------------- mutators on values


def _m_delete(rng, tree):
    paths = [p for p, _ in _walk(tree) if p]
    path = rng.choice(paths)
    parent = _parent(tree, path)
    del parent[path[-1]]


def _m_wrong_type(rng, tree):
    path = rng.choice([p for p, _ in _walk(tree) if p])
    _set(tree, path, copy.deepcopy(rng.choice(WRONG)))


def _m_out_of_range(rng, tree):
    nums = [
        p for p, v in _walk(tree) if p and isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    if not nums:
        return _m_wrong_type(rng, tree)
    _set(tree, rng.choice(nums), rng.choice(RANGE))


def _m_unknown_name(rng, tree):
    strings = [(p, v) for p, v in _walk(tree) if p and isinstance(v, str)]
    keys = [p for p, v in _walk(tree) if p and isinstance(p[-1], str)]
    if strings and rng.random() < 0.5:
        path, value = rng.choice(strings)
        _set(tree, path, rng.choice([_typo(rng, value), rng.choice(NAMES)]))
    else:
        path = rng.choice(keys)
        new = rng.choice([_typo(rng, path[-1]), rng.choice(NAMES)])
        parent = _parent(tree, path)
        if new not in parent:
            _rename_key(parent, path[-1], new)


def _m_swap(rng, tree):
    maps = [(p, v) for p, v in _walk(tree) if isinstance(v, dict) and len(v) >= 2]
    path, mapping = rng.choice(maps) if maps else ((), tree)
    if len(mapping) < 2:
        return _m_delete(rng, tree)
    a, b = rng.sample(list(mapping), 2)
    mapping[a], mapping[b] = mapping[b], mapping[a]


def _m_move(rng, tree):
    """A section (or any value) moved under another key: `model:` inside `compile:`, ..."""
    top = [k for k in tree if isinstance(tree, dict)]
    if len(top) < 2:
        return _m_swap(rng, tree)
    a, b = rng.sample(top, 2)
    value = tree.pop(a)
    if isinstance(tree[b], dict):
        tree[b][a] = value
    else:
        tree[b] = {a: value}


def _m_unknown_key(rng, tree):
    maps = [v for _, v in _walk(tree) if isinstance(v, dict)]
    mapping = rng.choice(maps)
    near = _typo(rng, rng.choice(list(mapping))) if mapping else "x"
    mapping.setdefault(
        rng.choice([near, rng.choice(NAMES) or "blank", "1", "null"]), rng.choice(WRONG)
    )


def _m_nest(rng, tree):
    path = rng.choice([p for p, _ in _walk(tree) if 0 < len(p) < 12])  # deeper: _t_deep's job
    depth = rng.choice([3, 20, 62, 63, 64, 65, 200])
    value = copy.deepcopy(rng.choice([1, "x", None, {}]))
    for _ in range(depth):
        value = [value] if rng.random() < 0.5 else {"a": value}
    _set(tree, path, value)


def _m_flip(rng, tree):
    """A mapping written as a list of its items, or a list as a mapping."""
    conts = [(p, v) for p, v in _walk(tree) if p and isinstance(v, (dict, list))]
    if not conts:
        return _m_wrong_type(rng, tree)
    path, value = rng.choice(conts)
    if isinstance(value, dict):
        _set(tree, path, [{k: v} for k, v in value.items()] if rng.random() < 0.5 else list(value))
    else:
        _set(tree, path, {str(i): v for i, v in enumerate(value)})


def _m_targeted_name(rng, tree):
    """Unknown or misused names where kerakit resolves names: layers, optimizer, loss, metrics, callbacks, source."""
    where = rng.randrange(6)
    if where == 0 and isinstance(tree.get("data"), dict):
        tree["data"]["source"] = rng.choice(NAMES + ["digits", "arrays", "mnist_5k"])
    elif where == 1:
        tree.setdefault("compile", {})
        if isinstance(tree["compile"], dict):
            tree["compile"]["optimizer"] = rng.choice(
                [rng.choice(NAMES), {rng.choice(NAMES): {}}, ["adam"]]
            )
    elif where == 2 and isinstance(tree.get("compile"), dict):
        tree["compile"][rng.choice(["loss", "metrics"])] = rng.choice(
            [rng.choice(NAMES), [rng.choice(NAMES)]]
        )
    elif where == 3:
        tree.setdefault("train", {})
        if isinstance(tree["train"], dict):
            cb = rng.choice([rng.choice(NAMES), [rng.choice(NAMES)], {"bundle": rng.choice(NAMES)},
                             {"EarlyStopping": {"monitor": rng.choice(NAMES)}}, {rng.choice(NAMES): {}}])  # fmt: skip
            tree["train"]["callbacks"] = cb
    else:
        _m_unknown_name(rng, tree)


VALUE_MUTATORS = [_m_delete, _m_wrong_type, _m_out_of_range, _m_unknown_name, _m_swap, _m_move,
                  _m_unknown_key, _m_nest, _m_flip, _m_targeted_name]  # fmt: skip


# ----------------------------------------------------------------------------- mutators on text


def _lines(text: bytes) -> list[bytes]:
    return text.split(b"\n")


def _t_truncate(rng, text):
    return text[: rng.randrange(len(text) + 1)]


def _t_bad_utf8(rng, text):
    i = rng.randrange(len(text) + 1)
    junk = rng.choice(
        [b"\x80", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\xc0\xaf"]
    )
    return text[:i] + junk + text[i:]


def _t_control(rng, text):
    i = rng.randrange(len(text) + 1)
    junk = rng.choice(
        ["\x00", "\x07", "\x1b", "\x7f", "\ufffe", "\ud7ff", "\x85", "\u2028", "\t", "\r", "\x0c"]
    )
    return text[:i] + junk.encode("utf-8", "surrogatepass") + text[i:]


def _scalar_lines(text):
    return [i for i, ln in enumerate(_lines(text)) if b": " in ln and not ln.rstrip().endswith(b":")
            and not ln.lstrip().startswith(b"#")]  # fmt: skip


def _t_trap(rng, text):
    lines = _lines(text)
    cands = _scalar_lines(text)
    if not cands:
        return _t_truncate(rng, text)
    i = rng.choice(cands)
    head, _, _ = lines[i].partition(b": ")
    if rng.random() < 0.2:  # a trap as a key
        indent = head[: len(head) - len(head.lstrip())]
        lines[i] = indent + rng.choice(TRAPS).encode() + b": " + lines[i].partition(b": ")[2]
    else:
        lines[i] = head + b": " + rng.choice(TRAPS).encode()
    return b"\n".join(lines)


def _t_duplicate(rng, text):
    lines = _lines(text)
    cands = [
        i for i, ln in enumerate(lines) if b":" in ln and not ln.lstrip().startswith((b"#", b"-"))
    ]
    if not cands:
        return text + b"\n" + text
    i = rng.choice(cands)
    indent = len(lines[i]) - len(lines[i].lstrip())
    j = i + 1  # copy the whole block under the key
    while j < len(lines) and (
        not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent
    ):
        j += 1
    return b"\n".join(lines[:j] + lines[i:j] + lines[j:])


def _t_tag(rng, text):
    lines = _lines(text)
    cands = _scalar_lines(text)
    if not cands:
        return rng.choice(TAGS).encode() + b"\n" + text
    i = rng.choice(cands)
    head, _, value = lines[i].partition(b": ")
    tag = rng.choice(TAGS)
    lines[i] = head + b": " + (tag.encode() if " " in tag else tag.encode() + b" " + value)
    return b"\n".join(lines)


def _t_alias(rng, text):
    depth = rng.choice([3, 6, 9, 12])
    width = rng.choice([2, 9])
    bomb = [b"bomb0: &a0 [" + b", ".join([b"lol"] * width) + b"]"]
    for d in range(1, depth):
        bomb.append(b"bomb%d: &a%d [" % (d, d) + b", ".join([b"*a%d" % (d - 1)] * width) + b"]")
    form = rng.randrange(4)
    if form == 0:
        return b"\n".join(bomb) + b"\n" + text
    if form == 1:  # bomb used where a list is expected
        return (
            b"\n".join(bomb)
            + b"\n"
            + text.replace(b"metrics: [", b"metrics: [*a%d, " % (depth - 1), 1)
        )
    if form == 2:
        return text + b"\nx: &r [*r]\n"  # an alias to itself: undefined at that point
    return (
        b"base: &b {units: 8}\n"
        + text
        + b"\nmore:\n  <<: "
        + rng.choice([b"*b", b"5", b"[1, 2]", b"*nope"])
    )


def _t_deep(rng, text):
    n = rng.choice([100, 1000, 5000, 20000])
    opener, closer = rng.choice([(b"[", b"]"), (b"{a: ", b"}"), (b"- ", b"")])
    if opener == b"- ":
        deep = b"".join(b"  " * i + b"-\n" for i in range(min(n, 2000)))
        return text + b"\nx:\n" + deep
    body = opener * n + b"1" + closer * n
    lines = _lines(text)
    cands = _scalar_lines(text)
    if cands:
        i = rng.choice(cands)
        lines[i] = lines[i].partition(b": ")[0] + b": " + body
        return b"\n".join(lines)
    return body


def _t_lines(rng, text):
    lines = _lines(text)
    i = rng.randrange(len(lines))
    op = rng.randrange(5)
    if op == 0:
        del lines[i]
    elif op == 1:
        lines[i] = b"  " + lines[i]
    elif op == 2:
        lines[i] = lines[i].lstrip()
    elif op == 3:
        lines[i] = lines[i].replace(b"  ", b"\t")
    else:
        lines[i] = lines[i].replace(b":", b" ", 1)
    return b"\n".join(lines)


def _t_bytes(rng, text):
    data = bytearray(text)
    for _ in range(rng.randint(1, 8)):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def _t_empty(rng, text):
    return rng.choice(EMPTY)


def _t_weird_keys(rng, text):
    extra = rng.choice([b"? [a, b]\n: 1\n", b"{[1]: 2}: 3\n", b"1: x\n", b"null: x\n", b"true: x\n",
                        b"? {a: 1}\n: 2\n", b"'': 1\n", b"<<: 5\n", b"<<: [1]\n", b"x: !!map\n  a: 1\n"])  # fmt: skip
    return extra + text if rng.random() < 0.5 else text + b"\n" + extra


def _t_huge(rng, text):
    return text + b"\n# " + b"x" * 1_100_000


TEXT_MUTATORS = [_t_truncate, _t_bad_utf8, _t_control, _t_trap, _t_trap, _t_duplicate, _t_tag, _t_alias,
                 _t_deep, _t_lines, _t_bytes, _t_empty, _t_weird_keys]  # fmt: skip


# ----------------------------------------------------------------------------- Keras-stage mutations


def _buildable(tree) -> bool:
    """Checks in about a second, offline: no transfer backbone, no huge sizes, no slow data.

    Sizes past `BIG` (``units: 10**12``, ``input_shape: [65536, 28, 1]``) are checked
    by the schema stage only: Keras would allocate gigabytes, or TensorFlow would
    retry a failing allocation for 10 s, on a machine shared with others.
    """
    model = tree.get("model") if isinstance(tree, dict) else None
    if not isinstance(model, dict) or "transfer" in model:
        return False
    sizes = [v for _, v in _walk(model) if isinstance(v, int) and not isinstance(v, bool)]
    if any(abs(v) > BIG for v in sizes) or math.prod(v for v in sizes if v > 0) > BIG**3:
        return False
    # `kerakit check` reads the data as `train` does: only the small local sources here
    data = tree.get("data")
    source = data.get("source") if isinstance(data, dict) else data
    return isinstance(source, str) and (source == "digits" or source.startswith(("npz:", "csv:")))


def _k_mutate(rng, tree) -> None:
    model = tree["model"]
    entries = []  # (layer class, its args mapping holder, key)
    if "sequential" in model:
        for i, entry in enumerate(model["sequential"]):
            ((name, args),) = entry.items() if isinstance(entry, dict) else [(entry, None)]
            entries.append((name, model["sequential"], i))
    else:
        for node in model["functional"]["graph"]:
            ((_, spec),) = node.items()
            name = next((k for k in spec if k != "in"), None)
            if name and name != "use":
                entries.append((name, spec, name))
    what = rng.randrange(10)
    if what < 6 and entries:
        name, holder, key = rng.choice(entries)
        cands = LAYER_ARGS.get(name) or LAYER_ARGS["Dense"]
        arg, values = rng.choice(cands)
        if isinstance(holder, list):  # a sequential entry
            entry = holder[key]
            args = (
                dict(entry[name] or {})
                if isinstance(entry, dict) and isinstance(entry.get(name), dict)
                else {}
            )
            args[arg] = rng.choice(values)
            holder[key] = {name: args}
        else:
            args = dict(holder[key] or {}) if isinstance(holder[key], dict) else {}
            args[arg] = rng.choice(values)
            holder[key] = args
    elif what < 7 and entries:
        name, holder, key = rng.choice(entries)
        new = rng.choice(["NoSuchLayer", name.lower(), _typo(rng, name), "Lambda", "Layer", "InputLayer",
                          "Dense", "Conv3D", "Embedding", "Sequential", "TFSMLayer", "Bidirectional"])  # fmt: skip
        if isinstance(holder, list):
            holder[key] = {new: rng.choice([None, {}, 5, [1, 2], "x", {"units": 3}])}
        else:
            spec = holder
            value = spec.pop(key)
            spec[new] = value
    elif what < 8:
        tree.setdefault("compile", {})
        arg, values = rng.choice(OPTIMIZER_ARGS)
        tree["compile"]["optimizer"] = {rng.choice(OPTIMIZERS): {arg: rng.choice(values)}}
    elif what < 9:
        tree.setdefault("compile", {})
        tree["compile"]["loss"] = copy.deepcopy(rng.choice(LOSSES))
    else:
        tree.setdefault("compile", {})
        tree["compile"]["metrics"] = copy.deepcopy(rng.choice(METRICS))
    if rng.random() < 0.15 and "sequential" in model:
        model["input_shape"] = rng.choice([[8, 8], [8, 8, 1], [64], [3, 3, 3, 3], [1], [64, 64, 3]])


# ----------------------------------------------------------------------------- generation


def base_recipes() -> dict[str, tuple[bytes, dict]]:
    """{stem: (file bytes, parsed values)} for every shipped config."""
    out = {}
    for path in sorted(CONFIGS.glob("*.yaml")):
        data = path.read_bytes()
        out[path.stem] = (data, load_yaml(data, str(path))[0])
    return out


def generate(n: int, seed: int = 0, *, build_share: float = 0.1) -> list[Case]:
    """n fuzzed recipes from a seeded generator; about `build_share` of them mutate what only Keras checks."""
    rng = random.Random(seed)
    bases = base_recipes()
    stems = list(bases)
    cases = []
    for index in range(n):
        stem = rng.choice(stems)
        text, tree = bases[stem]
        tree = copy.deepcopy(tree)
        roll = rng.random()
        overrides: list[str] = []
        build = False
        if roll < build_share and _buildable(tree):
            kind = "keras"
            _k_mutate(rng, tree)
            data, build = dump_yaml(tree).encode(), True
        elif roll < 0.50:
            mut = rng.choice(VALUE_MUTATORS)
            kind = mut.__name__[3:]
            for _ in range(rng.choice([1, 1, 1, 2, 3])):
                try:
                    mut(rng, tree)
                except (IndexError, KeyError, TypeError, ValueError):
                    pass  # the mutation did not fit this tree; keep what was done
            data = dump_yaml(tree).encode()
        elif roll < 0.88:
            mut = rng.choice(TEXT_MUTATORS + ([_t_huge] if rng.random() < 0.01 else []))
            kind = mut.__name__[3:]
            data = mut(rng, text)
        else:
            kind = "set"
            data = text
            for _ in range(rng.choice([1, 1, 2])):
                paths = [p for p, _ in _walk(tree) if p]

                key = format_path(rng.choice(paths)) if rng.random() < 0.6 else rng.choice(SET_KEYS)
                value = rng.choice(SET_VALUES + [str(rng.choice(RANGE)), rng.choice(TRAPS)])
                overrides.append(rng.choice([f"{key}={value}", key, f"{key}=={value}"]))
        cases.append(Case(index, stem, kind, data, overrides, build))
    return cases


# ----------------------------------------------------------------------------- running

_TEXT_LEVEL = ("this is not valid YAML", "the text holds the character", "the file is not valid UTF-8", "the YAML is nested too deeply",
               "the recipe is empty", "the file is ", "the text is ", "recipe file not found")  # fmt: skip
_ROOT_LEVEL = ("expected a mapping with sections", "missing required key", "the tag ", "nested more than",
               "the recipe expands to", "a key must be a plain name", "unknown key '' in the recipe")  # fmt: skip


class _Hang(BaseException):
    """Raised by the timer; a BaseException so no `except Exception` in kerakit swallows it."""


def _on_alarm(signum, frame):
    raise _Hang()


def unlocated_reason(exc: KerakitError) -> str | None:
    """Why an error fails to say where (None when it names the line or flag and the key path)."""
    if not isinstance(exc, RecipeError):
        return f"{type(exc).__name__} without a file, line and key path"
    file = exc.file or ""
    if not file:
        return "no file or --set flag"
    flag = file.startswith("--set")
    if not flag and exc.line is None and not exc.message.startswith(_TEXT_LEVEL):
        return "no line number"
    if not exc.path and not exc.message.startswith(_TEXT_LEVEL + _ROOT_LEVEL) and not flag:
        return "no key path"
    return None


def run_case(case: Case, folder: Path, *, build: bool = True) -> Outcome:
    """What `kerakit check FILE [--set ...]` runs, in-process; the outcome of one case.

    With `build` (the default) a recipe that passes the schema and needs no slow or
    networked data is built and compiled by Keras, as `kerakit check` does.
    """
    path = folder / f"{case.base}.yaml"  # beside the configs' relative data paths
    path.write_bytes(case.data)
    start = time.perf_counter()
    limit = SCHEMA_LIMIT_S
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    status, message, stage = "passed", "", "schema"
    try:
        recipe = load_recipe(str(path), overrides=case.overrides)
        # Whatever passes the schema and builds offline in well under a second goes on to Keras.
        if build and _buildable(recipe.to_dict()):
            from kerakit.training.run import check

            stage, limit = "keras", BUILD_LIMIT_S
            signal.setitimer(signal.ITIMER_REAL, limit)
            check(recipe, print_fn=lambda *a, **k: None)
            status = "built"
    except KerakitError as exc:
        reason = unlocated_reason(exc)
        status = "unlocated" if reason else "rejected"
        message = f"{reason}: {exc}" if reason else str(exc)
    except _Hang:
        status, message = "hang", f"ran past {limit:.0f} s"
    except BaseException as exc:  # noqa: BLE001 - a raw traceback is what this counts
        if isinstance(exc, KeyboardInterrupt):
            raise
        status = "raw"
        message = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    if stage == "keras" and case.index % 16 == 0:
        import keras

        keras.backend.clear_session()  # its gc.collect() costs 0.2 s: not after every build
    return Outcome(case, status, time.perf_counter() - start, message, stage)


def fuzz(n: int, seed: int = 0, *, build_share: float = 0.1, build: bool = True) -> list[Outcome]:
    """Generate and run n cases (building what passes the schema, unless `build` is False)."""
    cases = generate(n, seed, build_share=build_share)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "data").symlink_to(CONFIGS / "data")
        return [run_case(c, folder, build=build) for c in cases]


def summary(outcomes: list[Outcome]) -> dict:
    statuses = Counter(o.status for o in outcomes)
    return {
        "recipes fuzzed": len(outcomes),
        "reached the Keras build": sum(o.stage == "keras" for o in outcomes),
        "built with Keras": statuses["built"],
        "rejected with a located RecipeError": statuses["rejected"],
        "passed": statuses["passed"] + statuses["built"],
        "raw tracebacks": statuses["raw"] + statuses["hang"],
        "errors without line or key path": statuses["unlocated"],
        "slowest case (s)": round(max((o.seconds for o in outcomes), default=0.0), 2),
    }


def describe(o: Outcome) -> str:
    head = f"case {o.case.index} [{o.case.base}/{o.case.kind}] {o.status}"
    sets = "".join(f" --set {s[:80]!r}" for s in o.case.overrides)
    return f"{head}{sets}\n{o.case.data[:600]!r}\n{o.message}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=2000, help="recipes to fuzz (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--build-share",
        type=float,
        default=0.1,
        help="share of Keras-stage mutations (default 0.1)",
    )
    p.add_argument("--no-build", action="store_true", help="schema stage only (no TensorFlow)")
    args = p.parse_args(argv)
    start = time.perf_counter()
    outcomes = fuzz(args.n, args.seed, build_share=args.build_share, build=not args.no_build)
    took = time.perf_counter() - start
    print("| figure | value |\n|---|---|")
    for k, v in summary(outcomes).items():
        print(f"| {k} | {v:,} |" if isinstance(v, int) else f"| {k} | {v} |")
    print(f"| wall time (s) | {took:.1f} |")
    kinds = Counter(o.case.kind for o in outcomes)
    print("\nmutations: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    bad = [o for o in outcomes if o.status in ("raw", "hang", "unlocated")]
    for o in bad[:20]:
        print("\n" + describe(o), file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
