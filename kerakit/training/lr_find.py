"""A learning rate that is tested before it is used: fastai's `lr_find`, under Keras names.

    compile:
      optimizer: {adam: {learning_rate: auto}}    # found before the first epoch

    result = kk.lr_find("configs/overview_mlp.yaml")   # or: kerakit lr-find RECIPE
    result["chosen"]                                   # {'candidate': 'valley', 'learning_rate': 0.00251}

The algorithm: build and compile the recipe's model as `train` does and keep its
initial weights; sweep the learning rate exponentially, one rate per batch (1e-7 to 10
over 100 steps, cycling the training data) on Keras's own `fit`, until the smoothed loss
passes 4x its best; read two candidates off the curve (fastai's `valley` and `steepest`,
`kerakit.report.lr_find`) and add the optimizer's own rate (Keras's default, or the one the
recipe gives); train a short probe run at each, every one from the same initial weights
with a fresh optimizer and the same seed; keep the rate with the lowest validation loss
(training loss when there is no validation split). The default rate is always probed, so
the choice is never worse on the probe than not searching at all.

A transfer model is swept in stage 1 (backbone frozen): the rate found is stage 1's;
stage 2 keeps `fine_tune.learning_rate`. A schedule in the recipe is set aside for the
sweep and the probes (they use constant rates); `learning_rate: auto` is a constant rate.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np

from kerakit._files import read_json, write_json, write_text
from kerakit.data import load_recipe_data
from kerakit.models import apply_compile
from kerakit.models.compile import get_optimizer
from kerakit.models.transfer import set_stage
from kerakit.recipe import Recipe, load_recipe
from kerakit.recipe.reader import dump_yaml
from kerakit.report.lr_find import (
    LR_FIND_IMAGE,
    format_lr_find,
    plot_lr_find,
    round_rate,
    smoothed_losses,
    suggest,
)
from kerakit.report.plots import save_figure
from kerakit.training.build import (
    build_for_run,
    is_auto,
    make_strategy_for,
    optimizer_name,
    recipe_augmentation,
    schedule_steps,
    set_seeds,
    with_rate,
)
from kerakit.training.fit import pipelines
from kerakit.training.runfolder import RECIPE_FILE, check_output_dir, kept_recipe

LR_FIND_FILE = "lr_find.json"  # the sweep, the candidates, the probes, the choice
START_LR, END_LR, SWEEP_STEPS = 1e-7, 10.0, 100  # fastai's defaults
DIVERGED = 4.0  # the sweep stops when the smoothed loss passes this many times its best
MAX_PROBE_STEPS = 200  # a probe run: one epoch, at most this many steps (probe_steps sets it)


def lr_find(
    recipe: Recipe | str | Mapping,
    *,
    overrides=None,
    out: str | Path | None = None,
    steps: int = SWEEP_STEPS,
    probe_steps: int | None = None,
    start_lr: float = START_LR,
    end_lr: float = END_LR,
    print_fn=print,
) -> dict:
    """Find a learning rate for a recipe: a sweep, candidates, probe runs, the choice.

    Args:
        recipe: a recipe file, a mapping of plain values, or a `Recipe`.
        overrides: ``KEY=VALUE`` overrides, as ``--set`` takes.
        out: the folder for lr_find.json and lr_find.png; default a new folder
            ``output.dir/NAME-lr-find-YYYYmmdd-HHMMSS`` beside the recipe's runs.
        steps: the sweep's steps (default 100; it stops sooner when the loss blows up).
        probe_steps: each probe run's training steps (default one epoch, at most 200).
        start_lr, end_lr: the sweep's range (default 1e-7 to 10).

    Returns:
        What lr_find.json holds (`chosen`, `candidates`, `probes`, `sweep`, ...) and `path`,
        the folder.

    Example:
        >>> kk.lr_find("configs/overview_mlp.yaml", probe_steps=20)["chosen"]["learning_rate"]
    """
    recipe = load_recipe(recipe, overrides=overrides)
    strategy = make_strategy_for(recipe)
    set_seeds(recipe)
    bundle = load_recipe_data(recipe)
    model, resolved, _, notes = build_for_run(recipe, bundle, strategy)
    for note in [*bundle.notes, *notes]:
        print_fn(note)
    folder = Path(out) if out is not None else _new_folder(resolved)
    folder.mkdir(parents=True, exist_ok=True)
    result = find_learning_rate(resolved, model, bundle, folder, strategy=strategy, steps=steps,
                                probe_steps=probe_steps, start_lr=start_lr, end_lr=end_lr,
                                print_fn=print_fn)  # fmt: skip
    return {**result, "path": folder}


def find_learning_rate(
    recipe: Recipe,
    model: keras.Model,
    bundle,
    folder: Path,
    *,
    strategy=None,
    steps: int = SWEEP_STEPS,
    probe_steps: int | None = None,
    start_lr: float = START_LR,
    end_lr: float = END_LR,
    print_fn=print,
) -> dict:
    """Sweep, suggest, probe and choose on a built model (its weights are put back after);
    writes lr_find.png and lr_find.json (last: a complete lr_find.json is a finished
    search) into `folder` and returns what lr_find.json holds."""
    if "transfer" in recipe["model"]:  # stage 1: the head's rate, backbone frozen
        set_stage(model, 1, where=recipe.where.at("model", "transfer"))
    initial = model.get_weights()
    n = max(2, int(steps))
    rates = [start_lr * (end_lr / start_lr) ** (i / (n - 1)) for i in range(n)]
    print_fn(f"lr_find: sweeping the learning rate from {start_lr:g} to {end_lr:g} over at most "
             f"{n} steps, then probe runs from the same weights")  # fmt: skip
    with _quiet_retracing():
        sweep = _sweep(recipe, model, bundle, strategy, rates)
    candidates = suggest(sweep["learning_rates"], sweep["smoothed"])
    own, rate = _own_rate(recipe["compile"]["optimizer"])
    candidates[own] = rate
    per_epoch = schedule_steps(recipe, bundle, strategy)["per_epoch"] or 1
    budget = int(probe_steps) if probe_steps else min(per_epoch, MAX_PROBE_STEPS)
    measured = "val_loss" if bundle.val is not None else "loss"
    probes, tried = [], {}
    for name, lr in candidates.items():
        if lr in tried:  # two candidates at one rate: one probe
            continue
        tried[lr] = name
        model.set_weights(initial)
        _compile(model, recipe, lr, strategy)  # a fresh optimizer
        set_seeds(recipe)  # the same data order and dropout for every probe
        start = weights_hash(model.get_weights())
        with _quiet_retracing():
            loss = _probe(recipe, model, bundle, strategy, budget)
        probes.append(
            {"candidate": name, "learning_rate": lr, "loss": loss, "start_weights": start}
        )
    model.set_weights(initial)
    best = min(probes, key=lambda p: math.inf if p["loss"] is None else p["loss"])
    result = {
        "status": "complete",
        "optimizer": optimizer_name(recipe["compile"]["optimizer"]),
        "sweep": sweep,
        "candidates": candidates,
        "probes": probes,
        "measured": measured,
        "probe_budget": {"steps": budget, "batch_size": recipe["data"]["batch_size"]},
        "initial_weights": weights_hash(initial),
        "seed": recipe["seed"],
        "transfer_stage": 1 if "transfer" in recipe["model"] else None,
        "chosen": {"candidate": best["candidate"], "learning_rate": best["learning_rate"]},
    }
    save_figure(plot_lr_find(result), folder / LR_FIND_IMAGE)
    write_json(folder / LR_FIND_FILE, result)
    for line in format_lr_find(result):
        print_fn(line)
    return result


# --------------------------------------------------------------------------- inside a run


def learning_rate_for_run(recipe: Recipe, model, bundle, path: Path, *, strategy=None,
                          print_fn=print) -> Recipe:  # fmt: skip
    """A run's `learning_rate: auto` made a number: lr_find into the run folder (or, when a
    resumed run's lr_find.json is complete, the rate it chose), the model compiled with it,
    and recipe.resolved.yaml rewritten with it. Other recipes come back unchanged.

    run.json's fingerprint keeps `auto`, so the same command resumes the run; a run killed
    during lr_find has no complete lr_find.json and searches again from the same start (the
    initial weights come from the seed)."""
    if not is_auto(recipe["compile"].get("optimizer")):
        return recipe
    done = read_json(path / LR_FIND_FILE)
    done = done if isinstance(done, dict) else {}
    chosen = (done.get("chosen") or {}).get("learning_rate")
    if done.get("status") == "complete" and _positive(chosen):
        print_fn(f"learning_rate: {chosen:g} (chosen by this run's lr_find earlier: "
                 f"{path / LR_FIND_FILE})")  # fmt: skip
    else:
        result = find_learning_rate(
            recipe, model, bundle, path, strategy=strategy, print_fn=print_fn
        )
        chosen = result["chosen"]["learning_rate"]
    section = {**recipe["compile"], "optimizer": with_rate(recipe["compile"]["optimizer"], chosen)}
    recipe = recipe.replace("compile", section)
    _compile(model, recipe, chosen, strategy)
    write_text(path / RECIPE_FILE, dump_yaml(kept_recipe(recipe)))
    set_seeds(recipe)  # training starts from the same random state, searched now or before
    return recipe


# --------------------------------------------------------------------------- helpers


class _Sweep(keras.callbacks.Callback):
    """Sets the next rate before each batch and records that batch's loss; stops the fit
    when the smoothed loss passes DIVERGED x its best (rises 3x |best| above it: a loss
    that may be negative too), or is not finite."""

    def __init__(self, rates: list[float]):
        super().__init__()
        self.rates, self.losses, self.stopped = rates, [], "the end of the range"

    def on_train_batch_begin(self, batch, logs=None):
        self.model.reset_metrics()  # the logged loss is this batch's, not the epoch's mean
        self.model.optimizer.learning_rate = self.rates[batch]

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float((logs or {}).get("loss", math.nan)))
        smooth = smoothed_losses(self.losses)
        if not math.isfinite(smooth[-1]):
            self.stopped, self.model.stop_training = "the loss is not finite", True
        elif batch > 0 and smooth[-1] - smooth.min() > (DIVERGED - 1) * abs(smooth.min()):
            self.stopped = f"the loss rose past {DIVERGED:g}x its best"
            self.model.stop_training = True


def _sweep(recipe: Recipe, model, bundle, strategy, rates: list[float]) -> dict:
    _compile(model, recipe, rates[0], strategy, steps_per_execution=1)  # a rate per batch
    train_ds, _, _ = pipelines(recipe, bundle, augmentation=recipe_augmentation(recipe),
                               strategy=strategy)  # fmt: skip
    sweep = _Sweep(rates)
    model.fit(train_ds.repeat(), steps_per_epoch=len(rates), epochs=1, verbose=0, shuffle=False,
              callbacks=[sweep])  # fmt: skip
    losses = sweep.losses
    return {
        "start_lr": rates[0],
        "end_lr": rates[-1],
        "steps": len(rates),
        "stopped": sweep.stopped,
        "beta": 0.98,
        "learning_rates": rates[: len(losses)],
        "losses": [_finite(v) for v in losses],
        "smoothed": [_finite(v) for v in smoothed_losses(losses)],
    }


def _probe(recipe: Recipe, model, bundle, strategy, steps: int) -> float | None:
    """Train `steps` steps, then the validation loss (or, with no validation split, the
    loss on as many training batches, unaugmented); None when it is not finite."""
    train_ds, val_ds, _ = pipelines(recipe, bundle, augmentation=recipe_augmentation(recipe),
                                    strategy=strategy)  # fmt: skip
    model.fit(train_ds.repeat(), steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    if val_ds is None:
        val_ds = pipelines(recipe, bundle, strategy=strategy)[0].take(steps)
    return _finite(model.evaluate(val_ds, verbose=0, return_dict=True)["loss"])


@contextlib.contextmanager
def _quiet_retracing():
    """Every phase compiles afresh (a fresh optimizer), so TensorFlow warns that Keras's
    train function retraces: expected here, and no news to the user."""
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _compile(model, recipe: Recipe, lr: float, strategy, *, steps_per_execution=None) -> None:
    section = {**recipe["compile"], "optimizer": with_rate(recipe["compile"]["optimizer"], lr)}
    if steps_per_execution is not None:
        section["steps_per_execution"] = steps_per_execution
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        apply_compile(model, section, where=recipe.where.at("compile"))


def _own_rate(optimizer: Any) -> tuple[str, float]:
    """The third probe: the recipe's own rate ("configured": a number, or a schedule's
    initial rate), or Keras's default rate of the optimizer ("default")."""
    lr = (
        None
        if isinstance(optimizer, str)
        else (optimizer[optimizer_name(optimizer)] or {}).get("learning_rate")
    )
    if isinstance(lr, Mapping):
        lr = next(iter(lr.values()), {}).get("initial_learning_rate")
    if _positive(lr):
        return "configured", round_rate(lr)
    default = get_optimizer(with_rate(optimizer, None)).learning_rate
    return "default", round_rate(float(keras.ops.convert_to_numpy(default)))


def weights_hash(weights: list) -> str:
    """16 hex digits of SHA-256 over a model's weights (lr_find.json's `start_weights`)."""
    digest = hashlib.sha256()
    for w in weights:
        digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()[:16]


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _new_folder(recipe: Recipe) -> Path:
    """output.dir/NAME-lr-find-YYYYmmdd-HHMMSS, beside the recipe's runs (output.dir/NAME/)."""
    check_output_dir(recipe)
    base, stamp = Path(recipe["output"]["dir"]), time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 10_000):
        path = base / f"{recipe.name}-lr-find-{stamp}{'' if n == 1 else f'-{n}'}"
        if not path.exists():
            return path
    raise recipe.where.at("output", "dir").error(f"too many lr-find folders in {base}")
