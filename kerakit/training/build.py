"""Building a run's model: seeds, precision, the strategy, the compiled model (with what
`kk.train` was given in Python, and a schedule's length from the data), and the checks
between data and model that Keras would only report mid-fit (or never)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import keras

from kerakit._compat import max_steps_per_execution
from kerakit.augment import augmentation
from kerakit.errors import RecipeError, Where, data_error
from kerakit.models import apply_compile, budget, build_model, resolve_compile
from kerakit.models.compile import record_python_values
from kerakit.models.groups import current_learning_rate
from kerakit.recipe import Recipe, resolve_compile_section
from kerakit.recipe.compile import has_schedule
from kerakit.recipe.keras_names import ensure_index
from kerakit.training.callbacks import hooks_every_batch
from kerakit.training.distribute import global_batch_size, make_strategy

LEARNING_RATE_LOG = "kerakit>LearningRateLog"


@keras.saving.register_keras_serializable(package="kerakit", name="LearningRateLog")
class LearningRateLog(keras.callbacks.Callback):
    """Logs the optimizer's learning rate as `learning_rate` at each epoch's end: with a
    schedule, its value at the steps taken so far (the rate of the next step). Keras logs
    it only from ReduceLROnPlateau, which cannot work with a schedule; kerakit puts this
    first among a scheduled run's callbacks, so history.csv and history.png show it.
    With per-group rates (fine_tune.lr_mult), the head's rate."""

    def on_epoch_end(self, epoch, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        if logs is not None and optimizer is not None:
            logs["learning_rate"] = current_learning_rate(optimizer)

    def get_config(self) -> dict:
        return {}


def set_seeds(recipe: Recipe) -> None:
    import tensorflow as tf

    # Indexing Keras's names the first time makes Keras objects that draw random numbers:
    # done before seeding, the first run on a fresh cache starts from the same weights.
    ensure_index()
    if recipe["seed"] is not None:
        keras.utils.set_random_seed(recipe["seed"])
    if recipe["deterministic"]:
        tf.config.experimental.enable_op_determinism()


def precision_policy(recipe: Recipe) -> tuple[str, str]:
    """The dtype policy to use and why ("auto" is decided here and recorded)."""
    choice = recipe["train"]["precision"]
    if choice != "auto":
        return choice, "asked for in the recipe"
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        # Unmeasured on GPUs so far (benchmarks/README.md); stay exact until it is.
        return "float32", "auto: GPU figures are unmeasured, float32 kept"
    backbone = (recipe["model"].get("transfer") or {}).get("backbone")
    if isinstance(backbone, str) and _cpu_has_bf16():
        if backbone.startswith(BF16_FASTER):
            # Measured faster on a bf16-capable CPU (benchmarks/README.md: transfer precision).
            return (
                "mixed_bfloat16",
                f"auto: {backbone} on a CPU with bf16 instructions, measured 1.5-6x faster",
            )
        return "float32", (
            f"auto: float32 ({backbone}'s depthwise convolutions and BatchNorm measured slower "
            "in bfloat16 on this kind of CPU; precision: mixed_bfloat16 to try it)"
        )
    return "float32", "auto: float32 on CPU (mixed precision only where measured faster)"


# Backbones of dense convolutions, measured faster in mixed_bfloat16 on a CPU with bf16
# instructions (VGG16 5.8x forward, 4.6x stage 2; ResNet50 1.7x, 1.45x); MobileNetV2 and
# EfficientNetB0 measured slower (0.7x, 0.86x): benchmarks/transfer_precision.py.
BF16_FASTER = ("vgg", "resnet")


def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read(200_000)
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def make_strategy_for(recipe: Recipe):
    return make_strategy(recipe["train"], where=recipe.where.at("train"))


def build_compiled(recipe: Recipe, bundle, **kwargs):
    """Build and compile the recipe's model; returns (model, resolved compile section,
    policy, notes). See `_build_compiled`; `learning_rate: auto` compiles with the
    optimizer's default rate for now and stays `auto` in the resolved compile section (so
    in the run's fingerprint) until `lr_find.learning_rate_for_run` finds it."""
    given = (kwargs.get("compile_args") or {}).get("optimizer")
    optimizer = given if given is not None else recipe["compile"].get("optimizer")
    if not is_auto(optimizer):
        return _build_compiled(recipe, bundle, **kwargs)
    if given is not None:
        kwargs["compile_args"] = {**kwargs["compile_args"], "optimizer": with_rate(given, None)}
    else:
        section = {**recipe["compile"], "optimizer": with_rate(optimizer, None)}
        recipe = recipe.replace("compile", section)
    model, section, policy, notes = _build_compiled(recipe, bundle, **kwargs)
    section["optimizer"] = with_rate(section["optimizer"], "auto")
    notes.append(f"compile.optimizer.{optimizer_name(optimizer)}.learning_rate: auto (found when training, "
                 "before the first epoch: a sweep, then probe runs; kerakit lr-find shows it)")  # fmt: skip
    return model, section, policy, notes


def is_auto(optimizer: Any) -> bool:
    """Whether an optimizer {name: {learning_rate: auto, ...}} leaves its rate to lr_find."""
    if not (isinstance(optimizer, Mapping) and len(optimizer) == 1):
        return False
    args = next(iter(optimizer.values()))
    return isinstance(args, Mapping) and args.get("learning_rate") == "auto"


def optimizer_name(optimizer: Any) -> str:
    return optimizer if isinstance(optimizer, str) else str(next(iter(optimizer)))


def with_rate(optimizer: Any, lr: Any) -> Any:
    """The optimizer with `lr` as its learning rate (in place of a number, `auto` or a
    schedule); with None, without one (the optimizer's default)."""
    name = optimizer_name(optimizer)
    args = {} if isinstance(optimizer, str) else dict(optimizer[name] or {})
    args.pop("learning_rate", None)
    return {name: args if lr is None else {**args, "learning_rate": lr}}


def _build_compiled(recipe: Recipe, bundle, *, strategy=None, callbacks=(), compile_args=None):
    """Build and compile the recipe's model; returns (model, resolved compile section, notes).

    `callbacks` are the callback objects given from Python: one that works per batch
    makes an automatic `steps_per_execution` 1 (Keras calls per-batch hooks once per
    block of steps). `compile_args` are `kk.train`'s optimizer, loss and metrics: each
    replaces the recipe's; Keras objects among them are compiled as they are and written
    into the resolved section as their Keras config (`from_python` names them).
    """
    ensure_index()  # Keras is loaded: index its names once per version for `kerakit check`
    policy, why = precision_policy(recipe)
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    aug = recipe_augmentation(recipe)
    try:
        model = build_model(recipe, input_shape=bundle.input_shape if bundle else None,
                            num_classes=bundle.num_classes if bundle else None)  # fmt: skip
        if aug is not None and aug.placement == "model":
            model = _with_augmentation_inside(recipe, model, aug)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    given, where, from_python = compile_given(recipe, compile_args)
    steps = schedule_steps(recipe, bundle, strategy)
    section, notes = resolve_compile(given, model, where=where, steps=steps)
    if aug is not None and aug.needs_labels and section["preset"] == "multiclass":
        # mixup/cutmix blend labels, so they need one-hot labels and categorical crossentropy
        section["preset"] = "multiclass_onehot"
        loss = section.get("loss")
        if loss == "sparse_categorical_crossentropy":
            section["loss"] = "categorical_crossentropy"
        elif isinstance(loss, Mapping) and list(loss) == ["SparseCategoricalCrossentropy"]:
            section["loss"] = {"CategoricalCrossentropy": loss["SparseCategoricalCrossentropy"]}
        notes.append("compile preset: multiclass_onehot (mixup/cutmix blend one-hot labels)")
    per_batch = _per_batch_reason(recipe, callbacks)
    if recipe["compile"].get("steps_per_execution", "auto") == "auto" and per_batch:
        notes = [n for n in notes if not n.startswith("steps_per_execution:")]
        section["steps_per_execution"] = 1
        notes.append(f"steps_per_execution: 1 (auto: {per_batch} works every batch)")
    if strategy is not None:
        cap = max_steps_per_execution(strategy)
        if cap is not None and section["steps_per_execution"] > cap:
            # keras#19246: fit breaks with steps_per_execution > 1 on several replicas
            section["steps_per_execution"] = cap
            notes.append(f"steps_per_execution: {cap} (several replicas; keras#19246)")
    apply_compile(model, section, where=where)
    if from_python:
        section, more = record_python_values(section, from_python, where=where)
        notes += more
    refuse_plateau_with_schedule(callbacks, section)  # before any run folder is made
    notes += schedule_callbacks(recipe["train"]["callbacks"], section)[1]
    notes.append(f"precision: {policy} ({why})")
    return model, section, policy, notes


def compile_given(recipe: Recipe, given: Mapping | None) -> tuple[dict, Where, list[str]]:
    """The recipe's compile section with `kk.train`'s optimizer, loss and metrics put in
    (names checked as the recipe's are), where its mistakes are reported
    ("kk.train(loss=...): compile.loss: ..."), and the keys that hold Keras objects."""
    given = {k: v for k, v in (given or {}).items() if v is not None}
    if not given:
        return dict(recipe["compile"]), recipe.where.at("compile"), []
    positions = {p: v for p, v in recipe.positions.items()
                 if not (p[:1] == ("compile",) and p[1:2] and p[1] in given)}  # fmt: skip
    positions.update({("compile", key): (f"kk.train({key}=...)",) for key in given})
    where = Where(recipe.file, positions).at("compile")
    objects = [key for key, value in given.items() if not _plain(value)]
    section = {**recipe["compile"], **{k: v for k, v in given.items() if k not in objects}}
    section.pop("from_python", None)
    section = resolve_compile_section(section, where)
    noted = set(recipe["compile"].get("from_python") or []) - set(given)
    if noted:  # still Keras configs from an earlier run's objects
        section["from_python"] = sorted(noted)
    section.update({key: given[key] for key in objects})
    return section, where, objects


def _plain(value: Any) -> bool:
    """Whether a value is plain data (a recipe could hold it), not a Keras object."""
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (str, bool, int, float))


