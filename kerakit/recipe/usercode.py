"""Users' own code, named by the recipe: `imports:` modules and `.py` files that register
layers, losses, metrics, callbacks, activations or schedules with Keras.

```yaml
imports: [antirectifier.py, mypkg.losses]   # files relative to the recipe, or modules
model:
  sequential:
    - Antirectifier                         # registered by antirectifier.py
```

A recipe is trusted as much as the code it names: `check` and `train` import it
(and say so) before building. A run folder records each file with its SHA-256
(`code.json`); `evaluate`, `predict`, `kk.load_model(RUN)` and a resume import the
same files again, and refuse when one changed or is missing. A model file from
elsewhere never imports anything. Validation here imports nothing (no TensorFlow).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path
from typing import Any

from kerakit._files import sha256_file
from kerakit.errors import NOWHERE, KerakitError, RecipeError, ResumeError, Where
from kerakit.recipe import schema as S

CODE_FILE = "code.json"  # in a run folder: each imported file with its SHA-256
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_IMPORTED: dict[tuple[str, str], Any] = {}  # (file, sha256) -> module: each file runs once


def resolve_imports(value: Any, where: Where, base_dir: str | os.PathLike) -> list[str]:
    """Check `imports:`: a list of `.py` files (relative to the recipe) or module names."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise where.error(
            f"expected a list of .py files or module names, got {S.type_name(value)} {S.show(value)}"
        )
    out = []
    for i, entry in enumerate(value):
        at = where.at(i)
        S.check_str(entry, at, "a .py file or a module name")
        if entry.endswith(".py"):
            path = Path(base_dir) / entry
            if not path.is_file():
                raise at.error(
                    f"no such file: {path} (a .py file is read from the recipe's folder)"
                )
        elif not _MODULE.fullmatch(entry):
            raise at.error(
                f"{entry!r} is neither a .py file nor a module name such as mypkg.layers"
            )
        out.append(entry)
    return out


def absolute_imports(entries: list[str], base_dir: str | os.PathLike) -> list[str]:
    """The entries with `.py` files named by absolute path (for a run folder's recipe)."""
    return [str((Path(base_dir) / e).resolve()) if e.endswith(".py") else e for e in entries]


def import_code(
    entries: list[str], base_dir: str | os.PathLike, where: Where = NOWHERE
) -> list[dict]:
    """Import each entry (once per file content per process); returns what was imported:
    ``[{"import": entry, "file": path, "sha256": ...}]``."""
    records = []
    for i, entry in enumerate(entries):
        at = where.at(i)
        try:
            if entry.endswith(".py"):
                path = (Path(base_dir) / entry).resolve()
                digest = sha256_file(path)
                if (str(path), digest) not in _IMPORTED:
                    _IMPORTED[(str(path), digest)] = _import_file(path, digest)
            else:
                module = importlib.import_module(entry)
                path = Path(getattr(module, "__file__", "") or "")
                digest = sha256_file(path) if path.is_file() else None
        except RecipeError:
            raise
        except Exception as exc:  # the user's code failed: say which file and what it said
            first = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise at.error(f"importing {entry!r} failed: {type(exc).__name__}: {first}") from None
        records.append({"import": entry, "file": str(path) if path.name else None,
                        "sha256": digest})  # fmt: skip
    return records


def _import_file(path: Path, digest: str):
    name = f"kerakit_user_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    folder = str(path.parent)
    added = folder not in sys.path
    if added:  # the file may import its neighbours
        sys.path.append(folder)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def import_recorded(records: list[dict], run_dir: str | os.PathLike, *, trusted: bool = False
                    ) -> list[dict]:  # fmt: skip
    """Import again what a run folder's `code.json` names, after checking each file is
    there, unchanged, and outside the run folder (a run folder from elsewhere must not
    bring code of its own, unless trusted)."""
    run_dir = Path(run_dir).resolve()
    entries = []
    for record in records:
        entry, file, digest = record.get("import"), record.get("file"), record.get("sha256")
        if not isinstance(entry, str):
            raise KerakitError(
                f"{run_dir}/code.json is not one kerakit wrote; remove it or retrain"
            )
        if file and digest:
            path = Path(file)
            where = f"{run_dir} was trained with code from {path}"
            if not path.is_file():
                raise KerakitError(f"{where}, which is not there now; put it back (or pass "
                                   "--import with its new place)")  # fmt: skip
            if run_dir in path.resolve().parents and not trusted:
                raise KerakitError(f"{where}, inside the run folder itself: code that travels "
                                   "with a run folder runs only with --unsafe (trusted=True)")  # fmt: skip
            now = sha256_file(path)
            if now != digest:
                raise KerakitError(
                    f"{where}, which changed since (sha256 {digest[:12]}... is now "
                    f"{now[:12]}...); restore it, or retrain with the new code"
                )
            entries.append(str(path) if entry.endswith(".py") else entry)
        else:
            entries.append(entry)
    return import_code(entries, run_dir)


def check_unchanged(recorded: list[dict], now: list[dict], run_dir: str | os.PathLike) -> None:
    """Refuse to resume a run whose code changed since it started."""
    before = {r.get("import"): r.get("sha256") for r in recorded}
    for record in now:
        old = before.get(record["import"], record["sha256"])
        if old != record["sha256"]:
            raise ResumeError(
                f"cannot resume {run_dir}: {record['import']} changed since the run started "
                f"(sha256 {str(old)[:12]}... is now {str(record['sha256'])[:12]}...); restore "
                "it, or start a new run with --new"
            )
