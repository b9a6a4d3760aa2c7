"""`output.formats` at the end of `kerakit train`: the same export and gate as `kerakit export`.

    formats: [keras, savedmodel, onnx, litert]      # in a recipe's output: section

`saved_formats` is the recipe `finish` saves with (keras, h5 and savedmodel, as before; the
`.keras` too whenever something is exported, since the gate compares against it);
`after_training` then exports onnx/litert into `RUN/export/`, checks every exported
artifact (the SavedModel where it has always been, `RUN/savedmodel/`) and raises
`ExportGateFailed` (exit 1) when one fails. The run and its `.keras` stay either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kerakit.export.formats import FORMATS
from kerakit.export.gate import METRIC_DROP, TOLERANCE
from kerakit.export.run import check_or_raise, export

SAVED = ("keras", "h5", "savedmodel")  # what kerakit.saving writes (kerakit.saving.FORMATS)


def exported(recipe: Any) -> list[str]:
    """The formats of `output.formats` the export gate checks."""
    return [f for f in recipe["output"]["formats"] if f in FORMATS]


def saved_formats(recipe: Any) -> Any:
    """The recipe with `output.formats` cut to what `save_model` writes, `keras` first when
    anything is exported."""
    formats = list(recipe["output"]["formats"])
    keep = [f for f in formats if f in SAVED]
    if exported(recipe) and "keras" not in keep:
        keep.insert(0, "keras")
    if keep == formats:
        return recipe
    return recipe.replace("output", {**recipe["output"], "formats": keep})


def after_training(recipe: Any, path: Path, *, print_fn=print) -> dict | None:
    """Export and check what `output.formats` asks beyond keras/h5; None if nothing."""
    formats = exported(recipe)
    if not formats:
        return None
    options = dict(recipe["output"].get("export") or {})
    written = {"savedmodel": Path(path) / "savedmodel"} if "savedmodel" in formats else None
    report = export(path, formats, written=written, print_fn=print_fn,
                    quantize=options.get("quantize"),
                    tolerance=options.get("tolerance", TOLERANCE),
                    metric_drop=options.get("metric_drop", METRIC_DROP))  # fmt: skip
    return check_or_raise(report)
