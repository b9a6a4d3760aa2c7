"""Run folders: the name of every file in one, where a run's folder goes, how an interrupted
run is found again, and the small JSON files kept in them.

    runs/NAME/YYYYmmdd-HHMMSS/
        run.json  recipe.resolved.yaml  env.json  classes.json  normalization.json
        history.csv  metrics.json  evaluate.json  best.keras  backup/  model.keras ...
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from kerakit._files import read_json, write_json
from kerakit.errors import ResumeError, TrainingDiverged, TrainingInterrupted
from kerakit.recipe import Recipe
from kerakit.recipe.data import data_path, source_kind
from kerakit.recipe.fingerprint import changed_sections, refuse_resume
from kerakit.recipe.reader import load_yaml
from kerakit.recipe.usercode import CODE_FILE as CODE_FILE  # re-exported: a run folder file
from kerakit.recipe.usercode import absolute_imports
from kerakit.report.history import HISTORY_FILE, history_columns, write_history

# The files of a run folder (model files: kerakit.saving.save.FORMATS; pictures: report.RUN_IMAGES)
RUN_FILE = "run.json"  # status, fingerprint, start and end
RECIPE_FILE = "recipe.resolved.yaml"  # the resolved recipe, data files by absolute path
ENV_FILE = "env.json"  # versions, devices, seed, command
CLASSES_FILE = "classes.json"
NORMALIZATION_FILE = "normalization.json"  # data.normalize's mean and std
INPUTS_FILE = "inputs.json"  # the raw training inputs' value range (for predict on image files)
METRICS_FILE = "metrics.json"  # test metrics
EVALUATE_FILE = "evaluate.json"  # what `kerakit evaluate RUN` measured
BEST_MODEL = "best.keras"  # ModelCheckpoint's default
BACKUP_DIR = "backup"  # crash-safe backups (ckpt-NNNNNN.npz + .json)
TENSORBOARD_DIR = "logs"
STAGE1_FILE = "stage1.json"  # a two-stage transfer run: stage 1 done, its epochs
STAGE1_WEIGHTS = "stage1.weights.h5"
STAGE2_BACKUP_DIR = "backup-stage2"
FEATURES_DIR = "features"  # cached backbone features of stage 1
LOCK_FILE = ".lock"  # held by the process training in the folder


def write_run_json(path: Path, value: Any) -> None:
    """Write one of a run folder's JSON files (NumPy values as plain numbers)."""
    write_json(path, value)


def failure(exc: BaseException) -> dict:
    """What run.json records of a run that raised `exc`: `diverged`, or `interrupted` (which
    a later `kerakit train` resumes), with the error when it was neither a stop nor a
    divergence (`kerakit runs` lists that run as failed)."""
    if isinstance(exc, TrainingDiverged):
        return {"status": "diverged"}
    if isinstance(exc, (TrainingInterrupted, KeyboardInterrupt, SystemExit)):
        return {"status": "interrupted"}
    return {"status": "interrupted", "error": f"{type(exc).__name__}: {exc}"[:500]}


def kept_recipe(recipe: Recipe) -> dict:
    """What recipe.resolved.yaml keeps: the resolved recipe with the files it reads
    named by absolute path. Relative ones were relative to the recipe's folder, which
    the run folder is not: `kerakit evaluate RUN` and a rerun of the kept recipe must
    find them."""

    def absolute(text: str) -> str:
        return str(data_path(text, recipe.base_dir).resolve())

    data = recipe.to_dict()
    section = data.get("data") or {}
    if section.get("source") is not None:
        kind, arg = source_kind(section["source"])
        if arg is not None and kind != "tfds":
            section["source"] = f"{kind}:{absolute(arg)}"
        if kind == "tfrecord" and isinstance(section.get("split"), dict):  # globs of files
            section["split"] = {k: v and absolute(v) for k, v in section["split"].items()}
    if section.get("data_dir"):
        section["data_dir"] = absolute(section["data_dir"])
    if data.get("imports"):
        data["imports"] = absolute_imports(data["imports"], recipe.base_dir)
    return data  # transfer weights files are absolute already (recipe.transfer)


def _stored_recipe(path: Path) -> dict:
    file = path / RECIPE_FILE
    if not file.is_file():
        return {}
    value, _ = load_yaml(file.read_bytes(), str(file))
    return value or {}


