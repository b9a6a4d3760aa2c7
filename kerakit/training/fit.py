"""Fitting a run: its pipelines, callbacks and `fit`, then the test metrics, the saved
model and the pictures (`finish`)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from kerakit.augment import strip_augmentation
from kerakit.data import make_pipeline, to_numpy
from kerakit.data.features import raw_input_model
from kerakit.recipe import Recipe
from kerakit.recipe.compile import pipeline_label_mode, takes_logits
from kerakit.recipe.fingerprint import resume_parts
from kerakit.report import write_run_pictures
from kerakit.report.history import HISTORY_FILE, trim_history
from kerakit.report.kinds import example_spec, input_kind, pictures_for, task_kind
from kerakit.saving import save_model
from kerakit.training.backups import SafeBackupAndRestore
from kerakit.training.build import recipe_augmentation
from kerakit.training.callbacks import ClampedProgbar, make_callbacks
from kerakit.training.distribute import global_batch_size, shard_options
from kerakit.training.guards import DivergenceWatch, KeepCompileConfig, StopOnSignal
from kerakit.training.interpret import top_loss_gradcam
from kerakit.training.runfolder import (
    BACKUP_DIR,
    METRICS_FILE,
    STAGE2_BACKUP_DIR,
    read_history,
    write_run_json,
)
from kerakit.training.transfer import fit_transfer


def pipelines(recipe: Recipe, bundle, *, augmentation=None, strategy=None):
    data = recipe["data"]
    cache = data["cache"] if isinstance(data["cache"], bool) else bundle.in_memory
    kw = dict(batch_size=global_batch_size(data["batch_size"], strategy), seed=recipe["seed"],
              label_mode=pipeline_label_mode(recipe["compile"]["preset"]), num_classes=bundle.num_classes, cache=cache,
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


def _probe(recipe: Recipe, bundle, strategy):
    """One uncached batch to find the logged names with (reading part of a cache() warns)."""
    split = bundle.val if bundle.val is not None else bundle.train
    return make_pipeline(split.take(recipe["data"]["batch_size"]), training=False, cache=False,
                         batch_size=global_batch_size(recipe["data"]["batch_size"], strategy),
                         label_mode=pipeline_label_mode(recipe["compile"]["preset"]), num_classes=bundle.num_classes)  # fmt: skip


def check_callbacks(recipe: Recipe, model, bundle) -> None:
    """Build the recipe's callbacks as `fit` would, into a throwaway folder (for `check`)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kerakit-check-") as tmp:
        names = _monitor_names(model, _probe(recipe, bundle, None), recipe.where.at("model"))
        make_callbacks(recipe["train"]["callbacks"], run_dir=tmp, monitor_names=names,
                       has_validation=bundle.val is not None,
                       where=recipe.where.at("train", "callbacks"), recipe=resume_parts(recipe))  # fmt: skip


def _monitor_names(model, ds, where) -> set[str]:
    """The loss and metric names Keras will log (without "val_"), found by evaluating one batch,
    so that monitors that cannot exist are caught before training (and a model that cannot
    run on its data is refused here, not mid-fit)."""
    try:
        return set(model.evaluate(ds.take(1), verbose=0, return_dict=True))
    except Exception as exc:  # Keras and TF errors alike: the recipe's model and data disagree
        first = " ".join(str(exc).strip().splitlines()[0].split())[:300] if str(exc).strip() else ""
        raise where.error(
            f"the model cannot run on one batch of the data ({type(exc).__name__}: {first}); "
            "check the output layer and compile.loss against the data's labels"
        ) from None


def _class_weight(recipe: Recipe, bundle) -> dict | None:
    cw = recipe["train"].get("class_weight")
    if cw is None:
        return None
    if cw != "balanced":
        return {int(k): float(v) for k, v in cw.items()}
    _, y = to_numpy(bundle.train)
    counts = np.bincount(y.astype(int).reshape(-1))
    return {i: len(y) / (len(counts) * c) for i, c in enumerate(counts) if c}


def _callbacks(recipe: Recipe, model, path: Path, train_ds, val_ds, *, first=(), spec: list | None = None,
               start_epoch: int = 0, probe=None, extra=()) -> list:  # fmt: skip
    names = _monitor_names(
        model,
        probe if probe is not None else (val_ds if val_ds is not None else train_ds),
        recipe.where.at("model"),
    )
    callbacks = make_callbacks(spec if spec is not None else recipe["train"]["callbacks"], run_dir=path,
                               monitor_names=names, has_validation=val_ds is not None,
                               where=recipe.where.at("train", "callbacks"), recipe=resume_parts(recipe))  # fmt: skip
    backup = next((c for c in callbacks if isinstance(c, SafeBackupAndRestore)), None)
    resume_at = backup.newest_epoch() if backup is not None else None
    # An epoch logged after its backup was written (a kill in between) is run again:
    # drop its row now, before CSVLogger reopens the file to append.
    trim_history(path / HISTORY_FILE, start_epoch if resume_at is None else resume_at)
    hint = f"Resume with the same `kerakit train` command, or --resume {path}."
    # `first` run before CSVLogger sees the logs; the signal stop runs after the backup.
    return [*first, ClampedProgbar(), DivergenceWatch(path), *callbacks, *extra,
            KeepCompileConfig(), StopOnSignal(backup, hint)]  # fmt: skip


