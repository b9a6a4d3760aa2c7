"""`export`: a run's model as SavedModel, ONNX and LiteRT files, each checked by its runtime.

    from kerakit.export import export
    report = export("runs/digits-cnn/RUN", ["onnx", "litert"], quantize="int8")
    report["passed"], report["artifacts"]["litert-int8"]["metrics"]

The flow: open the run (its `model.keras`, recipe and test data), write each artifact
(formats.py), run each in its own runtime on the test data (runtimes.py), compare and time
it against the Keras model (gate.py), and write `RUN/export/` (report.md, export.json,
signature.json) and `RUN/model_card.md` (card.py).
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kerakit._files import read_json, write_json, write_text
from kerakit.errors import DataError, KerakitError, Where
from kerakit.export import card, gate
from kerakit.export.formats import (
    FORMATS,
    QUANTIZE,
    artifact_file,
    artifact_name,
    io_spec,
    not_exportable,
    write_artifact,
)
from kerakit.export.runtimes import keras_runner, open_artifact

# Files of a run folder this stage reads: the names kerakit.training.runfolder gives them
# (training comes after this stage; tests/export holds the two equal).
RUN_FILE, RECIPE_FILE, CLASSES_FILE = "run.json", "recipe.resolved.yaml", "classes.json"
METRICS_FILE, INPUTS_FILE = "metrics.json", "inputs.json"
# What an export writes
EXPORT_DIR = "export"
REPORT_FILE, JSON_FILE, SIGNATURE_FILE = "report.md", "export.json", "signature.json"
CARD_FILE = "model_card.md"  # in the run folder itself
CHUNK = 256  # samples per call when running a whole split through an artifact


class ExportGateFailed(KerakitError, RuntimeError):
    """An artifact's answers are not the Keras model's (past the tolerance). The run, its
    `.keras` and the artifacts stay; `report` is what export.json holds. Exit status 1."""

    exit_status = 1

    def __init__(self, message: str, report: dict | None = None):
        super().__init__(message)
        self.report = report or {}


def parse_formats(formats: str | Sequence[str]) -> list[str]:
    """ "savedmodel,onnx" or a list -> the formats, checked against `FORMATS`."""
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    out = [f.strip() for f in items if f.strip()]
    for f in out:
        if f not in FORMATS:
            from kerakit.errors import did_you_mean

            raise KerakitError(f"--format {f}: not an export format{did_you_mean(f, FORMATS)}; "
                               f"choose from {', '.join(FORMATS)}")  # fmt: skip
    if not out:
        raise KerakitError(f"--format: name at least one of {', '.join(FORMATS)}")
    return list(dict.fromkeys(out))


def export(
    run: str | os.PathLike,
    formats: str | Sequence[str] = tuple(FORMATS),
    *,
    quantize: str | None = None,
    data: str | None = None,
    verify: bool = True,
    tolerance: float = gate.TOLERANCE,
    metric_drop: float = gate.METRIC_DROP,
    trusted: bool = False,
    written: Mapping[str, Path] | None = None,
    existing: bool = False,
    repeats: tuple[int, int] = (gate.SAMPLE_REPEATS, gate.BATCH_REPEATS),
    print_fn=print,
) -> dict:
    """Export a run's model to `formats` in `RUN/export/` and check each artifact.

    Args:
        run: a run folder (or a `.keras` file, with `data`).
        formats: any of "savedmodel", "onnx", "litert" (a list, or "a,b").
        quantize: also a LiteRT file quantized "dynamic", "float16" or "int8" (calibrated
            on the run's training samples).
        data: a data source to check on (as `kerakit evaluate --data`); default: the run's
            test split (else its validation split).
        verify: run the parity gate (default); False writes the artifacts only.
        tolerance: the largest absolute difference a float artifact may have.
        metric_drop: the points of test metric a quantized artifact may lose.
        trusted: load a model file that holds code (`--unsafe`).
        written: artifacts already written, by name ("savedmodel", "litert-int8"; the end
            of `kerakit train` writes `RUN/savedmodel/` itself): checked where they are.
        existing: check the artifacts already in `RUN/export/` instead of writing them
            (`--existing`: an artifact copied, edited or kept since its export).
        repeats: latency repeats of one sample and of one batch.

    Returns:
        What export.json holds: `passed`, `failures`, and per artifact its file, size,
        largest difference, top-1 agreement, metrics and latencies.
    """
    formats = parse_formats(formats)
    if quantize is not None and quantize not in QUANTIZE:
        raise KerakitError(f"--quantize {quantize}: choose one of {', '.join(QUANTIZE)}")
    folder, model, recipe = _open(Path(run), trusted)
    out = folder / EXPORT_DIR
    names = [t.name for t in model.inputs]
    split, x, y, train_x, info = _data(folder, recipe, data, model, quantize == "int8")
    inputs = _as_list(x, model)
    keras = keras_runner(model)
    reference = _run_all(keras, inputs)  # the model has been called: ONNX can trace it
    report = _header(folder, model, recipe, formats, quantize, verify, tolerance, metric_drop)
    report["data"] = {"source": info["source"], "split": split, "examples": len(inputs[0])}
    plan = [(f, None) for f in formats] + ([("litert", quantize)] if quantize else [])
    for fmt, q in plan:
        name = artifact_name(fmt, q)
        why = not_exportable(model, fmt)
        if why is not None:
            print_fn(f"{name}: not exported: {why}")
            report["artifacts"][name] = {"format": fmt, "refused": why}
            continue
        path = (written or {}).get(name)
        if existing and path is None:
            path = out / artifact_file(fmt, q)
            if not path.exists():
                raise KerakitError(f"{path}: no {name} artifact to check (--existing); "
                                   "export it first")  # fmt: skip
        if path is None:
            train = _as_list(train_x, model) if train_x is not None else None
            try:
                path = write_artifact(model, fmt, out, quantize=q, representative=train)
            except KerakitError:
                raise
            except Exception as exc:  # a layer or op the format's converter cannot hold
                why = f"the {fmt} converter could not write it ({_first_line(exc)})"
                print_fn(f"{name}: not exported: {why}")
                report["artifacts"][name] = {"format": fmt, "refused": why}
                report["failures"].append(f"{name}: not exported: {why}")
                continue
        report["artifacts"][name] = {"format": fmt, "quantize": q, "file": _rel(path, folder),
                                     "bytes": _bytes(path)}  # fmt: skip
        print_fn(f"{name}: {path} ({report['artifacts'][name]['bytes']:,} bytes)")
    if verify:
        _verify(report, folder, model, names, inputs, reference, _labels(y, model), keras,
                repeats, tolerance, metric_drop, print_fn)  # fmt: skip
    else:
        print_fn("the parity gate was skipped (--no-verify): the artifacts are not checked")
    report["passed"] = not report["failures"]
    _write(report, folder, out, recipe, info, x, y, reference)
    return report


def _verify(report, folder, model, names, inputs, reference, labels, keras, repeats,
            tolerance, metric_drop, print_fn) -> None:  # fmt: skip
    sample, batch = repeats
    report["keras"]["metrics"] = gate.metrics(reference, labels,
                                              [gate.output_kind(r) for r in reference])  # fmt: skip
    predict = keras_runner(model, predict=True)
    report["keras"]["latency"] = gate.latency(predict, inputs, sample_repeats=sample,
                                              batch_repeats=batch)  # fmt: skip
    report["keras"]["call_latency"] = gate.latency(keras, inputs, sample_repeats=sample,
                                                   batch_repeats=batch)  # fmt: skip
    for name, row in report["artifacts"].items():
        if row.get("refused"):
            continue
        try:
            runner = open_artifact(row["format"], folder / row["file"], names)
            got = _run_all(runner, inputs)
        except KerakitError:
            raise
        except Exception as exc:  # a corrupt file, an op its runtime lacks
            row["gate"] = "FAILED"
            report["failures"].append(f"{name}: its runtime cannot run it ({_first_line(exc)})")
            print_fn(report["failures"][-1])
            continue
        row.update(gate.compare(reference, got, labels))
        row["latency"] = gate.latency(runner, inputs, sample_repeats=sample, batch_repeats=batch)
        failure = gate.judge(name, row, quantized=row["quantize"] is not None,
                             tolerance=tolerance, metric_drop=metric_drop)  # fmt: skip
        row["gate"] = "FAILED" if failure else "passed"
        if failure:
            report["failures"].append(failure)
        agree = row["top1_agreement"]
        print_fn(f"{name}: max abs diff {row['max_abs_diff']:.2e}"
                 + ("" if agree is None else f", top-1 agreement {agree:.2f}%")
                 + f", 1 sample {row['latency']['sample']['median_ms']:.3f} ms: {row['gate']}")  # fmt: skip


def check_or_raise(report: dict) -> dict:
    """`report`, or ExportGateFailed naming each failed artifact and by how much."""
    if report.get("failures"):
        raise ExportGateFailed("the export parity gate failed: " + "; ".join(report["failures"]),
                               report)  # fmt: skip
    return report


# --------------------------------------------------------------------------- helpers


def _open(path: Path, trusted: bool) -> tuple[Path, Any, Any]:
    """(run folder, model, recipe or None)."""
    from kerakit.recipe import load_recipe
    from kerakit.saving import load_model

    if not path.exists():
        raise KerakitError(f"{path}: no such run folder or model file")
    model = load_model(path, trusted=trusted)
    if path.is_dir() and (path / RUN_FILE).is_file():
        recipe = None
        if (path / RECIPE_FILE).is_file():
            recipe = load_recipe(path / RECIPE_FILE, run_imports=False)
        return path, model, recipe
    return (path if path.is_dir() else path.parent), model, None


def _data(folder: Path, recipe: Any, data: str | None, model: Any, need_train: bool):
    """(split name, x, y, training x or None, the data section) the gate runs on."""
    from kerakit.data import load_data, to_numpy
    from kerakit.recipe.data import resolve_data

    if data is None and recipe is None:
        raise DataError("a bare model file has no recipe to take data from: pass --data SOURCE")
    section = dict(recipe["data"]) if recipe is not None else {}
    if data is not None:
        keep = ("batch_size", "image_size", "rescale", "normalize", "flatten", "target",
                "target_type", "sample_weight", "features", "windows", "validation_split",
                "test_split", "vectorize", "text", "class_names")  # as evaluate --data keeps  # fmt: skip
        section = {**{k: v for k, v in section.items() if k in keep}, "source": data}
    where = Where("--data" if data is not None else str(folder / RECIPE_FILE), {}, ("data",))
    section = resolve_data(section, where)
    base = os.getcwd() if data is not None or recipe is None else recipe.base_dir
    bundle = load_data(section, base_dir=base, seed=recipe["seed"] if recipe else 42,
                       where=where, raw_features=True)  # the saved model takes raw inputs  # fmt: skip
    split_name = "test" if bundle.test is not None else "val"
    split = bundle.test if bundle.test is not None else bundle.val
    if split is None:
        raise DataError("the data has neither a test nor a validation split to check on")
    x, y = to_numpy(split)
    train_x = to_numpy(bundle.train.take(gate.BATCH * 8))[0] if need_train else None
    info = {"source": section["source"], "sizes": dict(bundle.sizes),
            "value_range": bundle.value_range}  # fmt: skip
    return split_name, x, y, train_x, info


def _as_list(x: Any, model: Any) -> list:
    names = [t.name for t in model.inputs]
    if isinstance(x, Mapping):
        missing = [n for n in names if n not in x]
        if missing:
            raise DataError(f"the data has no input {missing[0]!r} (it has {', '.join(x)})")
        return [np.asarray(x[n]) for n in names]
    if isinstance(x, (list, tuple)):
        return [np.asarray(a) for a in x]
    return [np.asarray(x)]


def _labels(y: Any, model: Any) -> list | None:
    if y is None:
        return None
    if isinstance(y, Mapping):
        return [y.get(n) for n in getattr(model, "output_names", None) or list(y)]
    if isinstance(y, (list, tuple)):
        return list(y)
    return [y]


def _run_all(run, inputs: list) -> list:
    parts = [run([a[i : i + CHUNK] for a in inputs]) for i in range(0, len(inputs[0]), CHUNK)]
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def _rel(path: Path, folder: Path) -> str:
    try:
        return Path(path).relative_to(folder).as_posix()
    except ValueError:
        return str(path)


def _bytes(path: Path) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _header(folder, model, recipe, formats, quantize, verify, tolerance, metric_drop) -> dict:
    keras_file = folder / "model.keras"
    return {
        "name": recipe.name if recipe is not None else model.name,
        "source": str(folder),
        "formats": formats,
        "quantize": quantize,
        "verified": bool(verify),
        "tolerance": float(tolerance),
        "metric_drop": float(metric_drop),
        "batch": gate.BATCH,
        "cpu": cpu_name(),
        "signature": io_spec(model),
        "keras": {
            "file": "model.keras" if keras_file.is_file() else None,
            "bytes": keras_file.stat().st_size if keras_file.is_file() else None,
        },  # fmt: skip
        "artifacts": {},
        "failures": [],
    }


def _write(report, folder, out, recipe, info, x, y, reference) -> None:
    out.mkdir(parents=True, exist_ok=True)
    value_range = info.get("value_range")
    report["value_range"] = value_range
    files = {n: r["file"] for n, r in report["artifacts"].items() if not r.get("refused")}
    write_json(out / SIGNATURE_FILE, {**report["signature"], "value_range": value_range,
                                      "artifacts": files})  # fmt: skip
    write_json(out / JSON_FILE, report)
    write_text(out / REPORT_FILE, card.export_markdown(report))
    classes = read_json(folder / CLASSES_FILE) if (folder / CLASSES_FILE).is_file() else None
    metrics = read_json(folder / METRICS_FILE) if (folder / METRICS_FILE).is_file() else None
    labels = _labels(y, None) if y is not None and not isinstance(y, Mapping) else None
    probs = reference[0] if reference and classes and reference[0].ndim == 2 else None
    if probs is not None and probs.shape[1] != len(classes):
        probs = None
    text = card.model_card(report, recipe=recipe.to_dict() if recipe is not None else None,
                           classes=classes, metrics=metrics, sizes=info.get("sizes"),
                           y_true=labels[0] if labels and probs is not None else None,
                           probs=probs, environment=environment())  # fmt: skip
    write_text(folder / CARD_FILE, text)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def environment() -> dict:
    """Versions of everything an artifact's numbers depend on, and the CPU."""
    from importlib import metadata

    import kerakit

    out = {"python": sys.version.split()[0], "kerakit": kerakit.__version__}
    for label, dist in (("tensorflow", "tensorflow"), ("keras", "keras"), ("onnx", "onnx"),
                        ("tf2onnx", "tf2onnx"), ("onnxruntime", "onnxruntime"),
                        ("ai-edge-litert", "ai-edge-litert"), ("numpy", "numpy")):  # fmt: skip
        try:
            out[label] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[label] = "not installed"
    out["platform"] = platform.platform()
    out["cpu"] = cpu_name()
    return out
