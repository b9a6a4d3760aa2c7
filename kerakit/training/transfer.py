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
from kerakit.models import (
    apply_compile,
    cache_features,
    get_optimizer,
    set_stage,
    split_for_feature_cache,
)
from kerakit.models.groups import grouped_optimizer, layer_groups, one_cycle, spread
from kerakit.models.transfer import stage_args, trainable_kept
from kerakit.recipe.transfer import decide_feature_cache
from kerakit.report.history import HISTORY_FILE, epochs_in_stage
from kerakit.training.build import LEARNING_RATE_LOG
from kerakit.training.runfolder import (
    FEATURES_DIR,
    STAGE1_FILE,
    STAGE1_WEIGHTS,
    STAGE2_BACKUP_DIR,
)


def _steps_per_epoch(dataset) -> int:
    """Batches in an epoch of `dataset` (counted once when tf.data does not know)."""
    n = int(dataset.cardinality())
    return n if n > 0 else sum(1 for _ in dataset)


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


def _stage_callbacks_spec(spec: list, stage: int, varied: bool) -> list:
    """The callbacks of a stage: stage 2 backs up to its own folder; when the rate follows
    one_cycle or differs per group, ReduceLROnPlateau is left out (it cannot set such a
    rate) and LearningRateLog logs the head's rate."""
    out = copy.deepcopy(spec)
    for entry in out if stage == 2 else ():
        if "BackupAndRestore" in entry:
            entry["BackupAndRestore"] = {
                **(entry["BackupAndRestore"] or {}),
                "backup_dir": STAGE2_BACKUP_DIR,
            }
    if varied:
        out = [entry for entry in out if "ReduceLROnPlateau" not in entry]
        if not any(LEARNING_RATE_LOG in entry for entry in out):
            out = [{LEARNING_RATE_LOG: {}}, *out]
    return out


def _own_rate(optimizer, where) -> float:
    rate = get_optimizer(optimizer, where).get_config().get("learning_rate")
    if not isinstance(rate, (int, float)):
        raise where.error(
            "schedule: one_cycle sets the learning rate itself, but compile.optimizer already "
            "follows a schedule; give the optimizer a fixed learning_rate (one_cycle's peak), "
            "or set fine_tune.base_lr"
        )
    return float(rate)


def stage_epochs(recipe, stage: int) -> int:
    """The epochs of a stage: stage 1 `fine_tune.freeze_epochs` (else train.epochs)."""
    fine = recipe["model"]["transfer"].get("fine_tune") or {}
    if stage == 2:
        return fine["epochs"]
    return fine.get("freeze_epochs") or recipe["train"]["epochs"]


def stage_compile(recipe, model: keras.Model, stage: int, per_epoch: int) -> tuple[dict, list]:
    """The compile section of a stage and its rates ``[(group, rate)]``.

    Stage 1 keeps compile's optimizer unless `fine_tune` sets `base_lr` or `schedule`;
    stage 2 trains at `fine_tune.learning_rate`, spread over layer groups when `lr_mult`
    is above 1 (a MultiOptimizer), each rate a one-cycle schedule when asked. `model` is
    the whole transfer model (stage 2) or what stage 1 trains (a head on cached features).
    """
    section = dict(recipe["compile"])
    fine = recipe["model"]["transfer"].get("fine_tune") or {}
    where = recipe.where.at("model", "transfer", "fine_tune")
    optimizer = section.get("optimizer", "adam")
    cycle = fine.get("schedule") == "one_cycle"
    steps = stage_epochs(recipe, stage) * max(1, per_epoch)

    def make(rate: float):
        value = one_cycle(rate, steps) if cycle else rate
        return get_optimizer(_with_learning_rate(optimizer, value), recipe.where.at("compile"))

    if stage == 1:
        top = fine.get("base_lr")
        if top is None and not cycle:
            return section, []
        top = top if top is not None else _own_rate(optimizer, recipe.where.at("compile"))
        section["optimizer"] = make(top)
        return section, [("all trainable", top)]
    top = fine["learning_rate"]
    n = fine.get("groups", 1) if fine.get("lr_mult", 1) > 1 else 1
    if n == 1 and not cycle:
        section["optimizer"] = _with_learning_rate(optimizer, top)
        return section, [("all trainable", top)]
    groups = layer_groups(model, n)
    rates = spread(top, fine.get("lr_mult", 1), len(groups))
    section["optimizer"] = grouped_optimizer(make, groups, rates, where=where)
    names = [f"backbone part {i + 1} of {len(groups) - 1}" for i in range(len(groups) - 1)]
    return section, list(zip([*names, "head"], rates))


