"""The runs under an output folder, as rows of a table (`kerakit runs`).

    rows = list_runs("runs", name="digits*", sort="accuracy")
    print(format_table(rows, "runs"))
    # run                         name    started              status       epochs  accuracy  loss    duration
    # digits/20261205-101500      digits  2026-12-05T10:15:00  complete     2       0.9100    0.3012  41s

A run's status comes from its run.json: `complete`, `diverged`, `interrupted` (stopped
by a signal, resumable), `failed` (an error that was neither) and `running`; a run that
says `running` while no process holds its lock was killed (`killed`). Run folders of
earlier kerakit versions list too, what they lack shown as "-".
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from kerakit._files import read_json
from kerakit.report.compare import lower_is_better, plot_runs
from kerakit.report.history import HISTORY_FILE, history_columns
from kerakit.training.runfolder import (
    BACKUP_DIR,
    FEATURES_DIR,
    LOCK_FILE,
    METRICS_FILE,
    RUN_FILE,
    STAGE2_BACKUP_DIR,
)

STATUSES = ("complete", "interrupted", "diverged", "failed", "killed", "running")
# Folders under an output folder that hold no runs of their own (MLflow keeps copies of
# run.json among its artifacts).
NOT_RUNS = {"mlruns", BACKUP_DIR, STAGE2_BACKUP_DIR, FEATURES_DIR}
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"


@dataclass
class RunRow:
    """One run folder, as `kerakit runs` lists it."""

    path: Path
    name: str | None
    started: str | None
    status: str
    epochs: int | None
    metrics: dict = field(default_factory=dict)  # test metrics (metrics.json)
    duration: float | None = None  # seconds, start to end (or to its last write)
    error: str | None = None
    history: dict = field(default_factory=dict, repr=False)


def find_runs(root: str | os.PathLike) -> list[Path]:
    """Every run folder (a folder holding run.json) under `root`, `root` itself included."""
    found = []
    for folder, dirs, files in os.walk(root):
        if RUN_FILE in files:
            found.append(Path(folder))
            dirs[:] = []  # a run folder holds no runs
        else:
            dirs[:] = sorted(d for d in dirs if d not in NOT_RUNS and not d.startswith("."))
    return found


def lock_held(folder: Path) -> bool | None:
    """Whether a process holds the run folder's lock (None where the OS cannot say)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    try:
        handle = open(folder / LOCK_FILE, encoding="utf-8")  # noqa: SIM115 (closed below)
    except OSError:  # released locks are removed; a killed process leaves its file unlocked
        return False
    with handle:  # a shared lock held for microseconds: the probe never waits
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def run_status(folder: Path, info: dict) -> str:
    """The status `kerakit runs` shows for a run folder with run.json `info`."""
    status = info.get("status")
    if status == "interrupted" and info.get("error"):
        return "failed"
    if status == "running" and lock_held(folder) is False:
        return "killed"
    return status or "-"


def _seconds(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return time.mktime(time.strptime(text, TIME_FORMAT))
    except (TypeError, ValueError):
        return None


def read_row(folder: str | os.PathLike) -> RunRow:
    """One run folder's row: what its run.json, history.csv and metrics.json say."""
    folder = Path(folder)
    info = read_json(folder / RUN_FILE)
    history = history_columns(folder / HISTORY_FILE)
    epochs = len(next(iter(history.values()))) if history else None
    status = run_status(folder, info)
    start = _seconds(info.get("started"))
    end = _seconds(info.get("finished"))
    if end is None and start is not None:  # unfinished: up to its last write
        stamps = [p.stat().st_mtime for p in (folder / HISTORY_FILE, folder / RUN_FILE)
                  if p.is_file()]  # fmt: skip
        end = max(stamps, default=None)
    metrics = read_json(folder / METRICS_FILE) if (folder / METRICS_FILE).is_file() else {}
    return RunRow(
        path=folder,
        name=info.get("name"),
        started=info.get("started"),
        status=status,
        epochs=epochs,
        metrics={k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float))},
        duration=None if start is None or end is None else max(0.0, end - start),
        error=info.get("error"),
        history=history,
    )


def metric_value(row: RunRow, metric: str) -> float | None:
    """`metric` of a run: its test value, else the last epoch's value in its history."""
    if metric in row.metrics:
        return row.metrics[metric]
    values = [v for v in row.history.get(metric, []) if isinstance(v, float)]
    return values[-1] if values else None


def list_runs(root: str | os.PathLike = "runs", *, name: str | None = None,
              sort: str | None = None, status: str | None = None) -> list[RunRow]:  # fmt: skip
    """The runs under `root`, newest first; or best first by `sort` (a metric: lower is
    better for losses and errors, higher for the rest), runs without it last.

    Args:
        root: the output folder (`output.dir`), or any folder above run folders.
        name: keep runs whose recipe name matches this pattern (`digits*`; a plain
            word matches anywhere in the name).
        sort: a metric name.
        status: keep runs with this status.
    """
    rows = [read_row(folder) for folder in find_runs(root)]
    if name:
        pattern = name if any(c in name for c in "*?[") else f"*{name}*"
        rows = [r for r in rows if fnmatch.fnmatchcase(r.name or r.path.parent.name, pattern)]
    if status:
        rows = [r for r in rows if r.status == status]
    rows.sort(key=lambda r: (r.started or "", str(r.path)), reverse=True)
    if sort:
        sign = 1 if lower_is_better(sort) else -1
        with_value = [r for r in rows if metric_value(r, sort) is not None]
        with_value.sort(key=lambda r: sign * metric_value(r, sort))
        rows = with_value + [r for r in rows if metric_value(r, sort) is None]
    return rows


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _number(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def format_table(rows: list[RunRow], root: str | os.PathLike | None = None,
                 sort: str | None = None) -> str:  # fmt: skip
    """The rows as a plain-text table: run, name, started, status, epochs, the test metrics
    (and the `sort` metric when it is not one: its last epoch's value), duration."""
    if not rows:
        return f"no runs under {root}" if root is not None else "no runs"
    names = sorted({k for r in rows for k in r.metrics}, key=lambda k: (k != "loss", k))
    extra = [sort] if sort and sort not in names else []  # a history column: its last value
    header = ["run", "name", "started", "status", "epochs", *names, *extra, "duration"]
    table = [header]
    for r in rows:
        where = r.path
        if root is not None:
            with contextlib.suppress(ValueError):
                where = r.path.relative_to(root)
        table.append([str(where), r.name or "-", r.started or "-", r.status, _number(r.epochs),
                      *(_number(r.metrics.get(k)) for k in names),
                      *(_number(metric_value(r, k)) for k in extra), _duration(r.duration)])  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    return "\n".join(lines)


def plot_rows(rows: list[RunRow], metric: str, root: str | os.PathLike | None = None):
    """The learning curves of `metric` of the runs, in one figure."""
    histories = {}
    for r in rows:
        label = str(r.path)
        if root is not None:
            with contextlib.suppress(ValueError):
                label = str(r.path.relative_to(root))
        histories[label] = r.history
    return plot_runs(histories, metric)
