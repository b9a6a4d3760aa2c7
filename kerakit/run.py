"""One training run: recipe -> data -> model -> fit -> run folder.

    run = kk.train("configs/digits_cnn.yaml", epochs=3)
    run.metrics            # test metrics
    run.path               # runs/digits-cnn/20261129-031500/
    run.plot_history()

`train` wires the concept modules together; `check`, `evaluate` and
`predict` are the other verbs of the command line.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kerakit.errors import DataError, KerakitError, ResumeError, TrainingDiverged, Where
from kerakit.recipe import Recipe, load_recipe

RUN_FILE = "run.json"


# --------------------------------------------------------------------------- the Run object


class Run:
    """The result of `train`: the model, its history, test metrics and run folder.

    Attributes:
        path: the run folder.
        recipe: the resolved recipe (every default and automatic choice filled in).
        model: the trained `keras.Model`.
        history: {metric: [value per epoch]} over the whole run (resumed epochs included).
        metrics: test metrics ({} when there is no test split).
        class_names: the class names, or None.
    """

    def __init__(self, path, recipe, model, history, metrics, class_names, data=None):
        self.path = Path(path)
        self.recipe = recipe
        self.model = model
        self.history = history
        self.metrics = metrics
        self.class_names = class_names
        self.data = data

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v:.4f}" for k, v in self.metrics.items() if isinstance(v, float))
        return f"<Run {self.path} {shown}>"

    # The pictures (kerakit.plots); each returns a matplotlib Figure.
    def plot_history(self):
        from kerakit.plots import plot_history

        return plot_history(self.history)

    def _test_predictions(self):
        if getattr(self, "_preds", None) is None:
            if self.data is None or self.data.test is None:
                raise DataError("this run has no test split to plot; set data.test_split")
            x, y = _arrays(self.data.test)
            probs = self.model.predict(x, verbose=0)
            self._preds = (x, y, probs)
        return self._preds

    def plot_confusion(self, normalize: bool = False):
        from kerakit.plots import plot_confusion

        _, y, probs = self._test_predictions()
        return plot_confusion(y, _labels_from_probs(probs), class_names=self.class_names, normalize=normalize)

    def show_errors(self, n: int = 16):
        from kerakit.plots import show_errors

        x, y, probs = self._test_predictions()
        return show_errors(x, y, probs, class_names=self.class_names, n=n)

    def predict(self, x, **kwargs):
        return self.model.predict(x, verbose=0, **kwargs)


def _arrays(ds) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for x, y in ds.batch(1024):
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def _labels_from_probs(probs: np.ndarray) -> np.ndarray:
    if probs.ndim == 2 and probs.shape[-1] > 1:
        return probs.argmax(-1)
    return (probs.reshape(-1) > 0.5).astype(int)


# --------------------------------------------------------------------------- shared set-up


def _set_seeds(recipe: Recipe) -> None:
    import keras
    import tensorflow as tf

    if recipe["seed"] is not None:
        keras.utils.set_random_seed(recipe["seed"])
    if recipe["deterministic"]:
        tf.config.experimental.enable_op_determinism()


def _precision(recipe: Recipe) -> tuple[str, str]:
    """The dtype policy to use and why ("auto" is decided here and recorded)."""
    choice = recipe["train"]["precision"]
    if choice != "auto":
        return choice, "asked for in the recipe"
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        # Unmeasured on GPUs so far (benchmarks/README.md); stay exact until it is.
        return "float32", "auto: GPU figures are unmeasured, float32 kept"
    if "transfer" in recipe["model"] and _cpu_has_bf16():
        # Measured (docs/transfer.md): a VGG16 backbone ran 3.4-7x faster under
        # mixed_bfloat16 on a bf16-capable CPU, head accuracy within noise.
        return "mixed_bfloat16", "auto: a transfer backbone on a CPU with bf16 instructions, measured 3-7x faster"
    return "float32", "auto: float32 on CPU (mixed precision only where measured faster)"


def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read(200_000)
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def _strategy(recipe: Recipe):
    from kerakit.distribute import make_strategy

    return make_strategy(recipe["train"], where=recipe.where.at("train"))


def _build_compiled(recipe: Recipe, bundle, *, strategy=None):
    """Build and compile the recipe's model; returns (model, resolved compile section, notes)."""
    import keras

    from kerakit.compile import apply_compile, resolve_compile
    from kerakit.models import build_model

    policy, why = _precision(recipe)
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    aug = _augmentation(recipe)
    try:
        model = build_model(recipe, input_shape=bundle.input_shape if bundle else None,
                            num_classes=bundle.num_classes if bundle else None)  # fmt: skip
        if aug is not None and aug.placement == "model":
            model = _with_augmentation_inside(recipe, model, aug)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    section, notes = resolve_compile(recipe["compile"], model, where=recipe.where.at("compile"))
    if aug is not None and aug.needs_labels and section["preset"] == "multiclass":
        # mixup/cutmix blend labels, so they need one-hot labels and categorical crossentropy
        section["preset"] = "multiclass_onehot"
        if section.get("loss") == "sparse_categorical_crossentropy":
            section["loss"] = "categorical_crossentropy"
        notes.append("compile preset: multiclass_onehot (mixup/cutmix blend one-hot labels)")
    if strategy is not None:
        from kerakit.distribute import max_steps_per_execution

        cap = max_steps_per_execution(strategy)
        if cap is not None and section["steps_per_execution"] > cap:
            # keras#19246: fit breaks with steps_per_execution > 1 on several replicas
            section["steps_per_execution"] = cap
            notes.append(f"steps_per_execution: {cap} (several replicas; keras#19246)")
    apply_compile(model, section, where=recipe.where.at("compile"))
    notes.append(f"precision: {policy} ({why})")
    return model, section, policy, notes