def schedule_steps(recipe: Recipe, bundle, strategy=None) -> dict:
    """What a schedule's `decay_steps: auto` is made of: epochs, steps per epoch (None when
    the data is not loaded yet: `kerakit check` of arrays), and how they were counted."""
    epochs = recipe["train"]["epochs"]
    if bundle is None:
        return {
            "epochs": epochs,
            "per_epoch": None,
            "why": "the data comes as arrays when training",
        }
    batch = global_batch_size(recipe["data"]["batch_size"], strategy)
    size = int(bundle.sizes.get("train") or 0)
    per_epoch = max(1, math.ceil(size / batch))
    return {"epochs": epochs, "per_epoch": per_epoch,
            "why": f"{size:,} training examples in batches of {batch}"}  # fmt: skip


def schedule_callbacks(callbacks: list, section: Mapping) -> tuple[list, list[str]]:
    """A scheduled run's callbacks: ReduceLROnPlateau left out (Keras cannot set a scheduled
    rate: it would fail at its first cut) and kerakit's LearningRateLog first; and notes."""
    if not has_schedule(section.get("optimizer")):
        return callbacks, []
    kept = [entry for entry in callbacks if "ReduceLROnPlateau" not in entry]
    notes = []
    if len(kept) < len(callbacks):
        notes.append(
            "callbacks: ReduceLROnPlateau left out (the learning rate follows the schedule)"
        )
    if not any(LEARNING_RATE_LOG in entry for entry in kept):
        kept = [{LEARNING_RATE_LOG: {}}, *kept]
        notes.append(f"callbacks: {LEARNING_RATE_LOG} logs the scheduled learning_rate each epoch")
    return kept, notes