def _with_class_weight(bundle, class_weight: dict | None):
    """Keras's fit refuses class_weight beside sample weights; kerakit multiplies them: each
    training example's weight times its class's weight (docs/data.md, sample weights)."""
    if class_weight is None or not bundle.weighted:
        return bundle, class_weight
    import dataclasses

    import tensorflow as tf

    size = max([*class_weight, (bundle.num_classes or 1) - 1]) + 1
    table = tf.constant([class_weight.get(i, 1.0) for i in range(size)], tf.float32)

    def fold(x, y, w):
        per_class = tf.gather(table, tf.cast(y, tf.int32))
        return x, y, tf.reshape(tf.cast(w, tf.float32) * per_class, tf.shape(w))

    return dataclasses.replace(bundle, train=bundle.train.map(fold)), None


def fit(
    recipe: Recipe, model, bundle, path: Path, strategy, *, verbose=None, print_fn=print, extra=()
) -> dict:
    bundle, class_weight = _with_class_weight(bundle, _class_weight(recipe, bundle))
    train_ds, val_ds, _ = pipelines(
        recipe, bundle, augmentation=recipe_augmentation(recipe), strategy=strategy
    )
    _warm_up_pictures()
    if verbose is None:
        verbose = recipe["train"]["verbose"]
    fit = dict(
        validation_data=val_ds,
        verbose=verbose,
        class_weight=class_weight,
        shuffle=False,
    )
    if "transfer" in recipe["model"]:
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


def finish(
    recipe: Recipe, model, bundle, path: Path, history: dict, *, strategy=None, print_fn=print
) -> dict:
    _, _, test_ds = pipelines(recipe, bundle, strategy=strategy)
    metrics: dict = {}
    if test_ds is not None:
        metrics = {
            k: float(v) for k, v in model.evaluate(test_ds, verbose=0, return_dict=True).items()
        }
        print_fn("test: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
        bad = [k for k, v in metrics.items() if not np.isfinite(v)]
        if bad:
            print_fn(
                f"{METRICS_FILE}: {', '.join(bad)} not finite, stored as null (JSON has no NaN)"
            )
    write_run_json(path / METRICS_FILE, metrics)
    if recipe["augment"] and recipe["augment"].get("placement") == "model":
        model = strip_augmentation(model)  # the exported model carries no augmentation
    # a table's saved model takes raw columns, a series' raw windows, a text model raw strings
    kept = model if bundle.raw_layer is None else raw_input_model(bundle.raw_layer, model)
    saved = save_model(kept, path, recipe["output"]["formats"])
    print_fn("saved: " + ", ".join(str(p) for p in saved.values()))
    for folder in (path / BACKUP_DIR, path / STAGE2_BACKUP_DIR):
        # a finished run needs its newest backup only (to continue it with more epochs)
        SafeBackupAndRestore(folder).prune(keep=1)
    _pictures(model, bundle, path, history, metrics, recipe, print_fn=print_fn)
    return metrics


def _pictures(
    model, bundle, path: Path, history: dict, metrics: dict, recipe: Recipe, *, print_fn=print
) -> None:
    """history.png, the test-set pictures that fit the task and the inputs (the table
    `report.kinds.PICTURES`) and report.md in the run folder."""
    for thread in _WARM_UP:  # never import or draw alongside the warm-up thread
        thread.join()

    x = y = shown = None
    if bundle.test is not None:
        x, y = to_numpy(bundle.test)
        # a text run shows its raw strings (the model reads them vectorized)
        shown = to_numpy(bundle.raw_test)[0] if bundle.raw_test is not None else x
        shape, dtype = example_spec(shown)
    else:  # no test split: report.md still says which pictures would have been drawn
        shape, dtype = {t.name: tuple(t.shape[1:]) for t in model.inputs}, None
        if len(model.inputs) == 1:
            shape, dtype = tuple(model.inputs[0].shape[1:]), model.inputs[0].dtype
    out = tuple(model.outputs[0].shape[1:])
    task = task_kind(recipe["compile"]["preset"], shape, out, outputs=len(model.outputs))
    inputs = input_kind(shape, dtype, flattened=bool(recipe["data"].get("flatten")),
                        encoded=bundle.feature_space is not None)  # fmt: skip
    kw: dict = {"task": task, "inputs": inputs}
    if x is not None and pictures_for(task, inputs):
        kw.update(x=shown, y_true=y, probs=_predict_eagerly(model, x))
        if task == "classification" and inputs == "image":  # Grad-CAM of the top losses
            kw["gradcam"] = top_loss_gradcam(model, x, y, kw["probs"],
                                             from_logits=takes_logits(recipe["compile"]))  # fmt: skip
    write_run_pictures(path, history=history, class_names=bundle.class_names, metrics=metrics,
                       title=recipe.name, from_logits=takes_logits(recipe["compile"]), interpret=True,
                       **kw)  # fmt: skip


def _predict_eagerly(model, x: np.ndarray, chunk: int = 256) -> np.ndarray:
    """The model's outputs on `x`, by calling it on chunks: cheaper than `model.predict` (which
    traces a predict function first) for one pass over a test split (docs/performance.md)."""
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
    """Import matplotlib and draw a tiny figure in a background thread while the model trains
    (overlapping `fit`, docs/performance.md); `_pictures` joins it before drawing."""
    import threading

    if _WARM_UP:
        return

    def warm():
        try:
            import io

            from kerakit.report.figures import figure

            fig = figure(1, 1)
            fig.add_subplot().set_title("warm-up 0.5")
            fig.savefig(io.BytesIO(), format="png", dpi=20)
        except Exception:  # _pictures reports a real problem when it draws itself
            pass

    thread = threading.Thread(target=warm, name="kerakit-warm-up-pictures", daemon=True)
    _WARM_UP.append(thread)
    thread.start()
