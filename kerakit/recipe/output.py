"""The `output:` section: where runs go and the formats the finished model is saved in."""

from __future__ import annotations

from typing import Any

from kerakit.errors import Where
from kerakit.recipe import schema as S

FORMATS = ["keras", "h5", "savedmodel"]


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
