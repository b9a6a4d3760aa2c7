"""Hyperparameter search from a recipe's `search:` section, on Optuna.

    study, best = kk.search("configs/digits_search.yaml", trials=6)

`search` checks every value of the space against the recipe (each must resolve, with the
line of the search entry when it does not), opens the study (SQLite in the search folder
`output.dir/NAME/search/` by default), runs workers (`workers`: processes of their own,
each training its trials in a process per trial), and writes trials.csv, best.yaml,
pictures and report.md. Running it again continues the same study: finished trials are
kept, an interrupted one resumes from its run folder's backup.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kerakit.errors import KerakitError
from kerakit.recipe import Recipe, load_recipe
from kerakit.recipe.fingerprint import content_hash
from kerakit.search.results import table, trial_rows, write_results
from kerakit.search.study import open_study, storage_url
from kerakit.search.worker import die_with_parent, python_kerakit, run_worker

SEARCH_DIR = "search"
SEARCH_FILE = "search.json"

__all__ = ["search", "search_folder"]


def search_folder(recipe: Recipe) -> Path:
    """`output.dir/NAME/search` (absolute): the same folder every time, so a rerun continues."""
    return (Path(recipe["output"]["dir"]) / recipe.name / SEARCH_DIR).resolve()


def search(recipe: str | os.PathLike | Recipe, *, trials: int | None = None,
           workers: int | None = None, join: str | None = None, overrides=(),
           imports=(), print_fn=print) -> tuple[Any, Any]:  # fmt: skip
    """Run (or continue) the search of a recipe file; returns (the Optuna study, the best
    trial's `Run`, or None when no trial completed). `imports`: code each trial imports
    first, as `kerakit --import` takes it (a recipe's own `imports:` need nothing)."""
    overrides = list(overrides)
    if trials is not None:
        overrides.append(f"search.trials={int(trials)}")
    if isinstance(recipe, Mapping) and not isinstance(recipe, Recipe):
        raise KerakitError(
            "kk.search takes a recipe file (each trial runs it in a process of its own)"
        )
    file = recipe.file if isinstance(recipe, Recipe) else os.fspath(recipe)
    recipe = load_recipe(file, overrides=overrides)
    if "search" not in recipe:
        raise recipe.where.error("has no search: section; add one (docs/search.md)")
    spec = recipe["search"]
    from kerakit.training.space import check_space  # (imports TensorFlow)

    check_space(recipe)
    folder = search_folder(recipe)
    if not (folder / SEARCH_FILE).is_file():  # a new study: every corner must build first
        _build_corners(recipe)
    folder.mkdir(parents=True, exist_ok=True)
    _same_search(recipe, folder)
    url = storage_url(spec, folder, join)
    study = open_study(spec, recipe.name, url, recipe["seed"], worker=None if join else 0)
    deadline = time.time() + spec["timeout"] if spec["timeout"] else None
    command = _train_command(file, overrides, imports)
    n = workers or spec["workers"]
    print_fn(f"search: {folder} (study {recipe.name!r} in {url}), {n} worker(s)")
    if n == 1 or join:
        run_worker(study, spec, command, folder, url, deadline=deadline, print_fn=print_fn)
    else:
        _spawn(file, overrides, imports, n, url, deadline)
    out = write_results(study, spec, folder)
    print_fn(table(trial_rows(study, spec)))
    best = out["best"]
    if best is None:
        print_fn("search: no trial completed yet")
        return study, None
    if not (folder / "best.yaml").is_file() or not Path(best.user_attrs["run_dir"]).is_dir():
        print_fn(f"best: trial {best.number}, {spec['metric']} = {best.value:.6g}, trained "
                 f"in {best.user_attrs.get('run_dir')} on another machine")  # fmt: skip
        return study, None
    print_fn(f"best: trial {best.number}, {spec['metric']} = {best.value:.6g}; "
             f"{folder / 'best.yaml'} (kerakit train it as is)")  # fmt: skip
    from kerakit.runs import load_run  # (TensorFlow: only once there is a best run)

    return study, load_run(best.user_attrs["run_dir"])


def worker_main(file: str, overrides: list[str], imports: list[str], url: str,
                deadline: float | None, index: int, print_fn=print) -> int:  # fmt: skip
    """Worker `index` of `kerakit search --workers N` (the hidden --worker flag)."""
    recipe = load_recipe(file, overrides=overrides)
    spec = recipe["search"]
    study = open_study(spec, recipe.name, url, recipe["seed"], worker=index)
    command = _train_command(file, overrides, imports)
    run_worker(
        study, spec, command, search_folder(recipe), url, deadline=deadline, print_fn=print_fn
    )
    return 0


def _train_command(file, overrides, imports) -> list[str]:
    """`kerakit [--import ...] train RECIPE [--set ...]`: a trial, less its values."""
    code = [
        a for i in imports for a in ("--import", str(Path(i).resolve()) if Path(i).exists() else i)
    ]
    sets = [a for o in overrides if not o.startswith("search.") for a in ("--set", o)]
    return [*python_kerakit(), *code, "train", str(Path(file).resolve()), *sets]


def _spawn(file, overrides, imports, n: int, url: str, deadline: float | None) -> None:
    code = [a for i in imports for a in ("--import", i)]
    args = [*python_kerakit(), *code, "search", str(file), "--worker", "--join", url]
    args += [a for o in overrides for a in ("--set", o)]
    if deadline is not None:
        args += ["--deadline", str(deadline)]
    procs = [subprocess.Popen([*args, "--worker-index", str(i)], preexec_fn=die_with_parent)
             for i in range(n)]  # fmt: skip
    try:
        codes = [p.wait() for p in procs]
    except BaseException:
        for p in procs:
            p.kill()
        raise
    if any(codes):
        raise KerakitError(
            f"search: worker exit codes {codes}; see the trial logs in each run folder"
        )


def _build_corners(recipe: Recipe) -> None:
    """`kerakit check`'s corner builds (the data loaded once); in this process, before
    any trial, so a value Keras refuses exits 2 at its line."""
    from kerakit.data import load_recipe_data
    from kerakit.training.space import check_search

    bundle = None if recipe["data"]["source"] == "arrays" else load_recipe_data(recipe)
    check_search(recipe, bundle, print_fn=lambda *_: None)


def _same_search(recipe: Recipe, folder: Path) -> None:
    """The search folder holds one study: refuse another recipe or space in it."""
    kept = {k: recipe.get(k) for k in recipe if k not in ("search", "output")}
    record = {"recipe": content_hash(kept), "space": content_hash(recipe["search"]["space"]),
              "metric": recipe["search"]["metric"]}  # fmt: skip
    path = folder / SEARCH_FILE
    if path.is_file():
        old = json.loads(path.read_text())
        changed = [k for k in record if old.get(k) != record[k]]
        if changed:
            raise recipe.where.at("search").error(
                f"{folder} holds a search of a different {' and '.join(changed)}; a study "
                "cannot change what it searches. Move that folder away (or give the recipe "
                "another name) to start a new search"
            )
        return
    from kerakit._files import write_json

    write_json(path, record)
    if sys.platform == "win32":  # pragma: no cover
        raise KerakitError("kerakit search needs a POSIX system (it locks files with flock)")
