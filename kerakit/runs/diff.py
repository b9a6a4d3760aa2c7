"""What differs between two runs (`kerakit diff RUN_A RUN_B`): the resolved recipes key by
key, the data and code hashes, the versions, the git commits, and the metrics side by side.

    d = diff_runs("runs/digits/20261205-1015", "runs/digits/20261205-1030")
    d["recipe"]      # [("seed", 1, 2)]
    print(format_diff(d))
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from kerakit._files import read_json
from kerakit.errors import KerakitError
from kerakit.recipe.fingerprint import changes
from kerakit.recipe.reader import load_yaml
from kerakit.report.history import HISTORY_FILE, history_columns
from kerakit.training.runfolder import ENV_FILE, METRICS_FILE, RECIPE_FILE, RUN_FILE

ABSENT = "(absent)"
_STEP = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")
_ENV_VERSIONS = ("python", "tensorflow", "keras", "kerakit", "numpy")  # before provenance


def stored_recipe(folder: Path) -> dict:
    """A run folder's resolved recipe as plain values ({} when it has none)."""
    file = folder / RECIPE_FILE
    if not file.is_file():
        return {}
    value, _ = load_yaml(file.read_bytes(), str(file))
    return value or {}


def stored_versions(folder: Path, info: dict | None = None) -> dict:
    """The versions a run ran on: run.json's provenance, else env.json (older runs)."""
    info = read_json(folder / RUN_FILE) if info is None else info
    versions = (info.get("provenance") or {}).get("versions")
    if versions:
        return dict(versions)
    env = read_json(folder / ENV_FILE) if (folder / ENV_FILE).is_file() else {}
    return {k: env[k] for k in _ENV_VERSIONS if k in env}


def value_at(value: Any, path: str) -> Any:
    """The value at a key path ("model.sequential[0].Dense.units"), or ABSENT."""
    for key, index in _STEP.findall(path):
        if index:
            if not isinstance(value, list) or int(index) >= len(value):
                return ABSENT
            value = value[int(index)]
        elif isinstance(value, dict) and key in value:
            value = value[key]
        else:
            return ABSENT
    return value


def _folder(path: str | os.PathLike) -> Path:
    folder = Path(path)
    if not (folder / RUN_FILE).is_file():
        raise KerakitError(f"{path}: not a run folder (no {RUN_FILE}); `kerakit runs` lists them")
    return folder


def _last_epoch(folder: Path) -> dict:
    history = history_columns(folder / HISTORY_FILE)
    return {k: v[-1] for k, v in history.items()
            if k not in ("epoch", "stage") and v and isinstance(v[-1], float)}  # fmt: skip


def _side_by_side(a: dict, b: dict) -> list[tuple]:
    rows = []
    for name in [*a, *(k for k in b if k not in a)]:
        x, y = a.get(name), b.get(name)
        numbers = isinstance(x, (int, float)) and isinstance(y, (int, float))
        rows.append((name, x, y, y - x if numbers else None))
    return rows


def _version_keys(va: dict, vb: dict, both: bool) -> list[str]:
    """The packages to compare: all when both runs record their provenance, else those both
    name (env.json of an earlier kerakit names five)."""
    if both:
        return [*va, *(k for k in vb if k not in va)]
    return [k for k in va if k in vb]


def diff_runs(a: str | os.PathLike, b: str | os.PathLike) -> dict:
    """What differs between run folders `a` and `b`.

    Returns:
        {"a", "b": the folders, "recipe": [(key path, value in a, value in b)],
         "data", "code": (hash in a, hash in b), "versions": [(package, in a, in b)]
         (those that differ), "git": (commit/dirty in a, in b), "metrics": [(name, a, b,
         b - a)] (test metrics), "last_epoch": the same for the history's last epoch}.
    """
    fa, fb = _folder(a), _folder(b)
    ra, rb = stored_recipe(fa), stored_recipe(fb)
    paths = changes(ra, rb, limit=10**9)
    ia, ib = read_json(fa / RUN_FILE), read_json(fb / RUN_FILE)
    pa, pb = ia.get("provenance") or {}, ib.get("provenance") or {}
    va, vb = stored_versions(fa, ia), stored_versions(fb, ib)
    ma = read_json(fa / METRICS_FILE) if (fa / METRICS_FILE).is_file() else {}
    mb = read_json(fb / METRICS_FILE) if (fb / METRICS_FILE).is_file() else {}
    return {
        "a": fa,
        "b": fb,
        "recipe": [(p, value_at(ra, p), value_at(rb, p)) for p in paths],
        "data": ((pa.get("data") or {}).get("hash"), (pb.get("data") or {}).get("hash")),
        "code": (pa.get("code"), pb.get("code")),
        "versions": [
            (k, va.get(k), vb.get(k))
            for k in _version_keys(va, vb, both=bool(pa and pb))
            if va.get(k) != vb.get(k)
        ],  # fmt: skip
        "git": (pa.get("git"), pb.get("git")),
        "metrics": _side_by_side(ma or {}, mb or {}),
        "last_epoch": _side_by_side(_last_epoch(fa), _last_epoch(fb)),
    }


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _hashes(label: str, pair: tuple) -> str:
    x, y = pair
    if x is None and y is None:
        return f"{label}: not recorded (runs of an earlier kerakit)"
    if x is None or y is None:
        return f"{label}: not recorded in {'A' if x is None else 'B'} (a run of an earlier kerakit)"
    if x == y:
        return f"{label}: same ({str(x)[:12]})"
    return f"{label}: differs ({_show(x)[:12]} -> {_show(y)[:12]})"


def _git(value: dict | None) -> str:
    if not value:
        return "-"
    return value.get("commit", "?")[:12] + (" (dirty)" if value.get("dirty") else "")


def format_diff(d: dict) -> str:
    """`diff_runs`'s result as the text `kerakit diff` prints."""
    lines = [f"A: {d['a']}", f"B: {d['b']}", ""]
    n = len(d["recipe"])
    lines.append(
        "recipe: the same" if not n else f"recipe: {n} key{' differs' if n == 1 else 's differ'}"
    )
    lines += [f"  {p}: {_show(x)} -> {_show(y)}" for p, x, y in d["recipe"]]
    lines.append(_hashes("data", d["data"]))
    lines.append(_hashes("code", d["code"]))
    if d["versions"]:
        lines.append("versions: " + ", ".join(f"{k} {x or '-'} -> {y or '-'}"
                                              for k, x, y in d["versions"]))  # fmt: skip
    else:
        lines.append("versions: the same")
    ga, gb = d["git"]
    if ga or gb:
        lines.append(
            "git: " + ("the same " + _git(ga) if ga == gb else f"{_git(ga)} -> {_git(gb)}")
        )
    for title, rows in (("test metrics", d["metrics"]), ("last epoch", d["last_epoch"])):
        if not rows:
            continue
        width = max(len(r[0]) for r in rows)
        lines += ["", f"{title}:".ljust(width + 4) + f"{'A':>12}  {'B':>12}  {'B - A':>12}"]
        for name, x, y, delta in rows:
            change = "-" if delta is None else f"{delta:+.6g}"
            lines.append(f"  {name.ljust(width)}  {_show(x):>12}  {_show(y):>12}  {change:>12}")
    return "\n".join(lines)
