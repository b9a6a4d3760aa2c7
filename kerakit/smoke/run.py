"""`kerakit smoke`: does each recipe still build, learn, save and reload? In seconds, on a CPU.

    kerakit smoke configs/*.yaml          # a table of what passed, with times; exit 0, 1 or 2
    pytest --kerakit configs/             # the same checks as pytest items (kerakit.pytest_plugin)
    result = smoke("my.yaml", steps=20)   # from Python: a SmokeResult

The checks of one recipe, in order (the first that fails ends the recipe; docs/testing.md):

- recipe: load and validate it (a `RecipeError`, here or in any later check, makes the
  recipe invalid: exit status 2);
- data: a tiny, seeded slice of its own data, or a synthetic stand-in when the source is
  out of reach offline (`kerakit.smoke.data`, said so in a note);
- build: build and compile as `kerakit train` does, then its data-vs-model checks;
- overfit: `steps` steps on one fixed batch; every loss finite ("diverged at step k"
  otherwise), and the mean of the last three losses below 0.9x the first (a model that
  cannot overfit one batch has a bug); a transfer model trains its head on the batch's
  cached backbone features, as its first stage does;
- step: one epoch of one batch through `kerakit.training.fit.fit`, with the recipe's
  augmentation, callbacks (into a temporary folder) and distribution strategy;
- predict: one batch's outputs are finite and shaped (batch, classes);
- save: each format of `output.formats`, reloaded with `kerakit.saving.load_model` in a
  fresh Keras session; predictions agree within 1e-5 (1e-3 under mixed precision).

Everything is written into a temporary folder, removed afterwards. For the smoke, ImageNet
weights become `weights: none` (no download), `multi_worker` and `tpu` run on one device,
and a tfds data set is never downloaded.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kerakit.errors import RecipeError, TrainingInterrupted, format_path
from kerakit.recipe import Recipe, load_recipe
from kerakit.smoke.checks import (
    STEPS,
    SmokeFailure,
    check_roundtrip,
    flat_outputs,
    overfit_one_batch,
    quiet,
    standardized,
    why,
)

BATCHES = 2  # training batches in the data slice
CHECKS = ("recipe", "data", "build", "overfit", "step", "predict", "save")
_RECIPE_KEYS = (re.compile(r"^data\s*:", re.M), re.compile(r"^model\s*:", re.M))


@dataclass
class Check:
    """One check of one recipe: status "ok", "FAIL" or "INVALID", its seconds and why."""

    name: str
    status: str
    seconds: float
    reason: str = ""
    location: str = ""  # "FILE:LINE:COL (key.path)" where the recipe says what failed
    line: int | None = None


@dataclass
class SmokeResult:
    """The checks of one recipe, in order, with the notes (stand-ins, substitutions)."""

    path: str
    checks: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def failure(self) -> Check | None:
        return next((c for c in self.checks if c.status != "ok"), None)

    @property
    def status(self) -> str:
        return "ok" if self.failure is None else self.failure.status

    @property
    def passed(self) -> bool:
        return self.failure is None

    @property
    def seconds(self) -> float:
        return sum(c.seconds for c in self.checks)

    def explain(self) -> str:
        """'FAIL overfit: diverged at step 2 ... [FILE:LINE:COL (key)]', or '' when it passed."""
        c = self.failure
        if c is None:
            return ""
        return f"{c.status} {c.name}: {c.reason}" + (f" [{c.location}]" if c.location else "")


def looks_like_recipe(path: str | os.PathLike) -> bool:
    """A .yaml/.yml file with top-level `data:` and `model:` keys (read as text, not parsed)."""
    path = Path(path)
    if path.suffix.lower() not in (".yaml", ".yml") or not path.is_file():
        return False
    try:
        text = path.read_text(encoding="utf-8", errors="replace")[:1_000_000]
    except OSError:
        return False
    return all(key.search(text) for key in _RECIPE_KEYS)


def recipe_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The recipes named: files as given, folders searched (recursively) for recipes."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if looks_like_recipe(f))
        else:
            out.append(p)
    return list(dict.fromkeys(out))


# --------------------------------------------------------------------------- the checks


class SmokeRun:
    """The checks of one recipe as methods, run in CHECKS order, each using what the ones
    before it made (`kerakit.testing.assert_learns` runs the first four).

    Args:
        source: a recipe file, mapping or `Recipe`.
        folder: a temporary folder for everything written (callbacks, saved models).
        x, y: arrays to use instead of the recipe's data source (sliced the same way).
    """

    def __init__(self, source, *, folder: Path, steps: int = STEPS, batches: int = BATCHES,
                 overrides=None, x=None, y=None):  # fmt: skip
        self.source, self.steps, self.batches, self.overrides = source, steps, batches, overrides
        self.folder, self.x_given, self.y_given = Path(folder), x, y
        self.notes: list[str] = []
        self.recipe: Recipe | None = None

    def load(self) -> None:
        recipe = load_recipe(self.source, overrides=self.overrides or None)
        self.recipe = _for_smoke(recipe, self.notes)

    def data(self) -> None:
        from kerakit.data import load_recipe_data
        from kerakit.smoke.data import slice_bundle, tiny_data

        before = len(self.notes)
        if self.x_given is not None:
            bundle = load_recipe_data(self.recipe, x=self.x_given, y=self.y_given)
            self.bundle = slice_bundle(bundle, self.batches, self.recipe["data"]["batch_size"])
        else:
            self.recipe, self.bundle = tiny_data(
                self.recipe, batches=self.batches, folder=self.folder, notes=self.notes
            )
        if len(self.notes) == before:
            sizes = ", ".join(f"{k} {v}" for k, v in self.bundle.sizes.items() if v)
            source = (self.bundle.spec or self.recipe["data"])["source"]
            self.notes.append(f"data: a slice of {source} ({sizes})")

    def build(self) -> None:
        import keras

        from kerakit.training.build import (
            build_compiled,
            check_data_fits,
            make_strategy_for,
            resolved_recipe,
        )

        keras.utils.set_random_seed(self.recipe["seed"] if self.recipe["seed"] is not None else 0)
        self.strategy = make_strategy_for(self.recipe)
        with self.strategy.scope():
            self.model, section, self.policy, _ = build_compiled(
                self.recipe, self.bundle, strategy=self.strategy
            )
        resolved = resolved_recipe(self.recipe, section, self.policy)
        self.resolved = resolved.replace("data", self.bundle.spec) if self.bundle.spec else resolved
        check_data_fits(self.resolved, self.model, self.bundle)

    def overfit(self) -> None:
        from kerakit.models import apply_compile, split_for_feature_cache
        from kerakit.recipe.transfer import decide_feature_cache
        from kerakit.training.fit import pipelines

        train, _, _ = pipelines(self.resolved, self.bundle)
        x, y = next(iter(train))
        model, steps, spec = self.model, self.steps, self.resolved["model"].get("transfer")
        replaced = any(n.startswith("model: weights: imagenet replaced") for n in self.notes)
        if spec and (replaced or decide_feature_cache(spec, self.resolved["augment"])):
            # stage 1 trains the head on cached backbone features: so does this check, with
            # 3x the steps (each costs next to nothing; a random backbone's features are weak,
            # and standardized when the backbone is random in place of ImageNet's)
            features, model = split_for_feature_cache(self.model)
            x, steps = features(x, training=False), 3 * self.steps
            if replaced:
                x = standardized(x)
            apply_compile(model, self.resolved["compile"], where=self.resolved.where.at("compile"))
        self.losses = overfit_one_batch(model, x, y, steps)

    def step(self) -> None:
        from kerakit.smoke.data import slice_bundle
        from kerakit.training.fit import fit

        one = slice_bundle(self.bundle, 1, self.resolved["data"]["batch_size"])  # one step
        fit(self.resolved, self.model, one, self.folder / "run", self.strategy, verbose=0,
            print_fn=lambda *a, **k: None)  # fmt: skip

    def predict(self) -> None:
        import numpy as np

        from kerakit.training.fit import pipelines

        train, val, test = pipelines(self.resolved, self.bundle)
        ds = next(d for d in (test, val, train) if d is not None)
        self.x = next(iter(ds))[0]
        outputs = flat_outputs(self.model.predict(self.x, verbose=0))
        n = len(next(iter(self.x.values())) if isinstance(self.x, Mapping) else self.x)
        for out in outputs:
            if out.shape[0] != n or not np.all(np.isfinite(out)):
                raise SmokeFailure(f"predict gives {out.shape} with non-finite values or not "
                                   f"{n} rows, for a batch of {n}", ("model",))  # fmt: skip
        preset, classes = self.resolved["compile"]["preset"], self.bundle.num_classes
        if len(outputs) == 1 and isinstance(classes, int) and preset != "regression":
            want = 1 if preset == "binary" else classes
            if outputs[0].ndim != 2 or outputs[0].shape[1] != want:
                raise SmokeFailure(
                    f"predict gives shape {outputs[0].shape} but the data has {classes} "
                    f"classes: a {preset} model should give ({n}, {want})",
                    ("model",),
                )

    def save(self) -> None:
        from kerakit.augment import strip_augmentation

        model = self.model
        if self.resolved["augment"] and self.resolved["augment"].get("placement") == "model":
            model = strip_augmentation(model)  # as `kerakit train` saves it
        tolerance = 1e-3 if self.policy.startswith("mixed") else 1e-5
        try:
            check_roundtrip(model, self.folder / "saved", self.resolved["output"]["formats"],
                            self.x, tolerance=tolerance)  # fmt: skip
        except SmokeFailure as exc:
            exc.key = _layer_key(self.resolved["model"], model, exc.layer) or exc.key
            raise


def _layer_key(section: Mapping, model, layer) -> tuple:
    """The recipe key path of a layer of the built model (sequential or functional), or ()."""
    if layer is None:
        return ()
    if "sequential" in section and len(model.layers) == len(section["sequential"]):
        return ("model", "sequential", model.layers.index(layer))
    graph = section.get("functional", {}).get("graph", [])
    for i, node in enumerate(graph):
        if isinstance(node, Mapping) and layer.name in node:
            return ("model", "functional", "graph", i)
    return ()


def _for_smoke(recipe: Recipe, notes: list) -> Recipe:
    """The recipe as the smoke runs it: one epoch, no downloads, on this one machine."""
    train = {**recipe["train"], "epochs": 1}
    if train["distribute"] in ("multi_worker", "tpu"):
        notes.append(f"distribute: {train['distribute']} needs its machines; checked on one device")
        train = {k: v for k, v in train.items() if k != "tpu"} | {"distribute": "none"}
    recipe = recipe.replace("train", train)
    transfer = recipe["model"].get("transfer")
    if transfer:
        transfer = dict(transfer)
        if transfer.get("weights") == "imagenet":
            transfer["weights"] = "none"
            notes.append("model: weights: imagenet replaced by none (no download for a smoke)")
        if transfer.get("fine_tune"):
            transfer["fine_tune"] = {**transfer["fine_tune"], "epochs": 1}
        recipe = recipe.replace("model", {**recipe["model"], "transfer": transfer})
    return recipe


def smoke(recipe: str | os.PathLike | Mapping | Recipe, *, steps: int = STEPS,
          batches: int = BATCHES, overrides=None) -> SmokeResult:  # fmt: skip
    """Run every smoke check on one recipe (module docstring); returns a `SmokeResult`.

    Args:
        recipe: a recipe file (or mapping, or `Recipe`).
        steps: overfit-one-batch steps (default 20).
        batches: training batches in the data slice (default 2).
        overrides: ``KEY=VALUE`` overrides, as ``--set`` takes.
    """
    path = str(recipe) if isinstance(recipe, (str, os.PathLike)) else getattr(recipe, "file", None)
    result = SmokeResult(path or "recipe")
    with tempfile.TemporaryDirectory(prefix="kerakit-smoke-") as tmp:
        run = SmokeRun(recipe, folder=Path(tmp), steps=steps, batches=batches, overrides=overrides)
        result.notes = run.notes
        for name in CHECKS:
            with quiet():
                check = _one_check(run, name)
            result.checks.append(check)
            if check.status != "ok":
                break
        del run
    return result


def _one_check(run: SmokeRun, name: str) -> Check:
    start = time.perf_counter()
    check = Check(name, "ok", 0.0)
    try:
        getattr(run, "load" if name == "recipe" else name)()
    except TrainingInterrupted:  # Ctrl-C while `fit` runs: stop the whole smoke, as train does
        raise
    except RecipeError as exc:
        check.status, check.reason = "INVALID", exc.message
        check.location, check.line = _location(exc.file, exc.line, exc.col, exc.path)
    except SmokeFailure as exc:
        check.status, check.reason = "FAIL", exc.reason
        if exc.key and run.recipe is not None:
            pos = run.recipe.where.at(*exc.key).position()
            file, line, col = (pos[0], None, None) if len(pos) == 1 else (run.recipe.file, *pos)
            check.location, check.line = _location(file, line, col, format_path(exc.key))
    except Exception as exc:  # a KerakitError of the data, or whatever Keras raised
        check.status, check.reason = "FAIL", why(exc)
    check.seconds = time.perf_counter() - start
    return check


def _location(file, line, col, path) -> tuple[str, int | None]:
    where = str(file or "")
    if file and line is not None:
        where += f":{line}" + (f":{col}" if col is not None else "")
    return (f"{where} ({path})" if where and path else where or path or ""), line


# --------------------------------------------------------------------------- the command


def exit_status(results: Iterable[SmokeResult]) -> int:
    """2 when a recipe is invalid, else 1 when one failed a check, else 0."""
    statuses = {r.status for r in results}
    return 2 if "INVALID" in statuses else 1 if "FAIL" in statuses else 0


def format_row(result: SmokeResult, width: int, label: str | None = None) -> str:
    cells = {c.name: f"{c.status} {c.seconds:.1f}s" for c in result.checks}
    return f"{label or result.name:<{width}}  " + "  ".join(
        f"{cells.get(name, '-'):<{max(len(name), 12)}}" for name in CHECKS
    ) + f"  {result.seconds:.1f}s"  # fmt: skip


def header(width: int) -> str:
    return f"{'recipe':<{width}}  " + "  ".join(
        f"{name:<{max(len(name), 12)}}" for name in CHECKS
    ) + "  total"  # fmt: skip


def smoke_command(paths: Iterable[str], *, steps: int | None = None, batches: int | None = None,
                  overrides=None, print_fn=print) -> int:  # fmt: skip
    """`kerakit smoke RECIPE_OR_FOLDER...`: a row per recipe, then one line; the exit status."""
    for flag, value in (("--steps", steps), ("--batches", batches)):
        if value is not None and value < 1:
            raise RecipeError(f"{flag} must be 1 or more, got {value}", file="command line")
    files = recipe_files(paths)
    if not files:
        raise RecipeError("no recipes found (a recipe is a .yaml with `data:` and `model:`)",
                          file=", ".join(map(str, paths)))  # fmt: skip
    start = time.perf_counter()
    import kerakit.smoke.data  # noqa: F401  (TensorFlow: imported once, before the first row)

    names = [f.name for f in files]  # the file names, or the paths where two names are the same
    labels = [n if names.count(n) == 1 else str(f) for n, f in zip(names, files)]
    width = max(len("recipe"), *map(len, labels))
    print_fn(header(width))
    results = []
    for file, label in zip(files, labels):
        result = smoke(file, steps=steps or STEPS, batches=batches or BATCHES, overrides=overrides)
        results.append(result)
        print_fn(format_row(result, width, label))
        for note in result.notes:
            print_fn(f"    note: {note}")
        if not result.passed:
            print_fn(f"    {result.explain()}")
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "FAIL", "INVALID")}
    print_fn(f"smoke: {counts['ok']} passed, {counts['FAIL']} failed, {counts['INVALID']} invalid "
             f"({len(results)} recipes, {time.perf_counter() - start:.1f}s)")  # fmt: skip
    return exit_status(results)
