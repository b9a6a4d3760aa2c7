"""Run folders: where a run's files go, how an interrupted run is found again, and the
small JSON/CSV files kept in them (run.json, env.json, history.csv)."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kerakit.errors import ResumeError
from kerakit.recipe import Recipe

RUN_FILE = "run.json"

# --------------------------------------------------------------------------- run folders


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def write_run_json(path: Path, value: Any) -> None:
    from kerakit.saving import write_text

    write_text(path, json.dumps(value, indent=2, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _changed_sections(old: Mapping, new: Mapping) -> list[str]:
    keys = ("data", "augment", "model", "compile")
    return [k for k in keys if json.dumps(old.get(k), sort_keys=True, default=str)
            != json.dumps(new.get(k), sort_keys=True, default=str)]  # fmt: skip


def kept_recipe(recipe: Recipe) -> dict:
    """What recipe.resolved.yaml keeps: the resolved recipe with the files it reads
    named by absolute path. Relative ones were relative to the recipe's folder, which
    the run folder is not: `kerakit evaluate RUN` and a rerun of the kept recipe must
    find them."""
    from kerakit.recipe.data import data_path, source_kind

    def absolute(text: str) -> str:
        return str(data_path(text, recipe.base_dir).resolve())

    data = recipe.to_dict()
    section = data.get("data") or {}
    if section.get("source") is not None:
        kind, arg = source_kind(section["source"])
        if arg is not None and kind != "tfds":
            section["source"] = f"{kind}:{absolute(arg)}"
    if section.get("data_dir"):
        section["data_dir"] = absolute(section["data_dir"])
    return data  # transfer weights files are absolute already (transfer_spec)


def _stored_recipe(path: Path) -> dict:
    from kerakit.recipe.reader import load_yaml

    file = path / "recipe.resolved.yaml"
    if not file.is_file():
        return {}
    value, _ = load_yaml(file.read_bytes(), str(file))
    return value or {}


def run_folder(recipe: Recipe, *, resume: str | os.PathLike | None = None, new: bool = False,
               print_fn=print, create: bool = True) -> tuple[Path, bool]:  # fmt: skip
    """The run folder to use and whether it resumes an interrupted run.

    With `resume`, that folder (its recipe must match). Otherwise the newest
    unfinished run of the same recipe is resumed (unless `new`), else a new
    folder ``output.dir/NAME/YYYYmmdd-HHMMSS`` is made.
    """
    base = Path(recipe["output"]["dir"]) / recipe.name
    if resume is not None:
        path = Path(resume)
        info = read_json(path / RUN_FILE)
        if not info:
            raise ResumeError(
                f"{path} is not a kerakit run folder (no {RUN_FILE}); pass the folder `kerakit train` printed"
            )
        if info.get("fingerprint") != recipe.fingerprint():
            changed = _changed_sections(_stored_recipe(path), kept_recipe(recipe))
            raise ResumeError(
                f"cannot resume {path}: the recipe changed since that run started "
                f"(in: {', '.join(changed) or 'its resolved values'}); undo the change, "
                "or start a new run without --resume"
            )
        return path, True
    if not new and base.is_dir():
        for path in sorted(base.iterdir(), reverse=True):
            info = read_json(path / RUN_FILE)
            if (
                info.get("status") in ("running", "interrupted")
                and info.get("fingerprint") == recipe.fingerprint()
            ):
                if (path / "backup").is_dir() and any((path / "backup").iterdir()):
                    print_fn(f"resuming the interrupted run {path} (pass --new to start afresh)")
                    return path, True
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = base / stamp
    n = 1
    while path.exists():
        n += 1
        path = base / f"{stamp}-{n}"
    if create:  # (not on a non-chief worker, which writes to a temporary folder)
        path.mkdir(parents=True)
    return path, False


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


def trim_history(csv_path: Path, keep_below: int) -> None:
    if not csv_path.is_file():
        return
    lines = csv_path.read_text().splitlines()
    if not lines:
        return
    kept = [lines[0]] + [
        line
        for line in lines[1:]
        if line.split(",", 1)[0].isdigit() and int(line.split(",", 1)[0]) < keep_below
    ]
    if len(kept) != len(lines):
        from kerakit.saving import write_text

        write_text(csv_path, "\n".join(kept) + "\n")


def read_history(path: Path, fallback: dict) -> dict:
    """The whole run's history: history.csv (which spans resumes) when present."""
    csv = path / "history.csv"
    if csv.is_file():
        import csv as csvmod

        with open(csv, newline="") as f:
            rows = list(csvmod.DictReader(f))
        if rows:
            out: dict[str, list] = {}
            for row in rows:
                for k, v in row.items():
                    try:
                        out.setdefault(k, []).append(float(v))
                    except (TypeError, ValueError):
                        out.setdefault(k, []).append(v)
            return out
    _write_history_csv(csv, fallback)
    return {k: [float(v) for v in vs] for k, vs in fallback.items()}


def _write_history_csv(path: Path, history: dict) -> None:
    from kerakit.saving import write_text

    keys = list(history)
    n = max((len(v) for v in history.values()), default=0)
    lines = [",".join(["epoch", *keys])]
    for i in range(n):
        lines.append(",".join([str(i)] + [repr(float(history[k][i])) for k in keys]))
    write_text(path, "\n".join(lines) + "\n")