def run_folder(recipe: Recipe, *, resume: str | os.PathLike | None = None, new: bool = False,
               print_fn=print, create: bool = True,
               at: str | os.PathLike | None = None) -> tuple[Path, bool]:  # fmt: skip
    """The run folder to use and whether it resumes an interrupted run.

    With `resume`, that folder (its recipe must match). With `at`, exactly that
    folder: resumed when it holds a run, else made. Otherwise the newest
    unfinished run of the same recipe is resumed (unless `new`), else a new
    folder ``output.dir/NAME/YYYYmmdd-HHMMSS`` is made.
    """
    base = Path(recipe["output"]["dir"]) / recipe.name
    check_output_dir(recipe)
    if at is not None and not (Path(at) / RUN_FILE).is_file():
        try:
            Path(at).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ResumeError(f"cannot make the run folder {at}: {exc.strerror or exc}") from None
        return Path(at), False
    resume = at if at is not None else resume
    if resume is not None:
        path = Path(resume)
        info = read_json(path / RUN_FILE)
        if not info:
            raise ResumeError(
                f"{path} is not a kerakit run folder (no {RUN_FILE}); pass the folder `kerakit train` printed"
            )
        if info.get("fingerprint") != recipe.fingerprint():
            raise refuse_resume(
                str(path), changed_sections(_stored_recipe(path), kept_recipe(recipe))
            )
        return path, True
    if not new and base.is_dir():
        for path in sorted(base.iterdir(), reverse=True):
            info = read_json(path / RUN_FILE)
            if (
                info.get("status") in ("running", "interrupted")
                and info.get("fingerprint") == recipe.fingerprint()
            ):
                if (path / BACKUP_DIR).is_dir() and any((path / BACKUP_DIR).iterdir()):
                    print_fn(f"resuming the interrupted run {path} (pass --new to start afresh)")
                    return path, True
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 10_000):
        path = base / (stamp if n == 1 else f"{stamp}-{n}")
        if not create:  # (a non-chief worker writes to a temporary folder instead)
            if not path.exists():
                return path, False
            continue
        try:
            path.mkdir(parents=True)  # not exist_ok: two trainers never share a new folder
            return path, False
        except FileExistsError:
            continue
        except OSError as exc:
            raise recipe.where.at("output", "dir").error(
                f"cannot make the run folder {path}: {exc.strerror or exc}; set output.dir to a "
                "folder you can write to"
            ) from None
    raise ResumeError(f"{base} has too many runs started in the second {stamp}")


class RunLock:
    """An OS-level lock on a run folder, held while a process trains in it.

    It dies with its process (`flock`), so a kill -9 never leaves a folder locked;
    a second trainer of the same folder is refused, naming the holder. Where the
    OS has no `flock` (Windows), runs are not locked.
    """

    def __init__(self, path: Path):
        self.path = Path(path) / LOCK_FILE
        self._file = None

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held until release)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read(200).strip() or "another process"
            handle.close()
            raise ResumeError(
                f"{self.path.parent} is in use by {holder}: two trainers cannot share a run "
                "folder; wait for it to end (or stop it), or start a new run with --new"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"kerakit process {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self._file.close()  # closing drops the flock
            self._file = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def clean_partial_writes(path: Path) -> list[Path]:
    """Remove what killed atomic writes left behind (`.tmp-*`, `.old-*`); returns them.
    Call it holding the run folder's lock: no writer of this run is alive then."""
    removed = []
    for stray in [*path.rglob(".tmp-*"), *path.rglob(".old-*")]:
        if stray.is_dir():
            shutil.rmtree(stray, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                stray.unlink()
        removed.append(stray)
    return removed


def check_output_dir(recipe: Recipe) -> None:
    """Refuse an `output.dir` that is a file, or sits under one (what `train` would fail on)."""
    folder = Path(recipe["output"]["dir"]).absolute()
    for parent in [folder, *folder.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise recipe.where.at("output", "dir").error(
                    f"{parent} is a file, not a folder; set output.dir to a folder"
                )
            return


def environment(recipe: Recipe, command, policy: str, strategy=None) -> dict:
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
        "global_batch_size": recipe["data"]["batch_size"]
        * getattr(strategy, "num_replicas_in_sync", 1),
        "command": list(command) if command else sys.argv,
        "cwd": os.getcwd(),
    }


def read_history(path: Path, fallback: dict) -> dict:
    """The whole run's history: history.csv (which spans resumes) when it has rows, else
    `fallback` (Keras's own, written to history.csv so the folder always has one)."""
    columns = history_columns(path / HISTORY_FILE)
    if columns and any(columns.values()):
        return columns
    write_history(path / HISTORY_FILE, fallback)
    return {k: [float(v) for v in vs] for k, vs in fallback.items()}