def _with_augmentation_inside(recipe: Recipe, model, aug):
    """`augment.placement: model`: the augmentation as the model's first layer (training only)."""
    import keras

    if "transfer" in recipe["model"]:
        raise recipe.where.at("augment", "placement").error(
            "placement: model is not supported for transfer models yet; use placement: data"
        )
    inputs = keras.Input(shape=model.input_shape[1:], name=model.inputs[0].name.split(":")[0])
    return keras.Model(inputs, model(aug.layer()(inputs)), name=model.name)


def _resolved(recipe: Recipe, compile_section: dict, policy: str) -> Recipe:
    resolved = recipe.replace("compile", compile_section)
    train = dict(resolved["train"])
    train["precision"] = policy
    return resolved.replace("train", train)


# --------------------------------------------------------------------------- check


def check(recipe: Recipe | str | Mapping, *, overrides=None, print_fn=print) -> Any:
    """Validate a recipe, build and compile its model, and print what would run (no training).

    Returns the compiled model.
    """
    recipe = load_recipe(recipe, overrides=overrides)
    from kerakit.data import load_data

    bundle = None
    if recipe["data"]["source"] != "arrays" and _needs_data_for_build(recipe):
        bundle = load_data(recipe["data"], base_dir=recipe.base_dir, seed=recipe["seed"], where=recipe.where.at("data"))
    model, section, policy, notes = _build_compiled(recipe, bundle)
    model.summary(print_fn=lambda line, *a, **k: print_fn(line))
    params = model.count_params()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    print_fn(f"parameters: {params:,} ({trainable:,} trainable)")
    for note in notes:
        print_fn(note)
    from kerakit.distribute import describe_strategy

    print_fn("distribute: " + describe_strategy(recipe["train"], where=recipe.where.at("train")))
    if "transfer" in recipe["model"]:
        from kerakit.transfer import format_stage_report, stage_report

        print_fn(format_stage_report(stage_report(model, recipe["model"]["transfer"].get("fine_tune"))))
    print_fn(f"recipe OK: {recipe.file or recipe.name}")
    return model


def _needs_data_for_build(recipe: Recipe) -> bool:
    model = recipe["model"]
    if "sequential" in model:
        return not model.get("input_shape")
    if "transfer" in model:
        return not (model["transfer"].get("head") or {}).get("classes")
    return False


