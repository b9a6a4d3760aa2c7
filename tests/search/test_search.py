"""`kerakit search`: trials as run folders in processes of their own, on a real Optuna
study in SQLite, workers sharing it, kill -9 and resume, pruning, and a bad space refused
before any trial."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kerakit.cli import main

pytest.importorskip("optuna")

RECIPE = """
name: {name}
seed: 1
data: {{source: digits, batch_size: {batch}, validation_split: 0.2}}
model:
  input_shape: [8, 8, 1]
  sequential:
    - Flatten
    - Dense: {{units: 16, activation: relu}}
    - Dense: {{units: 10, activation: softmax}}
compile:
  optimizer: adam
train: {{epochs: {epochs}, callbacks: {callbacks}}}
output: {{dir: runs}}
search:
  metric: val_accuracy
  trials: {trials}
{search}
"""
CLI = [sys.executable, "-m", "kerakit.cli"]


def _write(
    folder: Path, name="s", epochs=2, trials=6, search="", batch=64, callbacks="none"
) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(RECIPE.format(name=name, epochs=epochs, trials=trials, search=search,
                                  batch=batch, callbacks=callbacks))  # fmt: skip
    return path


def _rows(folder: Path) -> list[dict]:
    with open(folder / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def _status(run: str) -> str:
    return json.loads((Path(run) / "run.json").read_text())["status"]


@pytest.mark.slow
def test_two_workers_share_a_study_and_best_yaml_trains(tmp_path):
    recipe = _write(
        tmp_path,
        epochs=1,
        trials=6,
        search="""  sampler: random
  pruner: none
  space:
    compile.optimizer.adam.learning_rate: {float: [1.0e-3, 3.0e-2], log: true}
    model.sequential[1].Dense.units: {choice: [8, 16, 32]}""",
    )
    done = subprocess.run([*CLI, "search", str(recipe), "--workers", "2"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    folder = tmp_path / "runs" / "s" / "search"
    rows = _rows(folder)
    assert len(rows) == 6 and {r["state"] for r in rows} == {"complete"}
    values = {
        (r["compile.optimizer.adam.learning_rate"], r["model.sequential[1].Dense.units"])
        for r in rows
    }
    assert len(values) == 6  # distinct trials
    runs = {r["run"] for r in rows}
    assert len(runs) == 6 and all(_status(r) == "complete" for r in runs)
    assert all((Path(r) / "model.keras").is_file() for r in runs)
    # the two workers were two processes, each holding trials
    pids = {json.loads(line)["pid"] for line in _worker_lines(folder)}
    assert len(pids) == 2
    assert {"best.yaml", "report.md", "history.png"} <= {p.name for p in folder.iterdir()}
    again = subprocess.run([*CLI, "train", str(folder / "best.yaml")], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]


def _worker_lines(folder: Path):
    import optuna

    study = optuna.load_study(study_name="s", storage=f"sqlite:///{folder / 'study.db'}")
    return [json.dumps(t.user_attrs["kerakit_worker"]) for t in study.trials]


@pytest.mark.slow
def test_a_worker_killed_mid_trial_resumes_that_trial(tmp_path):
    # small batches and backups every epoch: trial 1 is caught mid-run and resumes
    recipe = _write(
        tmp_path,
        name="k",
        epochs=8,
        trials=3,
        batch=8,
        callbacks="{bundle: none, BackupAndRestore: {}, CSVLogger: {}}",
        search="""  sampler: random
  pruner: none
  space:
    model.sequential[1].Dense.units: {int: [8, 64]}""",
    )
    folder = tmp_path / "runs" / "k" / "search"
    proc = subprocess.Popen([*CLI, "search", str(recipe)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:  # kill the worker once trial 1 has a backed-up epoch
        deadline = time.time() + 300
        backups = folder / "trial-001" / "backup"
        while time.time() < deadline:
            if len(list(backups.glob("ckpt-*.json"))) >= 2:  # two epochs backed up
                break
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    time.sleep(1)  # the trial's own process dies with its worker
    assert _status(folder / "trial-001") in ("running", "interrupted")
    epochs_before = len(list(backups.glob("ckpt-*.json")))
    done = subprocess.run([*CLI, "search", str(recipe)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "trial 1: its worker is gone" in done.stdout
    rows = _rows(folder)
    complete = [r for r in rows if r["state"] == "complete"]
    assert len(complete) == 3  # the asked number: none lost, none duplicated
    folders = sorted(Path(r["run"]).name for r in complete)
    assert len(set(folders)) == 3 and folders[:2] == ["trial-000", "trial-001"]  # 001 resumed
    assert [r for r in rows if r["state"] == "fail"] == [r for r in rows if r["trial"] == "1"]
    resumed = next(r for r in complete if r["run"].endswith("trial-001"))
    assert "resumes trial 1" in resumed["note"]
    log = (folder / "trial-001" / "trial.log").read_text()
    second = log.split("compile preset")[2]  # the retried attempt's output
    first_epoch = int(second.split("Epoch ")[1].split("/")[0])
    assert first_epoch > 1  # from its own backup, not from scratch
    with open(folder / "trial-001" / "history.csv", newline="") as f:
        epochs = [int(float(r["epoch"])) for r in csv.DictReader(f)]
    assert epochs == list(range(8)) and epochs_before >= 2
    values = [r["model.sequential[1].Dense.units"] for r in complete]
    assert len(set(values)) == 3  # a continued study does not replay its first values


@pytest.mark.slow
def test_the_pruner_stops_a_clearly_worse_trial(tmp_path, monkeypatch):
    # the grid's order with seed 3: 0.01, 0.03, then 1e-7 (which cannot learn in 5 epochs)
    recipe = _write(
        tmp_path,
        name="p",
        epochs=5,
        trials=3,
        search="""  sampler: grid
  seed: 3
  pruner: median
  space:
    compile.optimizer.adam.learning_rate: {choice: [0.03, 0.01, 1.0e-7]}""",
    )
    monkeypatch.chdir(tmp_path)
    assert main(["search", str(recipe)]) == 0
    rows = _rows(tmp_path / "runs" / "p" / "search")
    by_rate = {float(r["compile.optimizer.adam.learning_rate"]): r for r in rows}
    assert by_rate[1e-7]["state"] == "pruned", rows
    assert by_rate[0.01]["state"] == by_rate[0.03]["state"] == "complete"
    pruned = Path(by_rate[1e-7]["run"])
    with open(pruned / "history.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) < 5  # stopped before its last epoch


@pytest.mark.parametrize(
    "space, words",
    [
        ("    compile.optimizer.adam.learning_rat: {float: [1.0e-4, 1.0e-2]}", "learning_rat"),
        ("    data.batch_size: {int: [64, 16]}", "is empty"),
        ("    model.sequential[1].Dense.units: {choice: [16, -3]}", "-3"),
        ("    model.sequential[7].Dense.units: {choice: [16]}", "no item [7]"),
        ("    data.batch_size: {float: [1, 2]}\n  sampler: grid", "grid takes only"),
    ],
)
def test_a_bad_space_exits_2_with_its_line(tmp_path, capsys, monkeypatch, space, words):
    monkeypatch.chdir(tmp_path)
    recipe = _write(tmp_path, name="b", search="  space:\n" + space)
    line = recipe.read_text().splitlines().index(space.splitlines()[0]) + 1
    assert main(["search", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert f"b.yaml:{line}:" in err and words in err, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("trial-*"))
    assert main(["check", str(recipe)]) == 2  # check refuses it first


def test_check_shows_the_space_and_builds_its_corners(tmp_path, capsys):
    recipe = _write(
        tmp_path,
        name="c",
        search="""  space:
    model.sequential[1].Dense.units: {choice: [4, 64]}
    compile.optimizer.adam.learning_rate: {float: [1.0e-4, 1.0e-2], log: true}""",
    )
    assert main(["check", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "model.sequential[1].Dense.units: one of [4, 64]" in out
    assert "4, 'compile.optimizer.adam.learning_rate': 0.0001}: 310 parameters" in out
    assert "64, 'compile.optimizer.adam.learning_rate': 0.01}: 4,810 parameters" in out