def stage_plan(recipe, model: keras.Model, per_epoch: int) -> list[str]:
    """For `kerakit check`: each stage's epochs and learning rates (per group), computed as
    training will (so a rate training would refuse is refused here first)."""
    fine = recipe["model"]["transfer"].get("fine_tune")
    cycle = bool(fine) and fine.get("schedule") == "one_cycle"
    lines = []
    with trainable_kept(model):
        for stage in (1, 2) if fine else (1,):
            set_stage(model, stage, **(stage_args(fine) if stage == 2 else {}))
            _, rates = stage_compile(recipe, model, stage, per_epoch)
            n = stage_epochs(recipe, stage)
            line = f"stage {stage}: {n} epoch{'s' if n != 1 else ''}"
            if rates and (stage == 1 or len(rates) > 1 or cycle):
                line += "; " + describe_rates(stage, rates, cycle).split(" ", 2)[2]
            lines.append(line)
    return lines


def describe_rates(stage: int, rates: list, cycle: bool) -> str:
    """A line for `kerakit check` and the run's log: each group's (peak) rate."""
    how = " (one-cycle peaks)" if cycle else ""
    return f"stage {stage} learning rates{how}: " + ", ".join(
        f"{name} {rate:.3g}" for name, rate in rates
    )


def fit_transfer(recipe, model: keras.Model, path: Path, train_ds, val_ds, fit: dict, *, make: Callable,
                 print_fn=print) -> dict:  # fmt: skip
    """Run stage 1 (and stage 2 when `fine_tune` is set); returns the merged Keras history."""
    spec = recipe["model"]["transfer"]
    where = recipe.where.at("model", "transfer")
    fine = spec.get("fine_tune")
    epochs1 = stage_epochs(recipe, 1)
    marker = path / STAGE1_FILE
    history: dict = {}
    per_epoch = _steps_per_epoch(train_ds)
    cycle = bool(fine) and fine.get("schedule") == "one_cycle"

    if not marker.is_file():
        set_stage(model, 1, where=where)
        section, rates = stage_compile(recipe, model, 1, per_epoch)
        apply_compile(model, section, where=recipe.where.at("compile"))
        spec1 = _stage_callbacks_spec(recipe["train"]["callbacks"], 1, bool(rates))
        if rates:
            print_fn(describe_rates(1, rates, cycle))
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
            section, _ = stage_compile(recipe, head, 1, per_epoch)  # an optimizer of its own
            apply_compile(head, section, where=recipe.where.at("compile"))
            callbacks = make(recipe, head, path, tr, va, first=[StageColumn(1)], spec=spec1)
            _bind_checkpoints(callbacks, model)
            hist = head.fit(
                tr, epochs=epochs1, callbacks=callbacks, **{**fit, "validation_data": va}
            )
        else:
            print_fn("stage 1: training the head, backbone frozen")
            callbacks = make(recipe, model, path, train_ds, val_ds, first=[StageColumn(1)],
                             spec=spec1)  # fmt: skip
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
    section, rates = stage_compile(recipe, model, 2, per_epoch)
    apply_compile(model, section, where=recipe.where.at("compile"))
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    print_fn(
        f"stage 2: fine-tuning {trainable:,} parameters at learning rate {fine['learning_rate']}"
    )
    if len(rates) > 1 or cycle:
        print_fn(describe_rates(2, rates, cycle))
    spec2 = _stage_callbacks_spec(recipe["train"]["callbacks"], 2, len(rates) > 1 or cycle)
    callbacks = make(recipe, model, path, train_ds, val_ds, first=[StageColumn(2)], spec=spec2,
                     start_epoch=done1)  # fmt: skip
    hist = model.fit(
        train_ds, initial_epoch=done1, epochs=done1 + fine["epochs"], callbacks=callbacks, **fit
    )
    for k, v in hist.history.items():
        history.setdefault(k, []).extend(v)
    return history
