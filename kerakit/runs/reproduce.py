"""Train a run again from its resolved recipe and check that it reproduces (`kerakit
reproduce RUN`).

    result = reproduce("runs/digits/20261205-101500")
    result.ok          # every metric within the tolerance (and, deterministic, same weights)
    print(format_reproduction(result))

Before training it compares the run's provenance with what the recipe would read and run
on now, and warns when they cannot match (the data, a version or the imported code
changed). The new run is a new folder beside the original (or under `output_dir`). Each
metric agrees when `|new - original| <= tolerance * max(1, |original|)`: an absolute
tolerance for values up to 1 (accuracies, most losses), a relative one above. The default
tolerance is 1e-6 for a recipe with `deterministic: true` and 0.02 otherwise (floating
point without op determinism varies run to run). With `deterministic: true` the final
weights (model.keras) are compared too, bit for bit.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from kerakit._files import read_json
from kerakit.errors import KerakitError
from kerakit.recipe import load_recipe
from kerakit.recipe.data import source_kind
from kerakit.report.history import HISTORY_FILE, history_columns
from kerakit.training.provenance import mismatches, provenance
from kerakit.training.run import train
from kerakit.training.runfolder import METRICS_FILE, RECIPE_FILE, RUN_FILE

DETERMINISTIC_TOLERANCE = 1e-6
TOLERANCE = 0.02
MODEL_FILE = "model.keras"
WEIGHTS_ENTRY = "model.weights.h5"  # inside a .keras file


@dataclass
class Reproduction:
    """What `reproduce` found.

    Attributes:
        original, new: the run folders.
        rows: `(metric, original, new, agrees)`, test metrics then the last epoch's values.
        weights: True (identical bit for bit), False, or None (not compared).
        warnings: why the run could not match before it was trained again.
        tolerance: the tolerance used.
    """

    original: Path
    new: Path
    rows: list[tuple] = field(default_factory=list)
    weights: bool | None = None
    weights_note: str = ""
    warnings: list[str] = field(default_factory=list)
    tolerance: float = TOLERANCE

    @property
    def ok(self) -> bool:
        return all(row[3] for row in self.rows) and self.weights is not False


def check_provenance(folder: Path, recipe) -> list[str]:
    """Why a new run of `recipe` cannot match the run in `folder` (empty: it can)."""
    old = read_json(folder / RUN_FILE).get("provenance")
    if not old:
        return ["the run records no provenance (an earlier kerakit): its data and versions "
                "cannot be checked"]  # fmt: skip
    return mismatches(old, provenance(recipe))


def agrees(old, new, tolerance: float) -> bool:
    if not isinstance(old, (int, float)) or not isinstance(new, (int, float)):
        return old == new
    if math.isnan(old) or math.isnan(new):
        return math.isnan(old) and math.isnan(new)
    return abs(new - old) <= tolerance * max(1.0, abs(old))


def _last_epoch(folder: Path) -> dict:
    history = history_columns(folder / HISTORY_FILE)
    return {k: v[-1] for k, v in history.items()
            if k not in ("epoch", "stage") and v and isinstance(v[-1], float)}  # fmt: skip


def weight_arrays(model_file: Path) -> dict[str, bytes]:
    """Every weight tensor of a .keras file, by its path in the file, as raw bytes."""
    import h5py

    with zipfile.ZipFile(model_file) as archive:
        data = archive.read(WEIGHTS_ENTRY)
    out: dict[str, bytes] = {}
    with h5py.File(io.BytesIO(data), "r") as h5:

        def visit(name, item):
            if isinstance(item, h5py.Dataset):
                value = item[()]
                out[name] = getattr(value, "tobytes", lambda: bytes(str(value), "utf-8"))()

        h5.visititems(visit)
    return out


def same_weights(a: Path, b: Path) -> tuple[bool | None, str]:
    """Whether two runs' final models hold identical weights, and what was compared."""
    fa, fb = a / MODEL_FILE, b / MODEL_FILE
    if not fa.is_file() or not fb.is_file():
        return None, f"not compared: no {MODEL_FILE} in {a if not fa.is_file() else b}"
    wa, wb = weight_arrays(fa), weight_arrays(fb)
    differ = sorted(k for k in wa.keys() | wb.keys() if wa.get(k) != wb.get(k))
    if not differ:
        return True, f"identical, bit for bit ({len(wa)} tensors of {MODEL_FILE})"
    return False, f"differ in {len(differ)} of {len(wa)} tensors (first: {differ[0]})"


