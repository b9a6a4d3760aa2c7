"""A search worker: asks the study for a trial and trains it as a normal run in a process
of its own (`kerakit train RECIPE --set KEY=VALUE ... --run-dir SEARCH/trial-NNN`), which
reports each epoch to the study and stops when the pruner says so
(`kerakit.training.trial`). Nothing of a trial stays in the worker's memory. The next
trial's process is started while a trial trains (`kerakit.launch`): its seconds
of imports are spent then, not between trials.

A trial's process dies with its worker (Linux: PR_SET_PDEATHSIG), so a worker killed
with kill -9 leaves an interrupted run folder with its backup, which the retried trial
resumes (`study.reclaim_stale`).
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kerakit.errors import KerakitError
from kerakit.recipe.search import PRUNED_FILE, TRIAL_ENV, grid_values
from kerakit.report.history import HISTORY_FILE, history_columns
from kerakit.search.study import (
    HEARTBEAT_S,
    beat,
    claim,
    counted,
    folder_number,
    optuna,
    reclaim_stale,
    suggest,
    tell,
)

POLL_S = 0.1
TRIAL_LOG = "trial.log"
EXIT_BAD_INPUT = 2


def target_trials(spec: dict) -> float:
    """How many trials the study runs: `trials`, at most the grid's size for grid search."""
    n = spec["trials"] if spec["trials"] is not None else math.inf
    if spec["sampler"] == "grid":
        size = math.prod(len(grid_values(d)) for d in spec["space"].values())
        n = min(n, size)
    return n


def run_worker(study, spec: dict, command: list[str], folder: Path, url: str, *,
               deadline: float | None, print_fn=print) -> int:  # fmt: skip
    """Runs trials until the study has its trials (or the deadline passes); returns how
    many this worker ran. `command`: `kerakit train RECIPE [--set ...]` as a list."""
    spares: list[subprocess.Popen] = []
    try:
        return _trials(study, spec, command, folder, url, deadline, print_fn, spares)
    finally:
        for proc in spares:  # started for a trial that never came
            proc.kill()
            proc.wait()


def _trials(study, spec, command, folder, url, deadline, print_fn, spares) -> int:
    ran = 0
    target = target_trials(spec)
    while True:
        with _lock(folder):  # workers on this machine ask one at a time: no extra trial
            for number in reclaim_stale(study):
                print_fn(f"trial {number}: its worker is gone; it will resume from its backup")
            count = counted(study)
            if count["waiting"] == 0 and count["done"] + count["running"] >= target:
                return ran
            if deadline is not None and time.time() >= deadline:
                print_fn("search: the time budget is spent")
                return ran
            trial = study.ask()
            claim(trial)
            values = suggest(trial, spec["space"])
        number = folder_number(trial)
        run_dir = folder / f"trial-{number:03d}"
        trial.set_user_attr("run_dir", str(run_dir))
        shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
        resumed = " (resuming)" if number != trial.number else ""
        print_fn(f"trial {trial.number}{resumed}: {shown}")
        op = optuna()
        proc = spares.pop() if spares else None
        spares.append(start_spare())  # the next trial's imports, while this one trains
        try:
            state, value, note = run_trial(trial, command, values, run_dir, spec, url, proc)
        except KerakitError:  # a metric the run does not log
            tell(study, trial, state=op.trial.TrialState.FAIL)
            raise
        except BaseException:  # interrupted: the next worker resumes it from its backup
            tell(study, trial, state=op.trial.TrialState.FAIL)
            study.enqueue_trial(trial.params, user_attrs={"folder": number})
            raise
        if state == "complete":
            tell(study, trial, value)
        else:
            trial.set_user_attr("outcome", note)
            tell(study, trial, state=op.trial.TrialState.PRUNED if state == "pruned"
                 else op.trial.TrialState.FAIL)  # fmt: skip
        shown = f"{spec['metric']}={value:.4g}" if value is not None else note
        print_fn(f"trial {trial.number}: {state} ({shown})")
        ran += 1


def trial_command(command: list[str], values: dict, run_dir: Path) -> list[str]:
    sets = ["--set", "search=null"]
    for key, value in values.items():
        sets += ["--set", f"{key}={json.dumps(value)}"]
    return [*command, *sets, "--run-dir", str(run_dir)]


def run_trial(trial, command: list[str], values: dict, run_dir: Path, spec: dict, url: str,
              spare: subprocess.Popen | None = None):  # fmt: skip
    """Trains one trial; returns (complete | pruned | failed, the metric's best value, note).
    The run reports each epoch to the study itself (`kerakit.training.trial`). `spare`: a
    `launch` process that has imported TensorFlow already (else one is started now)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / PRUNED_FILE).unlink(missing_ok=True)  # a resumed trial is judged afresh
    report = {"storage": url, "study": trial.study.study_name, "trial_id": trial._trial_id,
              "metric": spec["metric"], "pruner": spec["pruner"], "spawned": time.time()}  # fmt: skip
    proc = spare if spare is not None else start_spare()
    job = {"argv": trial_command(command, values, run_dir)[len(python_kerakit()):],
           "env": {TRIAL_ENV: json.dumps(report)}, "log": str(run_dir / TRIAL_LOG)}  # fmt: skip
    last_beat = time.time()
    try:
        proc.stdin.write(json.dumps(job) + "\n")
        proc.stdin.close()
        while proc.poll() is None:
            time.sleep(POLL_S)
            if time.time() - last_beat > HEARTBEAT_S:
                beat(trial)
                last_beat = time.time()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    trial.set_user_attr("wall_s", round(time.time() - report["spawned"], 3))
    if (run_dir / PRUNED_FILE).is_file():
        epoch = json.loads((run_dir / PRUNED_FILE).read_text()).get("epoch")
        return "pruned", None, f"pruned after epoch {epoch}"
    if proc.returncode == EXIT_BAD_INPUT:  # the recipe at these values: the search stops
        raise KerakitError(f"trial {trial.number}: {_last_error(run_dir / TRIAL_LOG)}")
    better = max if spec["direction"] == "maximize" else min
    logged = history_columns(run_dir / HISTORY_FILE).get(spec["metric"], [])
    seen = [v for v in logged if isinstance(v, float) and math.isfinite(v)]
    if proc.returncode == 0 and seen:
        return "complete", better(seen), ""
    return "failed", None, f"kerakit train exited {proc.returncode}: see {run_dir / TRIAL_LOG}"


def start_spare() -> subprocess.Popen:
    """A `kerakit.launch` process, importing TensorFlow while it waits for a trial."""
    return subprocess.Popen(
        [sys.executable, "-m", "kerakit.launch"], stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=die_with_parent,
    )  # fmt: skip


def _last_error(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    return errors[-1][7:] if errors else f"kerakit train failed: see {log}"


def die_with_parent() -> None:  # in the child, before exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the trial may outlive a killed worker
        pass


class _lock:
    """An flock on the search folder's ask.lock (dies with its process)."""

    def __init__(self, folder: Path):
        self.path = folder / "ask.lock"

    def __enter__(self):
        self.handle = open(self.path, "a")
        fcntl.flock(self.handle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def python_kerakit() -> list[str]:
    """The command that runs kerakit's CLI with this interpreter."""
    return [sys.executable, "-m", "kerakit.cli"]
