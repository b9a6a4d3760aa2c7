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
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kerakit.errors import DataError, TrainingDiverged
from kerakit.recipe import Recipe, load_recipe
from kerakit.runfolder import (
    RUN_FILE,
    environment,
    read_history,
    read_json,
    run_folder,
    trim_history,
    write_run_json,
)

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

    # The pictures (kerakit.report.plots); each returns a matplotlib Figure.
    def plot_history(self):
        from kerakit.report.plots import plot_history

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
        from kerakit.report.plots import plot_confusion

        _, y, probs = self._test_predictions()
        return plot_confusion(y, probs, class_names=self.class_names, normalize=normalize)

    def show_errors(self, n: int = 16):
        from kerakit.report.plots import show_errors

        x, y, probs = self._test_predictions()
        if isinstance(x, Mapping):
            raise DataError(
                f"show_errors shows the inputs as images; this model takes several ({', '.join(x)}). "
                "Use plot_confusion, or kerakit.report.plots.show_errors on one input"
            )
        return show_errors(x, y, probs, class_names=self.class_names, n=n)

    def predict(self, x, **kwargs):
        return self.model.predict(x, verbose=0, **kwargs)


def _arrays(ds) -> tuple[Any, Any]:
    """An unbatched `(x, y)` dataset as NumPy; named inputs or outputs stay dicts of arrays."""
    import tensorflow as tf

    xs, ys = [], []
    for x, y in ds.batch(1024):
        xs.append(tf.nest.map_structure(lambda t: t.numpy(), x))
        ys.append(tf.nest.map_structure(lambda t: t.numpy(), y))
    return tuple(
        tf.nest.map_structure(lambda *parts: np.concatenate(parts), *part) for part in (xs, ys)
    )


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
        return (
            "mixed_bfloat16",
            "auto: a transfer backbone on a CPU with bf16 instructions, measured 3-7x faster",
        )
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
        bundle = load_data(
            recipe["data"],
            base_dir=recipe.base_dir,
            seed=recipe["seed"],
            where=recipe.where.at("data"),
        )
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

        print_fn(
            format_stage_report(stage_report(model, recipe["model"]["transfer"].get("fine_tune")))
        )
    print_fn(f"recipe OK: {recipe.file or recipe.name}")
    return model


def _needs_data_for_build(recipe: Recipe) -> bool:
    model = recipe["model"]
    if "sequential" in model:
        return not model.get("input_shape")
    if "transfer" in model:
        return not (model["transfer"].get("head") or {}).get("classes")
    return False


# --------------------------------------------------------------------------- train


def _label_mode(preset: str) -> str:
    """make_pipeline's label mode: "onehot" converts class ids; "int" passes labels as given
    (class ids, 0/1, multi-hot rows or real-valued targets)."""
    from kerakit.recipe.compile import PRESETS

    return "onehot" if PRESETS.get(preset, {}).get("label_mode") == "onehot" else "int"


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
    # With x/y, load_data switches the source to "arrays" (keeping the shared keys), and
    # the resolved recipe records that (bundle.spec) instead of the recipe's own source.
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
        if len(want) - 1 != len(got) or any(
            w is not None and w != g for w, g in zip(want[1:], got)
        ):
            raise where.error(
                f"the model takes inputs of shape {tuple(want[1:])} but the data gives {tuple(got)}; "
                "fix model.input_shape (or leave it out to take it from the data), or data.image_size"
            )
    preset = recipe["compile"]["preset"]
    if (
        bundle.num_classes
        and len(model.outputs) == 1
        and preset in ("multiclass", "multiclass_onehot", "binary")
    ):
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


