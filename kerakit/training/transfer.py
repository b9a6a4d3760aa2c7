"""Two-stage transfer training inside one run (used by `kerakit.run.train`).

Stage 1 trains the head with the backbone frozen, on cached backbone features
when that is valid (no augmentation); stage 2 unfreezes the top of the
backbone, recompiles with the fine-tuning learning rate and trains on. Both
stages log to one history.csv with a `stage` column. A killed run resumes in
the right stage:

- stage 1 backs up to `backup/` (the head model's weights when features are cached);
- the end of stage 1 is recorded in `stage1.json` with the whole model's weights
  in `stage1.weights.h5` (written atomically);
- stage 2 backs up to `backup-stage2/` (its trainable set, so its optimizer
  state, differs from stage 1's).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import keras

from kerakit._files import atomic_path, write_json
from kerakit.models import apply_compile, cache_features, set_stage, split_for_feature_cache
from kerakit.models.transfer import stage_args
from kerakit.recipe.transfer import decide_feature_cache
from kerakit.report.history import HISTORY_FILE, epochs_in_stage
from kerakit.training.runfolder import (
    FEATURES_DIR,
    STAGE1_FILE,
    STAGE1_WEIGHTS,
    STAGE2_BACKUP_DIR,
)


class StageColumn(keras.callbacks.Callback):
    """Adds a `stage` column to the epoch logs (so to history.csv)."""

    def __init__(self, stage: int):
        super().__init__()
        self.stage = stage

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["stage"] = self.stage


def _bind_checkpoints(callbacks: list, whole: keras.Model) -> None:
    # When the head trains on cached features, `fit` hands callbacks the head
    # model; ModelCheckpoint must still save the whole model (raw images in).
    for cb in callbacks:
        if isinstance(cb, keras.callbacks.ModelCheckpoint):
            cb.set_model = lambda _model, cb=cb: keras.callbacks.Callback.set_model(cb, whole)


def _with_learning_rate(optimizer, lr: float):
    if isinstance(optimizer, str):
        return {optimizer: {"learning_rate": lr}}
    if isinstance(optimizer, dict):
        ((name, args),) = optimizer.items()
        return {name: {**(args or {}), "learning_rate": lr}}
    return {type(optimizer).__name__: {**optimizer.get_config(), "learning_rate": lr}}


def _stage2_callbacks_spec(spec: list) -> list:
    out = copy.deepcopy(spec)
    for entry in out:
        if "BackupAndRestore" in entry:
            entry["BackupAndRestore"] = {
                **(entry["BackupAndRestore"] or {}),
                "backup_dir": STAGE2_BACKUP_DIR,
            }
    return out


def fit_transfer(recipe, model: keras.Model, path: Path, train_ds, val_ds, fit: dict, *, make: Callable,
                 print_fn=print) -> dict:  # fmt: skip
    """Run stage 1 (and stage 2 when `fine_tune` is set); returns the merged Keras history."""
    spec = recipe["model"]["transfer"]
    where = recipe.where.at("model", "transfer")
    fine = spec.get("fine_tune")
    epochs1 = recipe["train"]["epochs"]
    marker = path / STAGE1_FILE
    history: dict = {}

    if not marker.is_file():
        set_stage(model, 1, where=where)
        apply_compile(model, recipe["compile"], where=recipe.where.at("compile"))
        if decide_feature_cache(spec, recipe["augment"], where):
            print_fn(
                "stage 1: training the head on cached backbone features (transfer.cache_features)"
            )
            features, head = split_for_feature_cache(model)
            tr = cache_features(features, train_ds, directory=str(path / FEATURES_DIR / "train"),
                                shuffle=True, seed=recipe["seed"])  # fmt: skip
            va = (
                cache_features(features, val_ds, directory=str(path / FEATURES_DIR / "val"))
                if val_ds is not None
                else None
            )
            apply_compile(head, recipe["compile"], where=recipe.where.at("compile"))
            callbacks = make(recipe, head, path, tr, va, first=[StageColumn(1)])
            _bind_checkpoints(callbacks, model)
            hist = head.fit(
                tr, epochs=epochs1, callbacks=callbacks, **{**fit, "validation_data": va}
            )
        else:
            print_fn("stage 1: training the head, backbone frozen")
            callbacks = make(recipe, model, path, train_ds, val_ds, first=[StageColumn(1)])
            hist = model.fit(train_ds, epochs=epochs1, callbacks=callbacks, **fit)
        history = dict(hist.history)
        with atomic_path(path / STAGE1_WEIGHTS) as tmp:
            model.save_weights(tmp)
        # EarlyStopping may end stage 1 early; stage 2's epochs are numbered after it.
        write_json(marker, {"epochs": epochs_in_stage(path / HISTORY_FILE, 1) or epochs1})
    if not fine:
        return history

    done1 = json.loads(marker.read_text())["epochs"]
    backup2 = path / STAGE2_BACKUP_DIR
    if not (backup2.is_dir() and any(backup2.glob("ckpt-*.json"))):
        model.load_weights(path / STAGE1_WEIGHTS)  # a resumed run rebuilt the model
    set_stage(model, 2, **stage_args(fine), where=where)
    section = dict(recipe["compile"])
    section["optimizer"] = _with_learning_rate(
        section.get("optimizer", "adam"), fine["learning_rate"]
    )
    apply_compile(model, section, where=recipe.where.at("compile"))
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    print_fn(
        f"stage 2: fine-tuning {trainable:,} parameters at learning rate {fine['learning_rate']}"
    )
    callbacks = make(recipe, model, path, train_ds, val_ds, first=[StageColumn(2)],
                     spec=_stage2_callbacks_spec(recipe["train"]["callbacks"]), start_epoch=done1)  # fmt: skip
    hist = model.fit(
        train_ds, initial_epoch=done1, epochs=done1 + fine["epochs"], callbacks=callbacks, **fit
    )
    for k, v in hist.history.items():
        history.setdefault(k, []).extend(v)
    return history
