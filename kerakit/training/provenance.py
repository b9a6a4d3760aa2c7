"""A run's provenance: what exactly it read and ran on, recorded in run.json.

    provenance(resolved, bundle)
    # {"data": {"hash": "9f2c...", "method": "content", "files": 3, "bytes": 51234},
    #  "recipe": "1b7e...", "code": "c0de...",
    #  "versions": {"python": "3.11.7", "tensorflow": "2.21.0", "keras": "3.15.1", ...},
    #  "git": {"commit": "4e1f...", "dirty": false}}

run.json's `fingerprint` (recipe/fingerprint.py) stays what decides a resume; this is
the fuller record `kerakit diff` shows and `kerakit reproduce` checks before training
again. The data is hashed by content (files, streamed SHA-256), by name, version and
split (tfds and the bundled sets), or by bytes (arrays given from Python). Hashing
stops reading contents after `CONTENT_BUDGET` bytes in all: the files beyond it count
by name, size and modification time (`method: "content+stat"`), so a folder of a
million images costs seconds, not minutes.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib.metadata
import subprocess
import sys
from pathlib import Path
from typing import Any

from kerakit.recipe import Recipe
from kerakit.recipe.data import data_path, source_kind
from kerakit.recipe.fingerprint import content_hash

CONTENT_BUDGET = 2 * 1024**3  # bytes of file contents read per run; the rest by size+mtime
# The packages recorded besides Python: always the first five, the others when installed.
PACKAGES = ("tensorflow", "keras", "kerakit", "numpy", "tensorflow-datasets", "keras-hub",
            "scikit-learn", "mlxtend", "pandas", "pillow", "optuna", "tensorboard",
            "mlflow-skinny", "mlflow")  # fmt: skip
# Which package serves a source without a path.
BUNDLED = {"digits": "scikit-learn", "mnist_5k": "mlxtend", "tfds": "tensorflow-datasets"}
GIT_TIMEOUT = 5.0


def provenance(recipe: Recipe, bundle: Any = None) -> dict:
    """The provenance record of a run of the resolved `recipe` (`bundle`: its loaded data,
    read only for arrays given from Python)."""
    from kerakit.training.runfolder import kept_recipe

    return {
        "data": data_hash(recipe, bundle),
        "recipe": content_hash(kept_recipe(recipe)),
        "code": content_hash([[r.get("import"), r.get("sha256")] for r in recipe.code]),
        "versions": versions(),
        **({"git": git} if (git := git_state(recipe.file)) else {}),
    }


def versions() -> dict[str, str]:
    """Python's version and the installed versions of the packages that matter."""
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    if "kerakit" not in out:  # a source checkout that is not installed
        from kerakit import __version__

        out["kerakit"] = __version__
    return out


def data_hash(recipe: Recipe, bundle: Any = None) -> dict:
    """The hash of the data a run of `recipe` reads: {"hash", "method", ...}."""
    section = recipe["data"]
    kind, arg = source_kind(section["source"])
    if kind == "arrays":
        return _arrays_hash(bundle)
    if kind in BUNDLED:  # by name, version and split
        what = {"source": section["source"], "package": BUNDLED[kind],
                "version": versions().get(BUNDLED[kind]),
                "split": section.get("split"), "data_dir": section.get("data_dir")}  # fmt: skip
        return {"hash": content_hash(what), "method": "name"}
    base = recipe.base_dir
    if kind == "tfrecord" and isinstance(section.get("split"), dict):
        patterns = [v for v in section["split"].values() if v]
    else:
        patterns = [arg]
    files: list[Path] = []
    for pattern in patterns:
        path = data_path(pattern, base)
        if kind == "tfrecord" and any(c in str(path) for c in "*?["):
            files += [Path(p) for p in glob.glob(str(path), recursive=True)]
        elif path.is_dir():
            files += [p for p in path.rglob("*") if p.is_file()]
        elif path.exists():
            files.append(path)
    root = data_path(arg, base) if kind != "tfrecord" else None
    return files_hash(sorted(set(files)), root)


def files_hash(files: list[Path], root: Path | None = None, budget: int = CONTENT_BUDGET) -> dict:
    """SHA-256 over the files' names (relative to `root`) and contents, streamed; past
    `budget` bytes of contents, over names, sizes and modification times."""
    digest = hashlib.sha256()
    read = total = 0
    method = "content"
    for file in files:
        stat = file.stat()
        name = file.relative_to(root).as_posix() if root and root.is_dir() else file.name
        digest.update(name.encode() + b"\0")
        total += stat.st_size
        if read + stat.st_size <= budget:
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            read += stat.st_size
        else:
            method = "content+stat"
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    if not files:
        method = "missing"
    return {"hash": digest.hexdigest(), "method": method, "files": len(files), "bytes": total}


def _arrays_hash(bundle: Any) -> dict:
    """Arrays given from Python: their bytes, split by split (within the content budget)."""
    if bundle is None:
        return {"hash": None, "method": "arrays (not in the run folder)"}
    if not getattr(bundle, "in_memory", False):  # a large (or endless) data set: not read twice
        return {"hash": None, "method": "not hashed (a large data set given from Python)"}
    import numpy as np

    digest = hashlib.sha256()
    read = 0
    for split in ("train", "val", "test"):
        ds = getattr(bundle, split, None)
        digest.update(split.encode())
        if ds is None or not hasattr(ds, "as_numpy_iterator"):
            continue
        for element in ds.batch(4096).as_numpy_iterator():
            for part in _leaves(element):
                block = np.ascontiguousarray(part).tobytes()
                read += len(block)
                if read > CONTENT_BUDGET:
                    return {"hash": None, "method": "arrays (over the hashing budget)"}
                digest.update(block)
    return {"hash": digest.hexdigest(), "method": "bytes", "bytes": read}


def _leaves(value: Any):
    if isinstance(value, dict):
        for key in sorted(value):
            yield from _leaves(value[key])
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def git_state(recipe_file: Any) -> dict | None:
    """{"commit", "dirty"} of the git checkout holding the recipe file, or None.

    Untracked files do not make the tree dirty (run folders are usually untracked)."""
    if not recipe_file:
        return None
    folder = str(Path(recipe_file).resolve().parent)

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", "-C", folder, *args], capture_output=True, text=True,
                                  timeout=GIT_TIMEOUT)  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def mismatches(old: dict, new: dict) -> list[str]:
    """Why a run with provenance `new` cannot match one with `old`: the data, the versions."""
    out = []
    old_data, new_data = old.get("data") or {}, new.get("data") or {}
    if old_data.get("hash") and old_data.get("hash") != new_data.get("hash"):
        out.append(f"the data changed (hash {old_data['hash'][:12]} then, "
                   f"{str(new_data.get('hash'))[:12]} now)")  # fmt: skip
    for name, value in (old.get("versions") or {}).items():
        now = (new.get("versions") or {}).get(name)
        if now != value:
            out.append(f"{name} {value} then, {now or 'not installed'} now")
    if old.get("code") and old.get("code") != new.get("code"):
        out.append("the imported user code changed")
    return out