def refuse_plateau_with_schedule(callbacks, section: Mapping) -> None:
    """Refuse a ReduceLROnPlateau among `kk.train`'s callbacks when the learning rate is a
    schedule: Keras cannot set a scheduled rate, so the callback would fail at its first
    cut, mid-fit (the recipe's own one is left out instead: `schedule_callbacks`)."""
    if not has_schedule(section.get("optimizer")):
        return
    for callback in callbacks:
        if isinstance(callback, keras.callbacks.ReduceLROnPlateau):
            ((name, args),) = section["optimizer"].items()
            schedule = next(iter(args["learning_rate"]))
            raise RecipeError(
                f"{type(callback).__name__} cannot lower the learning rate of {name}, which "
                f"follows the schedule {schedule} (Keras cannot set a scheduled rate, so it "
                "would fail mid-fit); leave it out of callbacks, or give the optimizer a "
                "fixed learning_rate",
                path="kk.train(callbacks=...)",
            )


def _per_batch_reason(recipe: Recipe, callbacks) -> str | None:
    """What needs Keras's per-batch hooks called every batch, or None."""
    for callback in callbacks:
        if hooks_every_batch(callback):
            return f"the callback {type(callback).__name__}"
    for entry in recipe["train"]["callbacks"]:
        ((name, kwargs),) = entry.items()
        if isinstance((kwargs or {}).get("save_freq"), int):
            return f"{name}(save_freq={kwargs['save_freq']})"
    return None


