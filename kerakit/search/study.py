"""The study behind `kerakit search`: Optuna, its storage, samplers, pruners, and the
trials a killed worker left behind.

The storage is a SQLite file in the search folder unless the recipe (`search.storage`)
or `--join URL` names a database that workers on several machines share. A trial
records which worker runs it (host and process id) and a heartbeat; a trial left
running by a worker that is gone (its process dead on this host, or no heartbeat for
`STALE_AFTER_S` from another host) is failed and enqueued again with the same values
and the same run folder, so it resumes from its own backup.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from kerakit.errors import KerakitError
from kerakit.recipe.search import grid_values, make_pruner

STUDY_FILE = "study.db"
STALE_AFTER_S = float(os.environ.get("KERAKIT_SEARCH_STALE_S", "300"))
HEARTBEAT_S = 10.0


def optuna():
    """Optuna, or an error naming the extra that installs it."""
    try:
        import optuna as module
    except ImportError:
        raise KerakitError('kerakit search needs Optuna: pip install "kerakit[search]"') from None
    module.logging.set_verbosity(module.logging.WARNING)
    return module


def storage_url(spec: dict, folder: Path, join: str | None = None) -> str:
    """`--join URL`, else `search.storage`, else SQLite in the search folder."""
    url = join or spec.get("storage")
    if url:
        return url
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / STUDY_FILE).resolve()}"


def _storage(url: str):
    op = optuna()
    if url.startswith("sqlite:"):  # several worker processes on one file: wait for its lock
        return op.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    return op.storages.RDBStorage(url)


def open_study(spec: dict, name: str, url: str, seed: int | None, worker: int | None = 0):
    """The study named after the recipe, made on first use and loaded after. Each worker's
    sampler draws its own numbers (`worker`: its index; None, a worker joining from
    elsewhere: unseeded), so two workers never propose the same trials in step."""
    op = optuna()
    seed = spec["seed"] if spec.get("seed") is not None else seed
    if seed is not None:
        seed = None if worker is None else (seed + 7919 * worker) % 2**32
    space = spec["space"]

    def sampler(seed):
        return {
            "tpe": lambda: op.samplers.TPESampler(seed=seed),
            "random": lambda: op.samplers.RandomSampler(seed=seed),
            "grid": lambda: op.samplers.GridSampler(
                {k: grid_values(d) for k, d in space.items()}, seed=seed
            ),
        }[spec["sampler"]]()

    try:
        study = op.create_study(storage=_storage(url), sampler=sampler(seed),
                                pruner=make_pruner(spec["pruner"]), study_name=name,
                                direction=spec["direction"], load_if_exists=True)  # fmt: skip
    except Exception as exc:  # a bad URL, an unreachable database, a missing driver
        raise KerakitError(f"cannot open the study storage {url}: {exc}") from None
    done = len(study.trials)
    if done and seed is not None:  # a continued study: not the first trials' numbers again
        study.sampler = sampler((seed + 104729 * done) % 2**32)
    return study


def suggest(trial, space: dict) -> dict:
    """The trial's values, one per key path."""
    out: dict[str, Any] = {}
    for key, dim in space.items():
        kind = dim["kind"]
        if kind == "choice":
            out[key] = trial.suggest_categorical(key, dim["choices"])
        elif kind == "bool":
            out[key] = trial.suggest_categorical(key, [False, True])
        elif kind == "int":
            out[key] = trial.suggest_int(key, dim["low"], dim["high"], step=dim["step"] or 1,
                                         log=dim["log"])  # fmt: skip
        else:
            out[key] = trial.suggest_float(key, dim["low"], dim["high"], step=dim["step"],
                                           log=dim["log"])  # fmt: skip
    return out


def claim(trial) -> None:
    """Records that this process runs `trial` (for `reclaim_stale` in another worker)."""
    trial.set_user_attr("kerakit_worker", worker_id())
    beat(trial)


def beat(trial) -> None:
    trial.set_user_attr("kerakit_heartbeat", time.time())


def worker_id() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _gone(attrs: dict) -> bool:
    worker = attrs.get("kerakit_worker") or {}
    if worker.get("host") == socket.gethostname():
        try:
            os.kill(int(worker["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, KeyError, ValueError, TypeError):
            return False
        return False
    return time.time() - float(attrs.get("kerakit_heartbeat", time.time())) > STALE_AFTER_S


def reclaim_stale(study) -> list[int]:
    """Fails the trials whose worker is gone and enqueues each again (same values, same
    folder: `folder_number`); returns their numbers."""
    op = optuna()
    out = []
    for t in study.get_trials(deepcopy=False, states=(op.trial.TrialState.RUNNING,)):
        if not _gone(t.user_attrs):
            continue
        try:
            tell(study, t.number, state=op.trial.TrialState.FAIL)
        except Exception:  # another worker reclaimed it first
            continue
        study.enqueue_trial(t.params, user_attrs={"folder": folder_number(t)})
        out.append(t.number)
    return out


def folder_number(trial) -> int:
    """The trial number whose run folder this trial trains in (a resumed trial keeps the
    folder of the one it resumes)."""
    return int(trial.user_attrs.get("folder", trial.number))


def counted(study) -> dict:
    """How many trials are finished (complete, pruned, or failed and not retried),
    running, and waiting (enqueued retries)."""
    op = optuna()
    state = op.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    out = {"done": 0, "running": 0, "waiting": 0}
    for t in trials:
        if t.state in (state.COMPLETE, state.PRUNED):
            out["done"] += 1
        elif t.state == state.FAIL:  # a killed trial retried later is not done
            n = folder_number(t)
            out["done"] += not any(u.number > t.number and folder_number(u) == n for u in trials)
        elif t.state == state.RUNNING:
            out["running"] += 1
        elif t.state == state.WAITING:
            out["waiting"] += 1
    return out


def tell(study, trial, value=None, state=None) -> None:
    """`study.tell`; the grid sampler's "all values tried" (it calls `study.stop()`, which
    Optuna allows only inside `optimize`, after the result is stored) is no error here."""
    try:
        study.tell(trial, value, state=state)
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise
