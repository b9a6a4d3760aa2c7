"""Using a finished run: `evaluate`, `predict` (arrays or files) and the augmentation preview."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kerakit._files import read_json, write_text
from kerakit.errors import DataError, KerakitError, Where
from kerakit.recipe import Recipe, load_recipe
from kerakit.recipe.compile import pipeline_label_mode, takes_logits
from kerakit.recipe.features import table_features
from kerakit.recipe.text import evaluate_keys, text_input
from kerakit.training.runfolder import (
    CLASSES_FILE,
    EVALUATE_FILE,
    INPUTS_FILE,
    NORMALIZATION_FILE,
    RECIPE_FILE,
    RUN_FILE,
    write_run_json,
)

PARQUET_EXTS = (".parquet", ".pq")  # as kerakit.data.tables reads them (that imports TensorFlow)

# --------------------------------------------------------------------------- evaluate / predict


def open_run(run_or_model: str | os.PathLike, trusted: bool = False):
    """(model, recipe or None, run folder or None) from a run folder or a model file."""
    from kerakit.saving import load_model

    path = Path(run_or_model)
    if not path.exists():
        raise KerakitError(f"{path}: no such run folder or model file")
    model = load_model(path, trusted=trusted)
    recipe = None
    folder = path if path.is_dir() and (path / RUN_FILE).is_file() else None
    if folder is not None and (folder / RECIPE_FILE).is_file():
        # its code was imported with the model, from the files the run recorded (code.json)
        recipe = load_recipe(folder / RECIPE_FILE, run_imports=False)
    return model, recipe, folder


def evaluate(
    run_or_model: str | os.PathLike,
    *,
    data: str | Mapping | None = None,
    trusted: bool = False,
    print_fn=None,
    tta: int = 0,
) -> dict:
    """Evaluate a run folder (or a model file) on test data; writes evaluate.json in a run folder.

    The test split is measured, or the validation split when the data has no test
    split; evaluate.json records which (``"split"``, ``"examples"``) beside the metrics.

    Args:
        run_or_model: a run folder, or a `.keras`/`.h5`/SavedModel path.
        data: a data source (``"npz:test.npz"``) or a `data:` section; default: the run's recipe's.
        trusted: allow code in the model file (see docs/security.md).
        print_fn: if given, called with one line naming the split measured and its size.
        tta: test-time augmentation of an image classifier: also its accuracy on the plain
            pass averaged with `tta` augmented ones (the recipe's `augment:` ops, or flips),
            as `accuracy_no_tta` and `accuracy_tta`. A `Run` may stand for its folder.

    Returns:
        {metric: value}.
    """
    from kerakit.data import load_data
    from kerakit.recipe.data import resolve_data

    model, recipe, folder = open_run(getattr(run_or_model, "path", run_or_model), trusted)
    if tta < 0:
        raise DataError(f"--tta is a number of augmented passes, 0 or more; got {tta}")
    if tta:
        from kerakit.training.interpret import check_tta

        check_tta(model)
    if data is None and recipe is None:
        raise DataError(
            "a bare model file has no recipe to take data from: pass --data SOURCE (e.g. npz:test.npz)"
        )
    section = dict(recipe["data"]) if recipe is not None else {}
    if isinstance(data, str):
        keep = ("batch_size", "image_size", "rescale", "normalize", "flatten")  # preprocessing
        if table_features(section) is not None and data.startswith("csv:"):
            keep += ("target", "target_type", "sample_weight", "features")  # the same columns
        keep += evaluate_keys(section, data)  # text: the same classes (or column) and vectorize
        if section.get("windows") is not None:  # a series: the same windows, split by time
            keep += ("windows", "validation_split", "test_split")
        section = {**{k: v for k, v in section.items() if k in keep}, "source": data}
    elif isinstance(data, Mapping):
        section = dict(data)
    where = Where("--data" if data is not None else str(folder / RECIPE_FILE), {}, ("data",))
    section = resolve_data(section, where)
    base_dir = os.getcwd() if data is not None else (recipe.base_dir if recipe else os.getcwd())
    bundle = load_data(section, base_dir=base_dir, seed=recipe["seed"] if recipe else 42,
                       where=where, raw_features=True)  # a table's model takes raw columns  # fmt: skip
    name = "test" if bundle.test is not None else "val"
    split = bundle.test if bundle.test is not None else bundle.val
    if split is None:
        raise DataError("the data has neither a test nor a validation split to evaluate on")
    _check_input_shape(model, bundle.input_shape, section["source"])
    from kerakit.data import make_pipeline

    preset = recipe["compile"]["preset"] if recipe else "multiclass"
    ds = make_pipeline(split, batch_size=section["batch_size"], training=False, label_mode=pipeline_label_mode(preset),
                       num_classes=bundle.num_classes, cache=False)  # fmt: skip
    if not getattr(model, "compiled", True) or getattr(model, "optimizer", None) is None:
        raise DataError(
            "this model was saved without its training configuration; evaluate needs a compiled .keras/.h5 model"
        )
    metrics = {k: float(v) for k, v in model.evaluate(ds, verbose=0, return_dict=True).items()}
    if tta:
        from kerakit.training.interpret import tta_metrics

        metrics.update(tta_metrics(model, split, tta, augment=recipe["augment"] if recipe else None,
                                   from_logits=bool(recipe and takes_logits(recipe["compile"]))))  # fmt: skip
    examples = int(bundle.sizes.get(name) or 0)
    if print_fn is not None:
        note = "" if name == "test" else " (the data has no test split)"
        what = "test" if name == "test" else "validation"
        print_fn(
            f"evaluated on the {what} split of {section['source']} ({examples:,} examples){note}"
        )
    if folder is not None:
        write_run_json(folder / EVALUATE_FILE, {"split": name, "examples": examples, **metrics})
    return metrics


def _check_input_shape(model, got, source: str) -> None:
    """A DataError naming both shapes when the data's examples do not fit the model's input."""
    want = model.input_shape
    if isinstance(got, Mapping) or isinstance(want, (list, dict)) or not want:
        return  # several inputs: Keras matches them by name and says what is missing
    want, got = tuple(want[1:]), tuple(got)
    if len(want) != len(got) or any(None not in (w, g) and w != g for w, g in zip(want, got)):
        raise DataError(
            f"the model takes inputs of shape {want} but the data ({source}) gives {got}; "
            "evaluate it on data of the shape it was trained on"
        )


def read_inputs(files: list[str], model, recipe: Recipe | None, folder: Path | None = None
                 ) -> tuple[Any, list[str]]:  # fmt: skip
    """Raw inputs from image files, .npy/.npz or .csv, and a label per row.

    Image files hold 0-255 pixels; a run whose training inputs had another range
    (scikit-learn's digits: 0-16) gets them mapped to it (`inputs.json`), so the
    recipe's own rescaling then does what it did in training.
    """
    import keras

    from kerakit.data import IMAGE_EXTS

    paths = [Path(f) for f in files]
    for p in paths:
        if not p.is_file():
            raise DataError(f"{p}: no such file")
    shape = model.input_shape if not isinstance(model.input_shape, list) else model.input_shape[0]
    if all(p.suffix.lower() in IMAGE_EXTS for p in paths):
        if len(shape) != 4:
            raise DataError(f"this model takes inputs of shape {tuple(shape[1:])}, not images")
        h, w, c = shape[1:]
        data = (recipe or {}).get("data", {}) if recipe is not None else {}
        size = data.get("image_size") or [h, w]
        arrays = []
        for p in paths:
            try:
                img = keras.utils.load_img(
                    p, color_mode="grayscale" if c == 1 else "rgb", target_size=tuple(size)
                )
            except Exception as exc:
                raise DataError(f"{p}: not a readable image ({_image_error(exc)})") from None
            arrays.append(keras.utils.img_to_array(img))
        x = np.stack(arrays)
        value_range = read_json(folder / INPUTS_FILE).get("value_range") if folder else None
        if value_range and list(value_range) != [0, 255]:
            low, high = (float(v) for v in value_range)
            x = low + x / 255.0 * (high - low)
        return x, [str(p) for p in paths]
    if len(paths) != 1:
        raise DataError("give either image files, or one .npy/.npz/.csv file")
    p = paths[0]
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            x = np.load(p, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                key = next(
                    (k for k in ("x", "x_test", "x_train") if k in z.files),
                    z.files[0] if z.files else None,
                )
                if key is None:
                    raise DataError(f"{p}: the .npz holds no arrays")
                x = z[key]
        elif suffix == ".csv" and recipe is not None and recipe["data"].get("windows"):
            from kerakit.data.series import last_window

            x = last_window(p, recipe["data"])  # raw rows: the run's model normalizes them
            return x, [f"{p.name}[last window]"]
        elif (
            suffix in (".csv", *PARQUET_EXTS)
            and recipe is not None
            and table_features(recipe["data"])
        ):
            from kerakit.data.features import read_rows

            x = read_rows(p, recipe["data"])  # raw columns: the run's model encodes them
            return x, [f"{p.name}[{i}]" for i in range(len(next(iter(x.values()))))]
        elif suffix in (".csv", *PARQUET_EXTS):
            x = _read_csv_features(p, recipe)
        else:
            raise DataError(
                f"{p}: cannot predict on a {suffix or 'suffix-less'} file; give images, .npy, .npz or .csv"
            )
    except (ValueError, OSError) as exc:
        raise DataError(f"{p}: cannot read it ({exc})") from None
    want = tuple(shape[1:])
    if recipe is None or not recipe["data"].get("image_size"):
        if tuple(x.shape[1:]) != want and tuple(x.shape) == want:
            x = x[None]
        if len(x.shape[1:]) != len(want) or any(
            a is not None and a != b for a, b in zip(want, x.shape[1:])
        ):
            raise DataError(
                f"{p}: inputs of shape {tuple(x.shape[1:])} do not fit the model, which takes {want}"
            )
    return x, [f"{p.name}[{i}]" for i in range(len(x))]


def _image_error(exc: Exception) -> str:
    """PIL's reason, without the `<_io.BytesIO object at 0x...>` Keras's loader puts in it."""
    if type(exc).__name__ == "UnidentifiedImageError":
        return "its content is in no image format Pillow can read"
    return re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", str(exc)) or type(exc).__name__


def _read_csv_features(path: Path, recipe: Recipe | None) -> np.ndarray:
    from kerakit.data.tables import feature_matrix, read_table

    header, rows = read_table(path)
    data = recipe["data"] if recipe is not None else {}
    # the target and the sample-weight column are not features (either may be absent)
    return feature_matrix(
        path, header, rows, exclude=(data.get("target"), data.get("sample_weight"))
    )


def predict(run_or_model: str | os.PathLike, x: Any, *, trusted: bool = False) -> np.ndarray:
    """Predictions of a run folder (or model file) on raw inputs, preprocessed as in training."""
    model, recipe, folder = open_run(run_or_model, trusted)
    return np.asarray(model.predict(model_inputs(model, recipe, folder, x), verbose=0))


def model_inputs(model, recipe: Recipe | None, folder: Path | None, x: Any) -> Any:
    """Raw inputs (a batch) as the model takes them, prepared as in training (`kerakit serve`)."""
    if recipe is not None and text_input(recipe["data"]):
        from kerakit.data.text import as_texts

        return as_texts(x)  # the model vectorizes them
    if recipe is not None and table_features(recipe["data"]):
        from kerakit.data.features import ordered

        return ordered(x, model)
    if recipe is not None:
        from kerakit.data import prepare_inputs

        stats = read_json(folder / NORMALIZATION_FILE) or None if folder else None
        x = prepare_inputs(x, recipe["data"], stats, batched=True)
    return x


def predict_files(run_or_model, inputs: list[str], *, output: str | None = None, top: int = 3,
                  trusted: bool = False, print_fn=print, texts: list[str] | None = None,
                  ) -> list[dict]:  # fmt: skip
    """`kerakit predict`: top classes (multilabel: the labels over 0.5; regression: the
    values) per input, printed and optionally written. `texts` are raw texts (`--text`) for
    a model that takes strings, beside or instead of files."""
    if not inputs and not texts:
        raise DataError('nothing to predict: give input files, or --text "..." for a text model')
    model, recipe, folder = open_run(run_or_model, trusted)
    from kerakit.data.text import predict_texts, takes_text

    if texts or takes_text(model):  # raw strings: .txt files, a CSV's text column, --text
        x, labels = predict_texts(inputs, texts or [], model, recipe["data"] if recipe else None)
    else:
        x, labels = read_inputs(inputs, model, recipe, folder)
    probs = np.asarray(model.predict(model_inputs(model, recipe, folder, x), verbose=0))
    if _outputs_are_arrays(model):  # image-to-image: images or a .npy, not numbers per line
        from kerakit.report.outputs import write_outputs

        return write_outputs(np.asarray(probs), labels, output, print_fn=print_fn)
    return prediction_rows(probs, labels, recipe, folder, top=top, print_fn=print_fn, output=output)


def prediction_rows(probs, labels: list[str], recipe: Recipe | None, folder: Path | None, *,
                    top: int = 3, print_fn=print, output: str | None = None) -> list[dict]:  # fmt: skip
    """A row per input: what `kerakit predict` prints and writes (`output`), `kerakit serve` answers."""
    names = None
    if folder is not None and (folder / CLASSES_FILE).is_file():
        names = read_json(folder / CLASSES_FILE)
    preset = recipe["compile"]["preset"] if recipe is not None else None
    if preset in ("binary", "multiclass", "multiclass_onehot", "multilabel") and takes_logits(
        recipe["compile"]
    ):
        from kerakit.report.metrics import to_probabilities

        probs = to_probabilities(probs, True, multilabel=preset == "multilabel")
        how = "a sigmoid" if preset in ("binary", "multilabel") else "a softmax"
        print_fn(f"probabilities: {how} of the model's outputs (its loss takes logits)")
    rows = []
    for label, p in zip(labels, probs):
        p = np.asarray(p).reshape(-1)
        row: dict = {"input": label}
        if preset == "regression" or (preset is None and p.size == 1 and names is None):
            row["prediction"] = [float(v) for v in p]
            print_fn(f"{label}: " + ", ".join(f"{v:.4f}" for v in p))
        elif preset == "multilabel":  # independent sigmoids: the labels over 0.5, then the nearest
            order = [int(i) for i in np.argsort(-p)]
            on = [i for i in order if p[i] >= 0.5]
            shown = on + [i for i in order if p[i] < 0.5][: max(0, top - len(on))]
            name = [names[i] if names and i < len(names) else str(i) for i in range(p.size)]
            row["labels"] = [name[i] for i in on]
            row["top"] = [{"class": name[i], "index": i, "probability": float(p[i])} for i in shown]
            text = ", ".join(f"{name[i]} ({p[i]:.3f})" for i in on) or "no label over 0.5"
            off = [f"{name[i]} ({p[i]:.3f})" for i in shown if p[i] < 0.5]
            print_fn(f"{label}: {text}" + (f"; below 0.5: {', '.join(off)}" if off else ""))
        else:
            if p.size == 1:  # one sigmoid unit: P(class 1)
                p = np.array([1 - p[0], p[0]])
            order = np.argsort(-p)[:top]
            cls = [names[i] if names and i < len(names) else str(i) for i in order]
            row["top"] = [
                {"class": c, "index": int(i), "probability": float(p[i])}
                for c, i in zip(cls, order)
            ]
            print_fn(f"{label}: " + ", ".join(f"{c} ({p[i]:.3f})" for c, i in zip(cls, order)))
        rows.append(row)
    if output and Path(output).suffix.lower() == ".npy":  # the model's outputs, as they are
        from kerakit.report.outputs import save_npy

        save_npy(output, np.asarray(probs), print_fn=print_fn)
    elif output:
        _write_predictions(Path(output), rows)
    return rows


def _outputs_are_arrays(model) -> bool:
    """Whether a model's one output has its input's shape (an image-to-image model)."""
    from kerakit.report.kinds import task_kind

    ins, outs = model.inputs, model.outputs
    shapes = (tuple(ins[0].shape[1:]), tuple(outs[0].shape[1:]))
    return len(ins) == 1 and task_kind(None, *shapes, outputs=len(outs)) == "same_shape"


def _write_predictions(path: Path, rows: list[dict]) -> None:
    if path.suffix.lower() == ".json":
        write_text(path, json.dumps(rows, indent=2) + "\n")
        return
    if path.suffix.lower() != ".csv":
        raise DataError(f"--output {path}: write .csv, .json or .npy")
    lines = []
    if rows and "top" in rows[0]:
        lines.append("input,rank,class,index,probability")
        for r in rows:
            lines += [
                f"{r['input']},{k + 1},{t['class']},{t['index']},{t['probability']:.6f}"
                for k, t in enumerate(r["top"])
            ]
    else:
        lines.append("input,prediction")
        lines += [f"{r['input']},{' '.join(str(v) for v in r['prediction'])}" for r in rows]
    write_text(path, "\n".join(lines) + "\n")


def preview_augmentation(recipe: Recipe | str, out: str | os.PathLike, *, n: int = 16) -> Path:
    """`kerakit augment --preview`: a PNG grid of original and augmented training images."""
    recipe = load_recipe(recipe)
    if not recipe["augment"]:
        raise recipe.where.error("this recipe has no `augment:` section to preview")
    from kerakit.augment import augmentation
    from kerakit.data import load_recipe_data, to_numpy
    from kerakit.report.plots import save_figure

    bundle = load_recipe_data(recipe)
    x, _ = to_numpy(bundle.train.take(n))
    aug = augmentation(recipe["augment"], seed=recipe["seed"], where=recipe.where.at("augment"))
    return save_figure(aug.preview(x, n=n, seed=recipe["seed"]), out)