def _with_augmentation_inside(recipe: Recipe, model, aug):
    """`augment.placement: model`: the augmentation as the model's first layer (training only)."""
    if "transfer" in recipe["model"]:
        raise recipe.where.at("augment", "placement").error(
            "placement: model is not supported for transfer models yet; use placement: data"
        )
    inputs = keras.Input(shape=model.input_shape[1:], name=model.inputs[0].name.split(":")[0])
    return keras.Model(inputs, model(aug.layer()(inputs)), name=model.name)


def build_for_run(recipe: Recipe, bundle, strategy, **kwargs):
    """What `train` and `lr_find` do before training: the model built and compiled in the
    strategy's scope, the recipe resolved (every "auto" of the data made concrete), and the
    data/model mismatches refused. Returns (model, resolved recipe, policy, notes)."""
    with strategy.scope():
        model, section, policy, notes = build_compiled(recipe, bundle, strategy=strategy, **kwargs)
    resolved = resolved_recipe(recipe, section, policy)
    if bundle.spec:
        resolved = resolved.replace("data", bundle.spec)
    check_data_fits(resolved, model, bundle)
    return model, resolved, policy, notes


def resolved_recipe(recipe: Recipe, compile_section: dict, policy: str) -> Recipe:
    resolved = recipe.replace("compile", compile_section)
    train = dict(resolved["train"])
    train["precision"] = policy
    train["callbacks"] = schedule_callbacks(train["callbacks"], compile_section)[0]
    return resolved.replace("train", train)


def check_data_fits(recipe: Recipe, model, bundle) -> None:
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
    if getattr(bundle, "feature_space", None) is not None and "h5" in recipe["output"]["formats"]:
        raise recipe.where.at("output", "formats").error(
            "a table with data.features saves the FeatureSpace's layers inside the model, and "
            "Keras cannot load those from the legacy h5 format; use keras (or savedmodel)"
        )
    raw_strings = getattr(bundle, "feature_space", None) is not None or getattr(
        bundle, "preprocessing", None) is not None  # fmt: skip
    numbers_only = [f for f in recipe["output"]["formats"] if f in ("onnx", "litert")]
    if raw_strings and numbers_only:  # what the export at the end of train would refuse
        raise recipe.where.at("output", "formats").error(
            f"this model reads raw table columns or text (encoded inside the model), which "
            f"{' and '.join(numbers_only)} cannot hold; export it as savedmodel"
        )
    if getattr(bundle, "preprocessing", None) is not None and "h5" in recipe["output"]["formats"]:
        raise recipe.where.at("output", "formats").error(
            "text inputs save their TextVectorization (and its vocabulary) inside the model, "
            "and Keras cannot load it from the legacy h5 format; use keras (or savedmodel)"
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
        for x, *_ in bundle.train.batch(4096):
            for part in tf.nest.flatten(x):
                if part.dtype.is_floating and not bool(tf.reduce_all(tf.math.is_finite(part))):
                    raise data_error(
                        recipe.where.at("data"), "source",
                        f"{recipe['data']['source']}: the training inputs hold NaN or infinite "
                        "values; clean the data (or drop those rows) before training",
                    )  # fmt: skip
    budget.check_activations(model, recipe["data"]["batch_size"], where)


def recipe_augmentation(recipe: Recipe):
    """The recipe's `Augmentation`, or None."""
    if not recipe["augment"]:
        return None
    return augmentation(recipe["augment"], seed=recipe["seed"], where=recipe.where.at("augment"))
