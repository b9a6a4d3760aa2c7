"""The `output:` section: where runs go, the formats the finished model is saved in, and
the options of the export gate (`kerakit.export`) for the exported formats."""

from __future__ import annotations

from typing import Any

from kerakit.errors import Where
from kerakit.recipe import schema as S

# keras, h5: kerakit.saving; savedmodel (RUN/savedmodel/), onnx, litert (RUN/export/): saved
# and then checked by the export gate at the end of `kerakit train` (docs/export.md)
FORMATS = ["keras", "h5", "savedmodel", "onnx", "litert"]
QUANTIZE = ["dynamic", "float16", "int8"]  # kerakit.export.QUANTIZE, for a LiteRT artifact


def resolve_output(section: Any, where: Where) -> dict:
    S.check_mapping(section, where)
    S.check_keys(section, ["dir", "formats", "export"], where, section="output")
    out = {"dir": S.check_str(section.get("dir", "runs"), where.at("dir"), "a folder path")}
    formats = section.get("formats", ["keras"])
    if isinstance(formats, str):
        formats = [formats]
    if not isinstance(formats, list) or not formats:
        raise where.at("formats").error(f"expected a list of formats from {FORMATS}")
    for i, f in enumerate(formats):
        S.check_choice(f, FORMATS, where.at("formats", i), "format")
    out["formats"] = list(dict.fromkeys(formats))
    if section.get("export") is not None:  # only when given: old recipes resolve the same
        out["export"] = _resolve_export(section["export"], where.at("export"))
    return out


def _resolve_export(section: Any, where: Where) -> dict:
    """`output.export: {quantize: int8, tolerance: 1.0e-4, metric_drop: 1.0}`."""
    S.check_mapping(section, where)
    S.check_keys(section, ["quantize", "tolerance", "metric_drop"], where, section="output.export")
    out: dict = {}
    if section.get("quantize") is not None:
        out["quantize"] = S.check_choice(section["quantize"], QUANTIZE, where.at("quantize"),
                                         "quantization")  # fmt: skip
    for key in ("tolerance", "metric_drop"):
        if section.get(key) is not None:
            out[key] = float(S.check_number(section[key], where.at(key), minimum=0))
    return out
