"""A hardened YAML reader for recipes.

PyYAML alone lets a recipe down in ways a user never sees coming: duplicate keys
silently overwrite (pyyaml#165), YAML 1.1 reads ``lr: 1e-3`` as the string
"1e-3", ``NO`` as false and ``1:30`` as 90, an alias bomb expands 9x per level,
deep nesting raises ``RecursionError``, and ``!!python/...`` tags run code in the
unsafe loaders. This reader composes the YAML node tree with PyYAML's pure
parser (no construction, so no tag can run anything), then builds plain Python
values itself:

- scalars are typed the YAML 1.2 core-schema way (``1e-3`` is a float;
  ``yes``/``no``/``on``/``off`` stay strings, so a key that wants a boolean says so);
- a duplicate key is an error naming both lines;
- only the standard tags (``!!str``, ``!!int``, ``!!float``, ``!!bool``, ``!!null``,
  ``!!seq``, ``!!map``) are allowed;
- the file size, the nesting depth and the number of values built through
  aliases are capped;
- every value keeps its line and column.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.nodes import MappingNode, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader, ReaderError
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from kerakit.errors import RecipeError

MAX_BYTES = 1_000_000
MAX_DEPTH = 64
MAX_VALUES = 100_000

_PLAIN = "!kerakit/plain"
_STD = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {_STD + t for t in ("str", "int", "float", "bool", "null", "seq", "map")}

_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"^[-+]?[0-9]+$")
_OCT = re.compile(r"^0o[0-7]+$")
_HEX = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_INF = re.compile(r"^[-+]?\.(?:inf|Inf|INF)$")
_NAN = re.compile(r"^\.(?:nan|NaN|NAN)$")


class _Resolver(BaseResolver):
    """Marks untagged plain scalars so the builder types them (YAML 1.2 core)."""

    def resolve(self, kind, value, implicit):
        if kind is ScalarNode and implicit[0]:
            return _PLAIN
        return super().resolve(kind, value, implicit)


class _TooDeep(yaml.MarkedYAMLError):
    """Nesting past MAX_DEPTH, found while scanning (before PyYAML's recursive composer)."""


class _Loader(Reader, Scanner, Parser, Composer, _Resolver):
    def __init__(self, stream):
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        _Resolver.__init__(self)

    # PyYAML's scanner is quadratic in the depth of `[[[[...` and its composer
    # recurses per level: stop at the first level past the cap, with its position.
    def fetch_flow_collection_start(self, TokenClass):
        if self.flow_level >= MAX_DEPTH:
            raise _TooDeep(
                problem=f"nested more than {MAX_DEPTH} levels deep", problem_mark=self.get_mark()
            )
        return super().fetch_flow_collection_start(TokenClass)

    def add_indent(self, column):
        if len(self.indents) >= MAX_DEPTH:
            raise _TooDeep(
                problem=f"nested more than {MAX_DEPTH} levels deep", problem_mark=self.get_mark()
            )
        return super().add_indent(column)


def plain_scalar(text: str) -> Any:
    """Type an untagged plain scalar as YAML 1.2's core schema does."""
    if _NULL.match(text):
        return None
    if text in _BOOL:
        return _BOOL[text]
    if _INT.match(text):
        return int(text)
    if _OCT.match(text):
        return int(text[2:], 8)
    if _HEX.match(text):
        return int(text[2:], 16)
    if _FLOAT.match(text):
        return float(text)
    if _INF.match(text):
        return -math.inf if text.startswith("-") else math.inf
    if _NAN.match(text):
        return math.nan
    return text


def _pos(node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    def __init__(self, file: str | None):
        self.file = file
        self.positions: dict[tuple, tuple[int, int]] = {}
        self.count = 0

    def fail(self, node, message: str, path: tuple = ()) -> RecipeError:
        line, col = _pos(node) if node is not None else (None, None)
        return RecipeError(message, file=self.file, line=line, col=col, path=path)

    def build(self, node, path: tuple, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise self.fail(
                node,
                f"the recipe expands to more than {MAX_VALUES:,} values (an alias bomb?); "
                "write it out without nested aliases",
                path,
            )
        if depth > MAX_DEPTH:
            raise self.fail(
                node, f"nested more than {MAX_DEPTH} levels deep; flatten the recipe", path
            )
        tag = node.tag
        if tag != _PLAIN and tag not in _ALLOWED_TAGS:
            raise self.fail(
                node,
                f"the tag {tag!r} is not allowed: recipes are plain data and never run code; "
                "remove the tag",
                path,
            )
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if isinstance(node, SequenceNode):
            if tag == _STD + "map":
                raise self.fail(node, "!!map on a list", path)
            out = []
            for i, item in enumerate(node.value):
                self.positions.setdefault(path + (i,), _pos(item))
                out.append(self.build(item, path + (i,), depth + 1))
            return out
        if isinstance(node, MappingNode):
            return self.mapping(node, path, depth)
        raise self.fail(node, "unsupported YAML node", path)  # pragma: no cover

    def scalar(self, node: ScalarNode, path: tuple) -> Any:
        text, tag = node.value, node.tag
        if tag == _PLAIN:
            return plain_scalar(text)
        if tag == _STD + "str":
            return text
        value = plain_scalar(text)
        want = tag[len(_STD) :]
        ok = {
            "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
            "bool": lambda v: isinstance(v, bool),
            "null": lambda v: v is None,
        }.get(want, lambda v: False)
        if not ok(value):
            raise self.fail(node, f"{text!r} is not a valid !!{want}", path)
        return float(value) if want == "float" else value

    def mapping(self, node: MappingNode, path: tuple, depth: int) -> dict:
        out: dict = {}
        seen: dict = {}
        merged: dict = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or (
                key_node.tag == _PLAIN and key_node.value == "<<"
            ):
                merged.update(self._merge(value_node, path, depth))
                continue
            if not isinstance(key_node, ScalarNode):
                raise self.fail(key_node, "a key must be a plain name, not a list or mapping", path)
            key = self.scalar(key_node, path) if key_node.tag != _PLAIN else key_node.value
            if not isinstance(key, str):
                key = str(key)
            if key in seen:
                first = seen[key]
                raise self.fail(
                    key_node,
                    f"duplicate key {key!r} (first at line {first[0]}); YAML would silently keep "
                    "only the last one: remove or rename one of them",
                    path + (key,),
                )
            seen[key] = _pos(key_node)
            # A scalar is located at its value (the precise column); a list or
            # mapping at its key (a block value starts on the next line).
            at = value_node if isinstance(value_node, ScalarNode) else key_node
            self.positions[path + (key,)] = _pos(at)
            out[key] = self.build(value_node, path + (key,), depth + 1)
        for key, value in merged.items():
            out.setdefault(key, value)
        return out

    def _merge(self, node, path, depth) -> dict:
        nodes = node.value if isinstance(node, SequenceNode) else [node]
        result: dict = {}
        for item in reversed(nodes):
            value = self.build(item, path, depth + 1)
            if not isinstance(value, dict):
                raise self.fail(
                    item, "a merge key (<<) needs a mapping or a list of mappings", path + ("<<",)
                )
            result.update(value)
        return result


def load_yaml(data: str | bytes, file: str | None = None) -> tuple[Any, dict]:
    """Parse one YAML document into plain values and a {key path: (line, col)} table.

    Raises:
        RecipeError: for anything wrong with the text, with file, line and column.
    """
    if isinstance(data, bytes):
        if len(data) > MAX_BYTES:
            raise RecipeError(
                f"the file is {len(data):,} bytes; recipes are capped at {MAX_BYTES:,}", file=file
            )
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            before = data[: exc.start]
            line = before.count(b"\n") + 1
            col = exc.start - (before.rfind(b"\n") + 1) + 1
            raise RecipeError(
                f"the file is not valid UTF-8 (byte 0x{data[exc.start]:02x}); save it as UTF-8",
                file=file,
                line=line,
                col=col,
            ) from None
    elif len(data) > MAX_BYTES:
        raise RecipeError(
            f"the text is {len(data):,} characters; recipes are capped at {MAX_BYTES:,}", file=file
        )
    loader = None
    try:
        loader = _Loader(data)  # the reader refuses control characters right here
        node = loader.get_single_node()
    except ReaderError as exc:
        before = data[: exc.position] if isinstance(data, str) else ""
        raise RecipeError(
            f"the text holds the character U+{exc.character:04X}, which YAML does not allow; "
            "delete it (it is often invisible: a stray control character or a copy-paste artefact)",
            file=file,
            line=before.count("\n") + 1,
            col=exc.position - (before.rfind("\n") + 1) + 1,
        ) from None
    except _TooDeep as exc:
        raise RecipeError(
            f"{exc.problem}; flatten the recipe",
            file=file,
            line=exc.problem_mark.line + 1,
            col=exc.problem_mark.column + 1,
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise RecipeError(
            f"this is not valid YAML: {what}; check the indentation, colons and quotes here",
            file=file,
            line=mark.line + 1 if mark else None,
            col=mark.column + 1 if mark else None,
        ) from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"this is not valid YAML: {exc}", file=file) from None
    except RecursionError:
        raise RecipeError(
            f"the YAML is nested too deeply (the limit is {MAX_DEPTH} levels); flatten it",
            file=file,
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        return None, {}
    builder = _Builder(file)
    value = builder.build(node, (), 0)
    builder.positions.setdefault((), _pos(node))
    return value, builder.positions


def dump_yaml(value: Any) -> str:
    """Plain values back to YAML that `load_yaml` reads to the same values."""

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper, text):
        # Quote any string that YAML 1.1 readers (or ours) would type as something else.
        style = None
        if plain_scalar(text) != text or text.lower() in {"yes", "no", "on", "off", "y", "n"}:
            style = "'"
        return dumper.represent_scalar(_STD + "str", text, style=style)

    def _float(dumper, number):
        if math.isnan(number):
            text = ".nan"
        elif math.isinf(number):
            text = ".inf" if number > 0 else "-.inf"
        else:
            text = repr(number)
            if "e" in text and "." not in text.split("e")[0]:
                mant, exp = text.split("e")
                text = f"{mant}.0e{exp}"
        return dumper.represent_scalar(_STD + "float", text)

    _Dumper.add_representer(str, _str)
    _Dumper.add_representer(float, _float)
    _Dumper.add_representer(tuple, lambda d, v: d.represent_list(list(v)))
    return yaml.dump(
        value, Dumper=_Dumper, sort_keys=False, default_flow_style=None, allow_unicode=True
    )
