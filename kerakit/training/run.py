"""One training run: recipe -> data -> model -> fit -> run folder.

    run = kk.train("configs/digits_cnn.yaml", epochs=3)
    run.metrics            # test metrics
    run.path               # runs/digits-cnn/20261129-031500/
    run.plot_history()

`train` wires the concept modules together; `check`, `evaluate` and
`predict` are the other verbs of the command line.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kerakit._files import write_text
from kerakit.data import load_recipe_data, to_numpy
from kerakit.errors import DataError
from kerakit.export import after_training, saved_formats
from kerakit.models.transfer import format_stage_report, stage_report
from kerakit.recipe import Recipe, load_recipe
from kerakit.recipe.compile import takes_logits
from kerakit.recipe.reader import dump_yaml
from kerakit.recipe.usercode import check_unchanged
from kerakit.training.build import (
    build_compiled,
    build_for_run,
    check_data_fits,
    make_strategy_for,
    resolved_recipe,
    schedule_steps,
    set_seeds,
)
from kerakit.training.distribute import describe_strategy, is_chief, remove_worker_dir, worker_dir
from kerakit.training.fit import check_callbacks, finish, fit
from kerakit.training.lr_find import learning_rate_for_run
from kerakit.training.provenance import provenance
from kerakit.training.runfolder import (
    CLASSES_FILE,
    CODE_FILE,
    ENV_FILE,
    INPUTS_FILE,
    NORMALIZATION_FILE,
    RECIPE_FILE,
    RUN_FILE,
    RunLock,
    check_output_dir,
    clean_partial_writes,
    environment,
    failure,
    kept_recipe,
    read_json,
    run_folder,
    write_run_json,
)
from kerakit.training.space import check_search
from kerakit.training.tracking import check_trackers, tracking
from kerakit.training.transfer import stage_plan
from kerakit.training.trial import trial_callbacks

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
            x, y = to_numpy(self.data.test)
            probs = self.model.predict(x, verbose=0)
            self._preds = (x, y, probs)
        return self._preds

    def plot_confusion(self, normalize: bool = False):
        from kerakit.report.plots import plot_confusion

        _, y, probs = self._test_predictions()
        return plot_confusion(y, probs, class_names=self.class_names, normalize=normalize,
                              from_logits=takes_logits(self.recipe["compile"]))  # fmt: skip

    def show_errors(self, n: int = 16):
        from kerakit.report.plots import show_errors

        x, y, probs = self._test_predictions()
        if isinstance(x, Mapping):
            raise DataError(
                f"show_errors shows the inputs as images; this model takes several ({', '.join(x)}). "
                "Use plot_confusion, or kerakit.report.plots.show_errors on one input"
            )
        return show_errors(x, y, probs, class_names=self.class_names, n=n,
                           from_logits=takes_logits(self.recipe["compile"]))  # fmt: skip

    # fastai's interpretation, under Keras names (kerakit.report.interpret)
    def plot_top_losses(self, k: int = 9):
        """A grid of the `k` test samples with the highest loss (a table's rows: a table)."""
        from kerakit.report.interpret import plot_top_losses

        x, y, probs = self._test_predictions()
        return plot_top_losses(x, y, probs, class_names=self.class_names, k=k,
                               from_logits=takes_logits(self.recipe["compile"]))  # fmt: skip

    def most_confused(self, min_count: int = 1) -> list[tuple]:
        """`[(true, predicted, count), ...]`: the class pairs mixed up most on the test set."""
        from kerakit.report.interpret import most_confused

        _, y, probs = self._test_predictions()
        return most_confused(y, probs, self.class_names, min_count=min_count,
                             from_logits=takes_logits(self.recipe["compile"]))  # fmt: skip

    def gradcam(self, x, class_index=None):
        """Grad-CAM heat maps `(n, h', w')` in [0, 1] of images as the model takes them
        (`kerakit.report.interpret.plot_gradcam` draws them over the images)."""
        from kerakit.training.interpret import gradcam

        return gradcam(self.model, x, class_index)

    def predict(self, x, **kwargs):
        """The model's predictions on raw inputs, as the saved model takes them: a table's
        column values, raw strings, raw windows, or what `model` takes."""
        return self.raw_model.predict(x, verbose=0, **kwargs)

    @property
    def raw_model(self):
        """The model as the run saved it: `model` behind the preprocessing adapted on the
        training split (a FeatureSpace, a TextVectorization, a series' Normalization), if any."""
        layer = getattr(self.data, "raw_layer", None)
        if layer is None:
            return self.model
        if getattr(self, "_raw_model", None) is None:
            from kerakit.data.features import raw_input_model

            self._raw_model = raw_input_model(layer, self.model)
        return self._raw_model


def _say_imported(recipe: Recipe, print_fn) -> None:
    for record in recipe.code:
        print_fn(f"imported: {record['import']} ({record['file']})")


# --------------------------------------------------------------------------- check


def check(recipe: Recipe | str | Mapping, *, overrides=None, print_fn=print) -> Any:
    """Validate a recipe, build and compile its model, and print what would run (no training).

    The dry run of `train`: it loads the data (not for source `arrays`), builds and
    compiles the model, and refuses every data/model mismatch and every callback
    mistake that `train` would refuse before its first epoch, with the same message.

    Returns the compiled model.
    """
    recipe = load_recipe(recipe, overrides=overrides)
    _say_imported(recipe, print_fn)
    check_output_dir(recipe)
    bundle = None if recipe["data"]["source"] == "arrays" else load_recipe_data(recipe)
    for note in bundle.notes if bundle is not None else ():
        print_fn(note)
    model, section, policy, notes = build_compiled(recipe, bundle)
    if bundle is not None:
        resolved = resolved_recipe(recipe, section, policy)
        if bundle.spec:
            resolved = resolved.replace("data", bundle.spec)
        check_data_fits(resolved, model, bundle)
        check_callbacks(resolved, model, bundle)
    model.summary(print_fn=lambda line, *a, **k: print_fn(line))
    params = model.count_params()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    print_fn(f"parameters: {params:,} ({trainable:,} trainable)")
    for note in notes:
        print_fn(note)
    print_fn("distribute: " + describe_strategy(recipe["train"], where=recipe.where.at("train")))
    if "transfer" in recipe["model"]:
        print_fn(
            format_stage_report(stage_report(model, recipe["model"]["transfer"].get("fine_tune")))
        )
        per_epoch = schedule_steps(recipe, bundle)["per_epoch"] or 1
        for line in stage_plan(resolved if bundle is not None else recipe, model, per_epoch):
            print_fn(line)
    if "search" in recipe:  # the space, and the model at its corners
        check_search(recipe, bundle, print_fn=print_fn)
    print_fn(f"recipe OK: {recipe.file or recipe.name}")
    return model


# --------------------------------------------------------------------------- train


def train(
    recipe: Recipe | str | os.PathLike | Mapping,
    *,
    x: Any = None,
    y: Any = None,
    validation_data: Any = None,
    sample_weight: Any = None,
    epochs: int | None = None,
    overrides=None,
    resume: str | os.PathLike | None = None,
    new: bool = False,
    run_dir: str | os.PathLike | None = None,
    verbose: int | str | None = None,
    command: list[str] | None = None,
    callbacks: list | None = None,
    optimizer: Any = None,
    loss: Any = None,
    metrics: Any = None,
    print_fn=print,
) -> Run:
    """Train a recipe end to end and leave a complete run folder.

    Args:
        recipe: a recipe file, a mapping of plain values, or a `Recipe`.
        x, y: arrays (or dicts of arrays by input/output name) to train on
            instead of the recipe's data source; or `x` a `tf.data.Dataset` or
            `keras.utils.PyDataset` of `(x, y)` / `(x, y, sample_weight)` batches, as
            Keras's `fit` takes it (no `y`). `validation_data` likewise: `(x_val, y_val)`,
            `(x_val, y_val, w_val)`, or a data set when `x` is one.
        sample_weight: per-example weights of the training arrays, as `fit` takes them
            (multiplied by ``train.class_weight`` where both are given).
        epochs: override ``train.epochs``.
        overrides: more ``KEY=VALUE`` overrides, as ``--set`` takes.
        resume: a run folder to resume; by default the newest interrupted run
            of the same recipe is resumed, unless `new` is true.
        run_dir: train in exactly this folder: a new run there, or the run it holds
            resumed (`kerakit search` gives each trial its folder this way).
        verbose: Keras's fit verbosity (default: the recipe's, "auto").
        callbacks: more Keras callback objects, run after the recipe's own.
        optimizer, loss, metrics: replace the recipe's ``compile.optimizer``,
            ``compile.loss``, ``compile.metrics``; each as a recipe writes it (a name,
            ``{name: {args}}``) or a Keras object (an optimizer, with a schedule as its
            learning rate; a loss; metrics). recipe.resolved.yaml records an object as
            ``{ClassName: its get_config()}`` and names it under ``compile.from_python``.

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
    source, recipe = recipe, load_recipe(recipe, overrides=overrides or None)
    _say_imported(recipe, print_fn)

    # the strategy before any other TF op: multi-worker collectives need it first
    strategy = make_strategy_for(recipe)
    set_seeds(recipe)
    bundle = load_recipe_data(recipe, x=x, y=y, validation_data=validation_data,
                              sample_weight=sample_weight, batch_given=_sets_batch_size(source, recipe))  # fmt: skip
    for note in bundle.notes:
        print_fn(note)
    # before any run folder is made: the model, the resolved recipe, the mismatches refused
    model, resolved, policy, notes = build_for_run(
        recipe, bundle, strategy, callbacks=callbacks or (),
        compile_args={"optimizer": optimizer, "loss": loss, "metrics": metrics},
    )  # fmt: skip
    for note in notes + [f"distribute: {describe_strategy(strategy)}"]:
        print_fn(note)
    check_trackers(resolved)  # train.tracking's packages, too
    chief = is_chief(strategy)
    path, resuming = run_folder(resolved, resume=resume, new=new, print_fn=print_fn, create=chief,
                                at=run_dir)  # fmt: skip
    lock = RunLock(path).acquire() if chief else None  # one trainer per run folder
    path = worker_dir(path, strategy)  # other workers write to a temporary folder (TF's guide)
    try:
        extra = [*(callbacks or []), *trial_callbacks(path)]  # a search trial reports its epochs
        with tracking(resolved, path, enabled=chief) as trackers:  # TensorBoard, MLflow
            return _train_in(resolved, model, bundle, path, resuming, strategy, policy, command,
                             verbose, print_fn, [*extra, *trackers])  # fmt: skip
    finally:
        if lock is not None:
            lock.release()
        if not chief:
            remove_worker_dir(path, strategy)


def _sets_batch_size(source: Any, recipe: Recipe) -> bool:
    """Whether the recipe (its file, its mapping or a --set) says `data.batch_size`; if not, a
    data set given as x= keeps its own batch size."""
    if ("data", "batch_size") in recipe.positions:
        return True
    section = source.get("data") if isinstance(source, Mapping) else None
    return isinstance(section, Mapping) and "batch_size" in section


def _train_in(
    resolved, model, bundle, path, resuming, strategy, policy, command, verbose, print_fn, extra
) -> Run:
    if resuming:
        clean_partial_writes(path)  # what a killed run's atomic writes left behind
        check_unchanged(read_json(path / CODE_FILE).get("code", []), resolved.code, path)
    if resolved.code:
        write_run_json(path / CODE_FILE, {"code": resolved.code})
    info = read_json(path / RUN_FILE) if resuming else {}
    info.update(status="running", fingerprint=resolved.fingerprint(), name=resolved.name,
                started=info.get("started") or time.strftime("%Y-%m-%dT%H:%M:%S"),
                provenance=provenance(resolved, bundle))  # fmt: skip
    info.pop("error", None)
    write_run_json(path / RUN_FILE, info)
    write_text(path / RECIPE_FILE, dump_yaml(kept_recipe(resolved)))
    write_run_json(path / ENV_FILE, environment(resolved, command, policy, strategy))
    if bundle.class_names:
        write_run_json(path / CLASSES_FILE, list(bundle.class_names))
    if bundle.stats:
        write_run_json(path / NORMALIZATION_FILE, bundle.stats)
    if bundle.value_range is not None:  # what `kerakit predict` maps image files to
        write_run_json(path / INPUTS_FILE, {"value_range": bundle.value_range})

    try:
        # learning_rate: auto -> lr_find here; run.json's fingerprint keeps "auto" (resume)
        resolved = learning_rate_for_run(resolved, model, bundle, path, strategy=strategy,
                                         print_fn=print_fn)  # fmt: skip
        history = fit(
            resolved, model, bundle, path, strategy, verbose=verbose, print_fn=print_fn, extra=extra
        )
    except BaseException as exc:
        info.update(failure(exc))  # diverged, interrupted (resumable), or with the error
        write_run_json(path / RUN_FILE, info)
        raise
    metrics = finish(saved_formats(resolved), model, bundle, path, history, strategy=strategy,
                     print_fn=print_fn)  # fmt: skip
    info.update(status="complete", finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
    write_run_json(path / RUN_FILE, info)
    if is_chief(strategy):  # output.formats onnx/litert/savedmodel: exported and checked
        after_training(resolved, path, print_fn=print_fn)  # ExportGateFailed: the run stays
    return Run(path, resolved, model, history, metrics, bundle.class_names, data=bundle)