def reproduce(run: str | os.PathLike, *, tolerance: float | None = None,
              output_dir: str | os.PathLike | None = None, verbose=None,
              print_fn=print) -> Reproduction:  # fmt: skip
    """Train the run in folder `run` again from its recipe.resolved.yaml and compare.

    Args:
        run: a finished run folder.
        tolerance: see the module's docstring (default 1e-6 deterministic, else 0.02).
        output_dir: where the new run goes (default: the original's output folder).
        verbose: Keras's fit verbosity for the new run.

    Returns:
        A `Reproduction`; `.ok` says whether it reproduced.
    """
    folder = Path(run)
    if not (folder / RUN_FILE).is_file() or not (folder / RECIPE_FILE).is_file():
        raise KerakitError(
            f"{run}: not a run folder with its recipe ({RUN_FILE}, {RECIPE_FILE}); "
            "`kerakit runs` lists run folders"
        )
    out = Path(output_dir) if output_dir is not None else folder.resolve().parent.parent
    overrides = {"output.dir": str(out)}
    recipe = load_recipe(str(folder / RECIPE_FILE), overrides=overrides)
    if source_kind(recipe["data"]["source"])[0] == "arrays":
        raise KerakitError(
            f"{run} trained on arrays given from Python (kk.train(x=...)), which its folder does "
            "not hold: train it again from Python with the same arrays"
        )
    if tolerance is None:
        tolerance = DETERMINISTIC_TOLERANCE if recipe["deterministic"] else TOLERANCE
    warnings = check_provenance(folder, recipe)
    for line in warnings:
        print_fn(f"warning: the new run cannot match {folder}: {line}")
    new = train(str(folder / RECIPE_FILE), overrides=overrides, new=True, verbose=verbose,
                print_fn=print_fn)  # fmt: skip
    result = Reproduction(folder, new.path, warnings=warnings, tolerance=tolerance)
    old_metrics = read_json(folder / METRICS_FILE) if (folder / METRICS_FILE).is_file() else {}
    for name, value in (old_metrics or {}).items():
        result.rows.append((name, value, new.metrics.get(name),
                            agrees(value, new.metrics.get(name), tolerance)))  # fmt: skip
    new_last = _last_epoch(new.path)
    for name, value in _last_epoch(folder).items():
        result.rows.append((f"last epoch {name}", value, new_last.get(name),
                            agrees(value, new_last.get(name), tolerance)))  # fmt: skip
    if recipe["deterministic"]:
        result.weights, result.weights_note = same_weights(folder, new.path)
    return result


def _show(value) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def format_reproduction(result: Reproduction) -> str:
    """The comparison as the table `kerakit reproduce` prints, and the verdict."""
    lines = [f"original: {result.original}", f"new run:  {result.new}", ""]
    width = max([len(r[0]) for r in result.rows] + [6])
    lines.append(f"{'metric'.ljust(width)}  {'original':>12}  {'new':>12}  "
                 f"agrees (tolerance {result.tolerance:g})")  # fmt: skip
    for name, old, new, ok in result.rows:
        lines.append(f"{name.ljust(width)}  {_show(old):>12}  {_show(new):>12}  "
                     f"{'yes' if ok else 'NO'}")  # fmt: skip
    if result.weights_note:
        lines.append(f"weights: {result.weights_note}")
    failed = [r[0] for r in result.rows if not r[3]] + (
        ["weights"] if result.weights is False else []
    )
    lines.append("")
    if failed:
        lines.append(f"does NOT reproduce: {', '.join(failed)} differ")
    else:
        lines.append("reproduces: every metric agrees"
                     + (", weights identical" if result.weights else ""))  # fmt: skip
    if result.warnings:
        lines.append("(the provenance differed: " + "; ".join(result.warnings) + ")")
    return "\n".join(lines)