def _train_in(
    resolved, model, bundle, path, resuming, strategy, policy, command, verbose, print_fn, extra
) -> Run:
    from kerakit.recipe.reader import dump_yaml
    from kerakit.runfolder import kept_recipe
    from kerakit.saving import write_text

    info = read_json(path / RUN_FILE) if resuming else {}
    info.update(status="running", fingerprint=resolved.fingerprint(), name=resolved.name,
                started=info.get("started") or time.strftime("%Y-%m-%dT%H:%M:%S"))  # fmt: skip
    write_run_json(path / RUN_FILE, info)
    write_text(path / "recipe.resolved.yaml", dump_yaml(kept_recipe(resolved)))
    write_run_json(path / "env.json", environment(resolved, command, policy, strategy))
    if bundle.class_names:
        write_run_json(path / "classes.json", list(bundle.class_names))
    if bundle.stats:
        write_run_json(path / "normalization.json", bundle.stats)

    try:
        history = _fit(
            resolved, model, bundle, path, strategy, verbose=verbose, print_fn=print_fn, extra=extra
        )
    except BaseException as exc:
        info["status"] = "diverged" if isinstance(exc, TrainingDiverged) else "interrupted"
        write_run_json(path / RUN_FILE, info)
        raise
    metrics = _finish(resolved, model, bundle, path, history, strategy=strategy, print_fn=print_fn)
    info.update(status="complete", finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
    write_run_json(path / RUN_FILE, info)
    return Run(path, resolved, model, history, metrics, bundle.class_names, data=bundle)


def _pipelines(recipe: Recipe, bundle, *, augmentation=None, strategy=None):
    from kerakit.data import make_pipeline
    from kerakit.distribute import global_batch_size, shard_options

    data = recipe["data"]
    cache = data["cache"] if isinstance(data["cache"], bool) else bundle.in_memory
    kw = dict(batch_size=global_batch_size(data["batch_size"], strategy), seed=recipe["seed"],
              label_mode=_label_mode(recipe["compile"]["preset"]), num_classes=bundle.num_classes, cache=cache,
              shuffle_buffer=data["shuffle_buffer"], autotune=data.get("autotune"))  # fmt: skip

    def pipe(ds, training, **extra):
        return (
            None
            if ds is None
            else shard_options(make_pipeline(ds, training=training, **kw, **extra), strategy)
        )

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

    names = _monitor_names(
        model, probe if probe is not None else (val_ds if val_ds is not None else train_ds)
    )
    callbacks = make_callbacks(spec if spec is not None else recipe["train"]["callbacks"], run_dir=path,
                               monitor_names=names, has_validation=val_ds is not None,
                               where=recipe.where.at("train", "callbacks"), recipe=_resume_parts(recipe))  # fmt: skip
    from kerakit.checkpoint import DivergenceWatch, SafeBackupAndRestore, StopOnSignal

    backup = next((c for c in callbacks if isinstance(c, SafeBackupAndRestore)), None)
    resume_at = backup.newest_epoch() if backup is not None else None
    # An epoch logged after its backup was written (a kill in between) is run again:
    # drop its row now, before CSVLogger reopens the file to append.
    trim_history(path / "history.csv", start_epoch if resume_at is None else resume_at)
    hint = f"Resume with the same `kerakit train` command, or --resume {path}."
    # `first` run before CSVLogger sees the logs; the signal stop runs after the backup.
    return [*first, DivergenceWatch(path), *callbacks, *extra, StopOnSignal(backup, hint)]


def _fit(
    recipe: Recipe, model, bundle, path: Path, strategy, *, verbose=None, print_fn=print, extra=()
) -> dict:
    train_ds, val_ds, _ = _pipelines(
        recipe, bundle, augmentation=_augmentation(recipe), strategy=strategy
    )
    _warm_up_pictures()
    if verbose is None:
        verbose = recipe["train"]["verbose"]
    fit = dict(
        validation_data=val_ds,
        verbose=verbose,
        class_weight=_class_weight(recipe, bundle),
        shuffle=False,
    )
    if "transfer" in recipe["model"]:
        from kerakit.transfer_run import fit_transfer

        make = functools.partial(_callbacks, extra=extra)
        return read_history(
            path,
            fit_transfer(recipe, model, path, train_ds, val_ds, fit, make=make, print_fn=print_fn),
        )
    callbacks = _callbacks(
        recipe, model, path, train_ds, val_ds, probe=_probe(recipe, bundle, strategy), extra=extra
    )
    hist = model.fit(train_ds, epochs=recipe["train"]["epochs"], callbacks=callbacks, **fit)
    return read_history(path, hist.history)


def _finish(
    recipe: Recipe, model, bundle, path: Path, history: dict, *, strategy=None, print_fn=print
) -> dict:
    from kerakit.saving import save_model

    _, _, test_ds = _pipelines(recipe, bundle, strategy=strategy)
    metrics: dict = {}
    if test_ds is not None:
        metrics = {
            k: float(v) for k, v in model.evaluate(test_ds, verbose=0, return_dict=True).items()
        }
        print_fn("test: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    write_run_json(path / "metrics.json", metrics)
    if recipe["augment"] and recipe["augment"].get("placement") == "model":
        from kerakit.augment import strip_augmentation

        model = strip_augmentation(model)  # the exported model carries no augmentation
    saved = save_model(model, path, recipe["output"]["formats"])
    print_fn("saved: " + ", ".join(str(p) for p in saved.values()))
    _pictures(model, bundle, path, history, metrics, recipe, print_fn=print_fn)
    return metrics


def _pictures(
    model, bundle, path: Path, history: dict, metrics: dict, recipe: Recipe, *, print_fn=print
) -> None:
    """history.png, confusion.png, errors.png and report.md in the run folder."""
    for thread in _WARM_UP:  # never import or draw alongside the warm-up thread
        thread.join()
    from kerakit.report import write_run_pictures

    kw: dict = {}
    classifier = recipe["compile"]["preset"] in ("multiclass", "multiclass_onehot", "binary")
    if classifier and bundle.test is not None and len(model.outputs) == 1:
        x, y = _arrays(bundle.test)
        kw = {
            "x": x if isinstance(x, np.ndarray) and x.ndim in (3, 4) else None,
            "y_true": y,
            "probs": _predict_eagerly(model, x),
        }
    write_run_pictures(path, history=history, class_names=bundle.class_names, metrics=metrics,
                       title=recipe.name, **kw)  # fmt: skip


def _predict_eagerly(model, x: np.ndarray, chunk: int = 256) -> np.ndarray:
    """The model's outputs on `x`, by calling it on chunks: for one pass over a test
    split this is cheaper than `model.predict`, which first traces a predict function
    (about 0.5 s for the overview CNN on this 2-core CPU, ten times the prediction)."""
    import keras
    import tensorflow as tf

    n = len(tf.nest.flatten(x)[0])  # named inputs: a dict of arrays
    parts = []
    for i in range(0, n, chunk):
        part = tf.nest.map_structure(lambda a, i=i: a[i : i + chunk], x)
        parts.append(np.asarray(keras.ops.convert_to_numpy(model(part, training=False)), "float32"))
    return np.concatenate(parts) if parts else np.zeros((0,))


_WARM_UP: list = []  # the warm-up thread, joined before the pictures are drawn


def _warm_up_pictures() -> None:
    """Import matplotlib and draw a tiny figure in a background thread while the model trains.

    `fit` runs in TensorFlow with the GIL released, so the import and the first
    draw's font loading (about 0.5 s of Python) overlap it instead of adding to
    the run. `_pictures` joins the thread first: matplotlib's font cache is
    shared, so the two never draw at once.
    """
    import threading

    if _WARM_UP:
        return

    def warm():
        try:
            import io

            from kerakit.report.plots import _figure

            fig = _figure(1, 1)
            fig.add_subplot().set_title("warm-up 0.5")
            fig.savefig(io.BytesIO(), format="png", dpi=20)
        except Exception:  # _pictures reports a real problem when it draws itself
            pass

    thread = threading.Thread(target=warm, name="kerakit-warm-up-pictures", daemon=True)
    _WARM_UP.append(thread)
    thread.start()