# --------------------------------------------------------------------------- run folders


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, value: Any) -> None:
    from kerakit.saving import write_text

    write_text(path, json.dumps(value, indent=2, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _changed_sections(old: Mapping, new: Mapping) -> list[str]:
    keys = ("data", "augment", "model", "compile")
    return [k for k in keys if json.dumps(old.get(k), sort_keys=True, default=str)
            != json.dumps(new.get(k), sort_keys=True, default=str)]  # fmt: skip


def _stored_recipe(path: Path) -> dict:
    from kerakit._yaml import load_yaml

    file = path / "recipe.resolved.yaml"
    if not file.is_file():
        return {}
    value, _ = load_yaml(file.read_bytes(), str(file))
    return value or {}


def run_folder(recipe: Recipe, *, resume: str | os.PathLike | None = None, new: bool = False,
               print_fn=print, create: bool = True) -> tuple[Path, bool]:  # fmt: skip
    """The run folder to use and whether it resumes an interrupted run.

    With `resume`, that folder (its recipe must match). Otherwise the newest
    unfinished run of the same recipe is resumed (unless `new`), else a new
    folder ``output.dir/NAME/YYYYmmdd-HHMMSS`` is made.
    """
    base = Path(recipe["output"]["dir"]) / recipe.name
    if resume is not None:
        path = Path(resume)
        info = _read_json(path / RUN_FILE)
        if not info:
            raise ResumeError(f"{path} is not a kerakit run folder (no {RUN_FILE}); pass the folder `kerakit train` printed")
        if info.get("fingerprint") != recipe.fingerprint():
            changed = _changed_sections(_stored_recipe(path), recipe.to_dict())
            raise ResumeError(
                f"cannot resume {path}: the recipe changed since that run started "
                f"(in: {', '.join(changed) or 'its resolved values'}); undo the change, "
                "or start a new run without --resume"
            )
        return path, True
    if not new and base.is_dir():
        for path in sorted(base.iterdir(), reverse=True):
            info = _read_json(path / RUN_FILE)
            if info.get("status") in ("running", "interrupted") and info.get("fingerprint") == recipe.fingerprint():
                if (path / "backup").is_dir() and any((path / "backup").iterdir()):
                    print_fn(f"resuming the interrupted run {path} (pass --new to start afresh)")
                    return path, True
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = base / stamp
    n = 1
    while path.exists():
        n += 1
        path = base / f"{stamp}-{n}"
    if create:  # (not on a non-chief worker, which writes to a temporary folder)
        path.mkdir(parents=True)
    return path, False


def _env(recipe: Recipe, command, policy: str, strategy=None) -> dict:
    import keras
    import tensorflow as tf

    from kerakit import __version__

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "kerakit": __version__,
        "numpy": np.__version__,
        "seed": recipe["seed"],
        "deterministic": recipe["deterministic"],
        "precision": policy,
        "devices": [d.name for d in tf.config.list_logical_devices()],
        "replicas": getattr(strategy, "num_replicas_in_sync", 1),
        "global_batch_size": recipe["data"]["batch_size"] * getattr(strategy, "num_replicas_in_sync", 1),
        "command": list(command) if command else sys.argv,
        "cwd": os.getcwd(),
    }


# --------------------------------------------------------------------------- train


def _label_mode(preset: str) -> str:
    from kerakit.presets import PRESETS

    return PRESETS.get(preset, {}).get("label_mode", "int")


def train(
    recipe: Recipe | str | os.PathLike | Mapping,
    *,
    x: Any = None,
    y: Any = None,
    validation_data: Any = None,
    epochs: int | None = None,
    overrides=None,
    resume: str | os.PathLike | None = None,
    new: bool = False,
    verbose: int | str | None = None,
    command: list[str] | None = None,
    callbacks: list | None = None,
    print_fn=print,
) -> Run:
    """Train a recipe end to end and leave a complete run folder.

    Args:
        recipe: a recipe file, a mapping of plain values, or a `Recipe`.
        x, y: arrays (or dicts of arrays by input/output name) to train on
            instead of the recipe's data source; `validation_data` likewise.
        epochs: override ``train.epochs``.
        overrides: more ``KEY=VALUE`` overrides, as ``--set`` takes.
        resume: a run folder to resume; by default the newest interrupted run
            of the same recipe is resumed, unless `new` is true.
        verbose: Keras's fit verbosity (default: the recipe's, "auto").
        callbacks: more Keras callback objects, run after the recipe's own.

    Returns:
        A `Run` with the model, the history, the test metrics and the folder.

    Example:
        >>> run = train("configs/digits_cnn.yaml", epochs=3)
        >>> run.metrics["accuracy"]
    """
    overrides = list(overrides or []) if not isinstance(overrides, Mapping) else overrides
    if epochs is not None:
        if isinstance(overrides, Mapping):
            overrides = {**overrides, "train.epochs": epochs}
        else:
            overrides.append(f"train.epochs={int(epochs)}")
    if x is not None:
        overrides = overrides if isinstance(overrides, Mapping) else overrides + ["data.source=arrays"]
    recipe = load_recipe(recipe, overrides=overrides or None)
    from kerakit.data import load_data
    from kerakit.distribute import describe_strategy, is_chief, remove_worker_dir, worker_dir

    strategy = _strategy(recipe)  # before any other TF op: multi-worker collectives need it first
    _set_seeds(recipe)
    bundle = load_data(recipe["data"], base_dir=recipe.base_dir, seed=recipe["seed"],
                       where=recipe.where.at("data"), x=x, y=y, validation_data=validation_data)  # fmt: skip
    with strategy.scope():
        model, compile_section, policy, notes = _build_compiled(recipe, bundle, strategy=strategy)
    for note in notes + [f"distribute: {describe_strategy(strategy)}"]:
        print_fn(note)
    resolved = _resolved(recipe, compile_section, policy)
    if bundle.spec:
        resolved = resolved.replace("data", bundle.spec)  # every "auto" of the data made concrete
    _check_data_fits(resolved, model, bundle)  # before any run folder is made
    chief = is_chief(strategy)
    path, resuming = run_folder(resolved, resume=resume, new=new, print_fn=print_fn, create=chief)
    path = worker_dir(path, strategy)  # other workers write to a temporary folder (TF's guide)
    try:
        return _train_in(resolved, model, bundle, path, resuming, strategy, policy, command, verbose, print_fn,
                         list(callbacks or []))  # fmt: skip
    finally:
        if not chief:
            remove_worker_dir(path, strategy)


def _check_data_fits(recipe: Recipe, model, bundle) -> None:
    """Mistakes between data and model that Keras would only report mid-fit (or never)."""
    import tensorflow as tf

    where = recipe.where.at("model")
    want = model.input_shape
    got = bundle.input_shape
    if not isinstance(got, Mapping) and not isinstance(want, (list, dict)):
        if len(want) - 1 != len(got) or any(w is not None and w != g for w, g in zip(want[1:], got)):
            raise where.error(
                f"the model takes inputs of shape {tuple(want[1:])} but the data gives {tuple(got)}; "
                "fix model.input_shape (or leave it out to take it from the data), or data.image_size"
            )
    preset = recipe["compile"]["preset"]
    if bundle.num_classes and len(model.outputs) == 1 and preset in ("multiclass", "multiclass_onehot", "binary"):
        units = model.outputs[0].shape[-1]
        need = 1 if preset == "binary" else bundle.num_classes
        if preset == "binary" and bundle.num_classes > 2:
            raise recipe.where.at("compile", "preset").error(
                f"the data has {bundle.num_classes} classes, too many for a binary classifier; "
                "use preset multiclass with a softmax output of that many units"
            )
        if units != need:
            raise where.error(
                f"the data has {bundle.num_classes} classes ({', '.join(map(str, list(bundle.class_names or [])[:12]))}) "
                f"but the output layer has {units} units; a {preset} model needs {need}"
            )
    if bundle.in_memory:
        for x, _ in bundle.train.batch(4096):
            for part in tf.nest.flatten(x):
                if part.dtype.is_floating and not bool(tf.reduce_all(tf.math.is_finite(part))):
                    raise DataError(
                        f"{recipe['data']['source']}: the training inputs hold NaN or infinite values; "
                        "clean the data (or drop those rows) before training"
                    )


def _train_in(resolved, model, bundle, path, resuming, strategy, policy, command, verbose, print_fn, extra) -> Run:
    from kerakit.saving import write_text

    info = _read_json(path / RUN_FILE) if resuming else {}
    info.update(status="running", fingerprint=resolved.fingerprint(), name=resolved.name,
                started=info.get("started") or time.strftime("%Y-%m-%dT%H:%M:%S"))  # fmt: skip
    _write_json(path / RUN_FILE, info)
    write_text(path / "recipe.resolved.yaml", resolved.to_yaml())
    _write_json(path / "env.json", _env(resolved, command, policy, strategy))
    if bundle.class_names:
        _write_json(path / "classes.json", list(bundle.class_names))
    if bundle.stats:
        _write_json(path / "normalization.json", bundle.stats)

    try:
        history = _fit(resolved, model, bundle, path, strategy, verbose=verbose, print_fn=print_fn, extra=extra)
    except BaseException as exc:
        info["status"] = "diverged" if isinstance(exc, TrainingDiverged) else "interrupted"
        _write_json(path / RUN_FILE, info)
        raise
    metrics = _finish(resolved, model, bundle, path, history, strategy=strategy, print_fn=print_fn)
    info.update(status="complete", finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
    _write_json(path / RUN_FILE, info)
    return Run(path, resolved, model, history, metrics, bundle.class_names, data=bundle)


def _pipelines(recipe: Recipe, bundle, *, augmentation=None, strategy=None):
    from kerakit.data import make_pipeline
    from kerakit.distribute import global_batch_size, shard_options

    data = recipe["data"]
    cache = data["cache"] if isinstance(data["cache"], bool) else bundle.in_memory
    kw = dict(batch_size=global_batch_size(data["batch_size"], strategy), seed=recipe["seed"],
              label_mode=_label_mode(recipe["compile"]["preset"]), num_classes=bundle.num_classes, cache=cache,
              shuffle_buffer=data["shuffle_buffer"])  # fmt: skip

    def pipe(ds, training, **extra):
        return None if ds is None else shard_options(make_pipeline(ds, training=training, **kw, **extra), strategy)

    aug = {}
    if augmentation is not None and augmentation.placement == "data":
        aug = {"augment_fn": augmentation.map_fn(), "augment_labels": augmentation.needs_labels}
    return pipe(bundle.train, True, **aug), pipe(bundle.val, False), pipe(bundle.test, False)


def _augmentation(recipe: Recipe):
    """The recipe's `Augmentation`, or None."""
    if not recipe["augment"]:
        return None
    from kerakit.augment import augmentation

    return augmentation(recipe["augment"], seed=recipe["seed"], where=recipe.where.at("augment"))


def _probe(recipe: Recipe, bundle, strategy):
    """One uncached batch to find the logged names with (reading part of a cache() warns)."""
    from kerakit.data import make_pipeline
    from kerakit.distribute import global_batch_size

    split = bundle.val if bundle.val is not None else bundle.train
    return make_pipeline(split.take(recipe["data"]["batch_size"]), training=False, cache=False,
                         batch_size=global_batch_size(recipe["data"]["batch_size"], strategy),
                         label_mode=_label_mode(recipe["compile"]["preset"]), num_classes=bundle.num_classes)  # fmt: skip


def _monitor_names(model, ds) -> set[str]:
    """The loss and metric names Keras will log (without "val_"), found by evaluating one batch,
    so that monitors that cannot exist are caught before training."""
    return set(model.evaluate(ds.take(1), verbose=0, return_dict=True))


def _resume_parts(recipe: Recipe) -> dict:
    """What a backup must agree with to be resumed (not epochs: `--epochs` may grow a run)."""
    return {k: recipe[k] for k in ("data", "augment", "model", "compile")}


def _class_weight(recipe: Recipe, bundle) -> dict | None:
    cw = recipe["train"].get("class_weight")
    if cw is None:
        return None
    if cw != "balanced":
        return {int(k): float(v) for k, v in cw.items()}
    _, y = _arrays(bundle.train)
    counts = np.bincount(y.astype(int).reshape(-1))
    return {i: len(y) / (len(counts) * c) for i, c in enumerate(counts) if c}


def _callbacks(recipe: Recipe, model, path: Path, train_ds, val_ds, *, first=(), spec: list | None = None,
               start_epoch: int = 0, probe=None, extra=()) -> list:  # fmt: skip
    from kerakit.callbacks import make_callbacks

    names = _monitor_names(model, probe if probe is not None else (val_ds if val_ds is not None else train_ds))
    callbacks = make_callbacks(spec if spec is not None else recipe["train"]["callbacks"], run_dir=path,
                               monitor_names=names, has_validation=val_ds is not None,
                               where=recipe.where.at("train", "callbacks"), recipe=_resume_parts(recipe))  # fmt: skip
    from kerakit.checkpoint import DivergenceWatch, SafeBackupAndRestore, StopOnSignal

    backup = next((c for c in callbacks if isinstance(c, SafeBackupAndRestore)), None)
    resume_at = backup.newest_epoch() if backup is not None else None
    # An epoch logged after its backup was written (a kill in between) is run again:
    # drop its row now, before CSVLogger reopens the file to append.
    _trim_history(path / "history.csv", start_epoch if resume_at is None else resume_at)
    hint = f"Resume with the same `kerakit train` command, or --resume {path}."
    # `first` run before CSVLogger sees the logs; the signal stop runs after the backup.
    return [*first, DivergenceWatch(path), *callbacks, *extra, StopOnSignal(backup, hint)]


def _fit(recipe: Recipe, model, bundle, path: Path, strategy, *, verbose=None, print_fn=print, extra=()) -> dict:
    train_ds, val_ds, _ = _pipelines(recipe, bundle, augmentation=_augmentation(recipe), strategy=strategy)
    if verbose is None:
        verbose = recipe["train"]["verbose"]
    fit = dict(validation_data=val_ds, verbose=verbose, class_weight=_class_weight(recipe, bundle), shuffle=False)
    if "transfer" in recipe["model"]:
        from kerakit.transfer_run import fit_transfer

        make = functools.partial(_callbacks, extra=extra)
        return _history(path, fit_transfer(recipe, model, path, train_ds, val_ds, fit, make=make, print_fn=print_fn))
    callbacks = _callbacks(recipe, model, path, train_ds, val_ds, probe=_probe(recipe, bundle, strategy), extra=extra)
    hist = model.fit(train_ds, epochs=recipe["train"]["epochs"], callbacks=callbacks, **fit)
    return _history(path, hist.history)


def _trim_history(csv_path: Path, keep_below: int) -> None:
    if not csv_path.is_file():
        return
    lines = csv_path.read_text().splitlines()
    if not lines:
        return
    kept = [lines[0]] + [line for line in lines[1:] if line.split(",", 1)[0].isdigit() and int(line.split(",", 1)[0]) < keep_below]
    if len(kept) != len(lines):
        from kerakit.saving import write_text

        write_text(csv_path, "\n".join(kept) + "\n")


def _history(path: Path, fallback: dict) -> dict:
    """The whole run's history: history.csv (which spans resumes) when present."""
    csv = path / "history.csv"
    if csv.is_file():
        import csv as csvmod

        with open(csv, newline="") as f:
            rows = list(csvmod.DictReader(f))
        if rows:
            out: dict[str, list] = {}
            for row in rows:
                for k, v in row.items():
                    try:
                        out.setdefault(k, []).append(float(v))
                    except (TypeError, ValueError):
                        out.setdefault(k, []).append(v)
            return out
    _write_history_csv(csv, fallback)
    return {k: [float(v) for v in vs] for k, vs in fallback.items()}


def _write_history_csv(path: Path, history: dict) -> None:
    from kerakit.saving import write_text

    keys = list(history)
    n = max((len(v) for v in history.values()), default=0)
    lines = [",".join(["epoch", *keys])]
    for i in range(n):
        lines.append(",".join([str(i)] + [repr(float(history[k][i])) for k in keys]))
    write_text(path, "\n".join(lines) + "\n")


def _finish(recipe: Recipe, model, bundle, path: Path, history: dict, *, strategy=None, print_fn=print) -> dict:
    from kerakit.saving import save_model

    _, _, test_ds = _pipelines(recipe, bundle, strategy=strategy)
    metrics: dict = {}
    if test_ds is not None:
        metrics = {k: float(v) for k, v in model.evaluate(test_ds, verbose=0, return_dict=True).items()}
        print_fn("test: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    _write_json(path / "metrics.json", metrics)
    if recipe["augment"] and recipe["augment"].get("placement") == "model":
        from kerakit.augment import strip_augmentation

        model = strip_augmentation(model)  # the exported model carries no augmentation
    saved = save_model(model, path, recipe["output"]["formats"])
    print_fn("saved: " + ", ".join(str(p) for p in saved.values()))
    _pictures(model, bundle, path, history, metrics, recipe, print_fn=print_fn)
    return metrics


def _pictures(model, bundle, path: Path, history: dict, metrics: dict, recipe: Recipe, *, print_fn=print) -> None:
    """history.png, confusion.png, errors.png and report.md in the run folder."""
    from kerakit.report import write_run_pictures

    kw: dict = {}
    classifier = recipe["compile"]["preset"] in ("multiclass", "multiclass_onehot", "binary")
    if classifier and bundle.test is not None and len(model.outputs) == 1:
        x, y = _arrays(bundle.test)
        kw = {"x": x if x.ndim in (3, 4) else None, "y_true": y, "probs": model.predict(x, verbose=0)}
    write_run_pictures(path, history=history, class_names=bundle.class_names, metrics=metrics,
                       title=recipe.name, **kw)  # fmt: skip


# --------------------------------------------------------------------------- evaluate / predict


def _open(run_or_model: str | os.PathLike, trusted: bool):
    """(model, recipe or None, run folder or None) from a run folder or a model file."""
    from kerakit.saving import load_model

    path = Path(run_or_model)
    if not path.exists():
        raise KerakitError(f"{path}: no such run folder or model file")
    model = load_model(path, trusted=trusted)
    recipe = None
    folder = path if path.is_dir() and (path / RUN_FILE).is_file() else None
    if folder is not None and (folder / "recipe.resolved.yaml").is_file():
        recipe = load_recipe(folder / "recipe.resolved.yaml")
    return model, recipe, folder


def evaluate(run_or_model: str | os.PathLike, *, data: str | Mapping | None = None, trusted: bool = False) -> dict:
    """Evaluate a run folder (or a model file) on test data; writes evaluate.json in a run folder.

    Args:
        run_or_model: a run folder, or a `.keras`/`.h5`/SavedModel path.
        data: a data source (``"npz:test.npz"``) or a `data:` section; default: the run's recipe's.
        trusted: allow code in the model file (see docs/security.md).

    Returns:
        {metric: value}.
    """
    from kerakit.data import load_data
    from kerakit.data_spec import resolve_data

    model, recipe, folder = _open(run_or_model, trusted)
    if data is None and recipe is None:
        raise DataError("a bare model file has no recipe to take data from: pass --data SOURCE (e.g. npz:test.npz)")
    section = dict(recipe["data"]) if recipe is not None else {}
    if isinstance(data, str):
        section = {**{k: v for k, v in section.items() if k in ("batch_size", "image_size", "rescale", "normalize")},
                   "source": data}  # fmt: skip
    elif isinstance(data, Mapping):
        section = dict(data)
    where = Where("--data" if data is not None else str(folder / "recipe.resolved.yaml"), {}, ("data",))
    section = resolve_data(section, where)
    base_dir = os.getcwd() if data is not None else (recipe.base_dir if recipe else os.getcwd())
    bundle = load_data(section, base_dir=base_dir, seed=recipe["seed"] if recipe else 42, where=where)
    split = bundle.test if bundle.test is not None else bundle.val
    if split is None:
        raise DataError("the data has neither a test nor a validation split to evaluate on")
    from kerakit.data import make_pipeline

    preset = recipe["compile"]["preset"] if recipe else "multiclass"
    ds = make_pipeline(split, batch_size=section["batch_size"], training=False, label_mode=_label_mode(preset),
                       num_classes=bundle.num_classes, cache=False)  # fmt: skip
    if not getattr(model, "compiled", True) or getattr(model, "optimizer", None) is None:
        raise DataError("this model was saved without its training configuration; evaluate needs a compiled .keras/.h5 model")
    metrics = {k: float(v) for k, v in model.evaluate(ds, verbose=0, return_dict=True).items()}
    if folder is not None:
        _write_json(folder / "evaluate.json", metrics)
    return metrics


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def _read_inputs(files: list[str], model, recipe: Recipe | None) -> tuple[Any, list[str]]:
    """Raw inputs from image files, .npy/.npz or .csv, and a label per row."""
    import keras

    paths = [Path(f) for f in files]
    for p in paths:
        if not p.is_file():
            raise DataError(f"{p}: no such file")
    shape = model.input_shape if not isinstance(model.input_shape, list) else model.input_shape[0]
    if all(p.suffix.lower() in IMAGE_SUFFIXES for p in paths):
        if len(shape) != 4:
            raise DataError(f"this model takes inputs of shape {tuple(shape[1:])}, not images")
        h, w, c = shape[1:]
        data = (recipe or {}).get("data", {}) if recipe is not None else {}
        size = data.get("image_size") or [h, w]
        arrays = []
        for p in paths:
            try:
                img = keras.utils.load_img(p, color_mode="grayscale" if c == 1 else "rgb", target_size=tuple(size))
            except Exception as exc:
                raise DataError(f"{p}: cannot read this image ({exc})") from None
            arrays.append(keras.utils.img_to_array(img))
        return np.stack(arrays), [str(p) for p in paths]
    if len(paths) != 1:
        raise DataError("give either image files, or one .npy/.npz/.csv file")
    p = paths[0]
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            x = np.load(p, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                key = next((k for k in ("x", "x_test", "x_train") if k in z.files), z.files[0] if z.files else None)
                if key is None:
                    raise DataError(f"{p}: the .npz holds no arrays")
                x = z[key]
        elif suffix == ".csv":
            x = _read_csv_features(p, recipe)
        else:
            raise DataError(f"{p}: cannot predict on a {suffix or 'suffix-less'} file; give images, .npy, .npz or .csv")
    except (ValueError, OSError) as exc:
        raise DataError(f"{p}: cannot read it ({exc})") from None
    want = tuple(shape[1:])
    if recipe is None or not recipe["data"].get("image_size"):
        if tuple(x.shape[1:]) != want and tuple(x.shape) == want:
            x = x[None]
        if len(x.shape[1:]) != len(want) or any(a is not None and a != b for a, b in zip(want, x.shape[1:])):
            raise DataError(f"{p}: inputs of shape {tuple(x.shape[1:])} do not fit the model, which takes {want}")
    return x, [f"{p.name}[{i}]" for i in range(len(x))]


def _read_csv_features(path: Path, recipe: Recipe | None) -> np.ndarray:
    import csv

    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise DataError(f"{path}: the file is empty")
    header, body = rows[0], rows[1:]
    target = recipe["data"].get("target") if recipe is not None else None
    keep = [i for i, h in enumerate(header) if h != target]
    try:
        return np.array([[float(r[i]) for i in keep] for r in body], dtype="float32")
    except (ValueError, IndexError) as exc:
        raise DataError(f"{path}: every feature must be a number ({exc})") from None


def predict(run_or_model: str | os.PathLike, x: Any, *, trusted: bool = False) -> np.ndarray:
    """Predictions of a run folder (or model file) on raw inputs, preprocessed as in training."""
    model, recipe, folder = _open(run_or_model, trusted)
    return _predict(model, recipe, folder, x)


def _predict(model, recipe, folder, x):
    if recipe is not None:
        from kerakit.data import prepare_inputs

        stats = _read_json(folder / "normalization.json") or None if folder else None
        x = prepare_inputs(x, recipe["data"], stats, batched=True)
    return np.asarray(model.predict(x, verbose=0))


def predict_files(run_or_model, inputs: list[str], *, output: str | None = None, top: int = 3,
                  trusted: bool = False, print_fn=print) -> list[dict]:  # fmt: skip
    """`kerakit predict`: top classes (or values) per input, printed and optionally written."""
    model, recipe, folder = _open(run_or_model, trusted)
    x, labels = _read_inputs(inputs, model, recipe)
    probs = _predict(model, recipe, folder, x)
    names = None
    if folder is not None and (folder / "classes.json").is_file():
        names = _read_json(folder / "classes.json")
    preset = recipe["compile"]["preset"] if recipe is not None else None
    rows = []
    for label, p in zip(labels, probs):
        p = np.asarray(p).reshape(-1)
        row: dict = {"input": label}
        if preset == "regression" or (preset is None and p.size == 1 and names is None):
            row["prediction"] = [float(v) for v in p]
            print_fn(f"{label}: " + ", ".join(f"{v:.4f}" for v in p))
        else:
            if p.size == 1:  # one sigmoid unit: P(class 1)
                p = np.array([1 - p[0], p[0]])
            order = np.argsort(-p)[:top]
            cls = [names[i] if names and i < len(names) else str(i) for i in order]
            row["top"] = [{"class": c, "index": int(i), "probability": float(p[i])} for c, i in zip(cls, order)]
            print_fn(f"{label}: " + ", ".join(f"{c} ({p[i]:.3f})" for c, i in zip(cls, order)))
        rows.append(row)
    if output:
        _write_predictions(Path(output), rows)
    return rows


def _write_predictions(path: Path, rows: list[dict]) -> None:
    from kerakit.saving import write_text

    if path.suffix.lower() == ".json":
        write_text(path, json.dumps(rows, indent=2) + "\n")
        return
    if path.suffix.lower() != ".csv":
        raise DataError(f"--output {path}: write .csv or .json")
    lines = []
    if rows and "top" in rows[0]:
        lines.append("input,rank,class,index,probability")
        for r in rows:
            lines += [f"{r['input']},{k + 1},{t['class']},{t['index']},{t['probability']:.6f}" for k, t in enumerate(r["top"])]
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
    from kerakit.data import load_data
    from kerakit.plots import save_figure

    bundle = load_data(recipe["data"], base_dir=recipe.base_dir, seed=recipe["seed"], where=recipe.where.at("data"))
    x, _ = _arrays(bundle.train.take(n))
    aug = augmentation(recipe["augment"], seed=recipe["seed"], where=recipe.where.at("augment"))
    return save_figure(aug.preview(x, n=n, seed=recipe["seed"]), out)
