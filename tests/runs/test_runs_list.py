"""`kerakit runs` and `kerakit diff`: fast on run folders written here by hand (no
TensorFlow), and end to end (slow) on real digits runs: three seeds, one other optimizer
that diverges, one killed with SIGKILL."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from runs_helpers import digits_recipe

from kerakit.cli import main
from kerakit.runs.diff import diff_runs
from kerakit.runs.table import find_runs, list_runs, read_row
from kerakit.training.runfolder import RunLock

OLD_RUNS = REPO / "tests" / "fixtures" / "v0_1_0" / "runs"
RECIPE = yaml.safe_load((OLD_RUNS / "tiny" / "complete" / "recipe.resolved.yaml").read_text())


def make_run(root: Path, stamp: str, status: str, *, name="tiny", seed=7, metrics=None,
             losses=(1.0, 0.8), optimizer="adam", **info) -> Path:  # fmt: skip
    """A run folder as kerakit writes it: run.json, the resolved recipe, history, metrics."""
    folder = root / name / stamp
    folder.mkdir(parents=True)
    recipe = {**RECIPE, "name": name, "seed": seed,
              "compile": {**RECIPE["compile"], "optimizer": optimizer}}  # fmt: skip
    (folder / "recipe.resolved.yaml").write_text(yaml.safe_dump(recipe))
    started = f"2026-12-0{stamp[-1]}T10:00:00"
    run = {"status": status, "name": name, "started": started, **info}
    if status == "complete":
        run["finished"] = f"2026-12-0{stamp[-1]}T10:01:05"
    (folder / "run.json").write_text(json.dumps(run))
    rows = "".join(f"{i},{v},{v + 0.1}\n" for i, v in enumerate(losses))
    (folder / "history.csv").write_text("epoch,loss,val_loss\n" + rows)
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


@pytest.fixture
def runs(tmp_path):
    out = tmp_path / "out"
    made = {
        "a": make_run(out, "run-1", "complete", seed=1, metrics={"loss": 0.5, "accuracy": 0.8}),
        "b": make_run(out, "run-2", "complete", seed=2, metrics={"loss": 0.4, "accuracy": 0.9}),
        "diverged": make_run(
            out, "run-3", "diverged", optimizer={"sgd": {"learning_rate": 1e30}}, losses=(1.0,)
        ),  # fmt: skip
        "killed": make_run(out, "run-4", "running", seed=3, losses=(1.0, 0.9, 0.8)),
        "failed": make_run(out, "run-5", "interrupted", error="OSError: disk full", losses=(1.0,)),
        "interrupted": make_run(out, "run-6", "interrupted", name="other", losses=(1.0,)),
    }
    (made["killed"] / ".lock").write_text("kerakit process 1 since then\n")  # kill -9 leaves it
    (out / "mlruns" / "1" / "x" / "artifacts").mkdir(parents=True)  # MLflow's copies: no runs
    (out / "mlruns" / "1" / "x" / "artifacts" / "run.json").write_text("{}")
    return out, made


def test_runs_lists_each_status_epochs_metrics_and_duration(runs):
    out, made = runs
    rows = {r.path: r for r in list_runs(out)}
    assert {k: rows[p].status for k, p in made.items()} == {
        "a": "complete", "b": "complete", "diverged": "diverged", "killed": "killed",
        "failed": "failed", "interrupted": "interrupted"}  # fmt: skip
    assert len(rows) == 6  # nothing from mlruns/
    assert rows[made["killed"]].epochs == 3 and rows[made["a"]].metrics["accuracy"] == 0.8
    assert rows[made["a"]].duration == 65
    assert list(rows) == [
        made[k] for k in ("interrupted", "failed", "killed", "diverged", "b", "a")
    ]
    with RunLock(made["killed"]):  # a live process holds the lock: it is running
        assert read_row(made["killed"]).status == "running"


def test_runs_filters_by_name_and_status_and_sorts_by_a_metric(runs):
    out, made = runs
    assert [r.path for r in list_runs(out, name="oth")] == [made["interrupted"]]
    assert len(list_runs(out, name="t*")) == 5 and list_runs(out, name="x*") == []
    assert [r.path for r in list_runs(out, status="diverged")] == [made["diverged"]]
    assert [r.path for r in list_runs(out, sort="accuracy")][:2] == [made["b"], made["a"]]
    by_loss = [r.path for r in list_runs(out, sort="loss")]  # test loss, else the last epoch's
    assert by_loss[:2] == [made["b"], made["a"]] and by_loss[2] == made["killed"]
    assert [r.path for r in list_runs(out, sort="val_loss")][0] == made["killed"]


def test_runs_command_prints_the_table_and_draws_the_curves(runs, capsys):
    out, made = runs
    png = out / "loss.png"
    assert (
        main(["runs", str(out), "--sort", "accuracy", "--plot", "loss", "--output", str(png)]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["run", "name", "started", "status", "epochs", "loss", "accuracy",
                                "duration"]  # fmt: skip
    assert lines[1].split()[:5] == ["tiny/run-2", "tiny", "2026-12-02T10:00:00", "complete", "2"]
    assert lines[1].split()[-1] == "1m05s"
    (killed,) = [line.split() for line in lines if line.startswith("tiny/run-4")]
    assert killed[3:6] == ["killed", "3", "-"]  # no test metrics: "-"
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "args, words",
    [
        (["--plot", "nope"], "no run logged 'nope'; they logged: loss, val_loss"),
        (["--status", "complet"], "did you mean 'complete'"),
    ],
)
def test_runs_command_refusals(runs, capsys, args, words):
    out, _ = runs
    assert main(["runs", str(out), *args]) == 2
    assert words in capsys.readouterr().err


def test_runs_of_a_missing_folder(tmp_path, capsys):
    assert main(["runs", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_diff_names_exactly_the_keys_that_differ(runs, capsys):
    out, made = runs
    assert diff_runs(made["a"], made["b"])["recipe"] == [("seed", 1, 2)]
    d = diff_runs(made["a"], made["diverged"])
    assert sorted(p for p, _, _ in d["recipe"]) == ["compile.optimizer", "seed"]
    assert d["metrics"] == [("loss", 0.5, None, None), ("accuracy", 0.8, None, None)]
    assert main(["diff", str(made["a"]), str(made["b"])]) == 0
    text = capsys.readouterr().out
    assert "recipe: 1 key differs\n  seed: 1 -> 2\n" in text
    assert [line.split() for line in text.splitlines() if "accuracy" in line] == [
        ["accuracy", "0.8", "0.9", "+0.1"]]  # fmt: skip


def test_diff_of_a_folder_that_is_no_run(tmp_path, capsys):
    assert main(["diff", str(tmp_path), str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_run_folders_of_kerakit_0_1_0_list_and_diff(capsys):
    rows = {r.path.name: r for r in list_runs(OLD_RUNS)}
    assert rows["complete"].status == "complete" and rows["interrupted"].status == "interrupted"
    assert rows["complete"].epochs == 4 and rows["interrupted"].duration is not None
    assert main(["runs", str(OLD_RUNS)]) == 0
    assert "tiny/complete" in capsys.readouterr().out
    old = [str(OLD_RUNS / "tiny" / "complete"), str(OLD_RUNS / "tiny" / "interrupted")]
    assert main(["diff", *old]) == 0
    text = capsys.readouterr().out
    assert "recipe: the same" in text and "data: not recorded" in text
    assert "versions: the same" in text  # env.json's five


def test_runs_in_a_real_subprocess_starts_no_tensorflow(runs):
    out, _ = runs
    code = ("import sys; from kerakit.cli import main; rc = main(['runs', sys.argv[1]]); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; sys.exit(rc)")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "killed" in proc.stdout and "diverged" in proc.stdout


# ----------------------------------------------------------------- real runs (slow)


def _start_killable(recipe: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "kerakit.cli", "train", str(recipe)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


@pytest.mark.slow
def test_real_runs_three_seeds_one_killed_and_another_optimizer_diverged(tmp_path, capsys):
    import signal
    import time

    import kerakit as kk
    from kerakit.errors import TrainingDiverged

    out = tmp_path / "out"
    killed = _start_killable(digits_recipe(tmp_path, out, seed=3, epochs=500))
    try:
        say = lambda *a, **k: None  # noqa: E731
        done = {s: kk.train(digits_recipe(tmp_path, out, seed=s), new=True, print_fn=say).path
                for s in (1, 2)}  # fmt: skip
        with pytest.raises(TrainingDiverged):
            kk.train(digits_recipe(tmp_path, out, optimizer={"sgd": {"learning_rate": 1e30}}),
                     new=True, print_fn=say)  # fmt: skip
        deadline = time.time() + 240
        while time.time() < deadline and killed.poll() is None:
            rows = [r for r in list_runs(out) if r.path not in done.values()]
            if any(r.status == "running" and r.epochs for r in rows):
                break
            time.sleep(0.1)
        assert killed.poll() is None, "the run to kill ended first"
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)
    finally:
        if killed.poll() is None:
            killed.kill()
    statuses = sorted(r.status for r in list_runs(out))
    assert statuses == ["complete", "complete", "diverged", "killed"]
    (diverged,) = [r.path for r in list_runs(out, status="diverged")]
    assert diff_runs(done[1], done[2])["recipe"] == [("seed", 1, 2)]
    assert diff_runs(done[1], diverged)["recipe"] == [
        ("compile.optimizer", "adam", {"sgd": {"learning_rate": 1e30}})]  # fmt: skip
    assert main(["runs", str(out), "--sort", "accuracy"]) == 0
    table = capsys.readouterr().out
    assert table.count("complete") == 2 and "killed" in table and "diverged" in table
    d = diff_runs(done[1], done[2])
    assert d["data"][0] == d["data"][1] is not None and d["versions"] == []
    assert {r[0] for r in d["metrics"]} == {"loss", "accuracy"}


def test_find_runs_stops_at_a_run_folder(tmp_path):
    run = make_run(tmp_path, "run-1", "complete")
    (run / "nested" / "x").mkdir(parents=True)
    (run / "nested" / "x" / "run.json").write_text("{}")
    assert find_runs(tmp_path) == [run]


def test_run_json_records_an_error_beside_the_status_that_still_resumes():
    from kerakit.errors import TrainingDiverged, TrainingInterrupted
    from kerakit.training.runfolder import failure

    assert failure(TrainingDiverged("nan")) == {"status": "diverged"}
    assert failure(TrainingInterrupted("stop", 15)) == failure(KeyboardInterrupt()) == {
        "status": "interrupted"}  # fmt: skip
    assert failure(OSError("disk full")) == {"status": "interrupted",
                                             "error": "OSError: disk full"}  # fmt: skip
