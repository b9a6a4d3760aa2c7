"""lr_find: a sweep, candidates, probe runs from the same weights, and `learning_rate: auto`.

The problem: a small MLP regressing a smooth function of 8 inputs, where Adam's default
rate (1e-3) is known to be slow over a few epochs and ~1e-2 learns well.
"""

import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

import kerakit as kk
from kerakit.cli import main
from kerakit.recipe.reader import load_yaml
from kerakit.report.lr_find import plot_lr_find, smoothed_losses, steepest, suggest, valley

RECIPE = """
name: lrmlp
seed: 0
data: {{source: npz:mlp.npz, batch_size: 32, test_split: 0}}
model:
  input_shape: [8]
  sequential: [{{Dense: {{units: 32, activation: relu}}}}, {{Dense: {{units: 1}}}}]
compile: {{optimizer: {{adam: {{learning_rate: {lr}}}}}, loss: mse}}
train: {{epochs: {epochs}, verbose: 0}}
output: {{dir: {out}}}
"""


def _data(folder, n_train=256, n_val=64):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8,))

    def make(n):
        x = rng.normal(size=(n, 8)).astype("float32")
        return x, (np.tanh(x @ w / 2) * 2 + 0.1 * rng.normal(size=n)).astype("float32")

    (xt, yt), (xv, yv) = make(n_train), make(n_val)
    np.savez(folder / "mlp.npz", x_train=xt, y_train=yt, x_val=xv, y_val=yv)
    return xt, yt, xv, yv


def _recipe(folder, lr="auto", epochs=1):
    path = folder / "mlp.yaml"
    path.write_text(RECIPE.format(lr=lr, epochs=epochs, out=folder / "runs"))
    return path


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    """One lr_find of the MLP recipe: (its result, the folder, the data)."""
    from kerakit.recipe.keras_names import ensure_index

    # Building the index of Keras's names draws random numbers (once per cache), which
    # would give the first build after it other initial weights than the rebuild below.
    ensure_index()
    folder = tmp_path_factory.mktemp("lrfind")
    data = _data(folder)
    lines = []
    result = kk.lr_find(_recipe(folder), out=folder / "out", steps=60, probe_steps=8,
                        print_fn=lines.append)  # fmt: skip
    return result, folder, data, lines


def test_the_chosen_rate_trains_at_least_as_well_as_adams_default(found):
    import keras

    from kerakit.data import load_recipe_data
    from kerakit.training.build import build_compiled, set_seeds
    from kerakit.training.lr_find import weights_hash

    result, folder, (xt, yt, xv, yv), _ = found
    chosen = result["chosen"]["learning_rate"]
    assert 1e-4 < chosen < 1
    # the seed gives the same initial weights again: lr_find's start is the run's start
    recipe = kk.load_recipe(folder / "mlp.yaml")
    set_seeds(recipe)
    model = build_compiled(recipe, load_recipe_data(recipe))[0]
    initial = model.get_weights()
    assert weights_hash(initial) == result["initial_weights"]
    val_loss = {}
    for lr in (chosen, 1e-3):  # three epochs, longer than the probes, same start and order
        model.set_weights(initial)
        model.compile(optimizer=keras.optimizers.Adam(lr), loss="mse")
        model.fit(xt, yt, batch_size=32, epochs=3, shuffle=False, verbose=0)
        val_loss[lr] = model.evaluate(xv, yv, verbose=0)
    assert val_loss[chosen] <= val_loss[1e-3], val_loss


def test_the_probes_start_from_identical_weights_and_include_the_default(found):
    result, folder, _, lines = found
    probes = result["probes"]
    assert len(probes) >= 2
    assert {p["start_weights"] for p in probes} == {result["initial_weights"]}
    assert result["candidates"]["default"] == 0.001  # Keras's Adam default, always probed
    assert {"valley", "steepest"} <= set(result["candidates"])
    best = min(p["loss"] for p in probes if p["loss"] is not None)
    chosen = next(p for p in probes if p["candidate"] == result["chosen"]["candidate"])
    assert chosen["loss"] == best and result["measured"] == "val_loss"
    assert result["probe_budget"] == {"steps": 8, "batch_size": 32} and result["seed"] == 0
    written = json.loads((folder / "out" / "lr_find.json").read_text())
    assert written["chosen"] == result["chosen"] and written["status"] == "complete"
    assert (folder / "out" / "lr_find.png").stat().st_size > 1000
    sweep = written["sweep"]
    assert len(sweep["learning_rates"]) == len(sweep["losses"]) <= 60
    assert sweep["learning_rates"][0] == pytest.approx(1e-7)
    assert any(line.startswith("learning_rate: ") for line in lines)
    assert any("<- chosen" in line for line in lines)


def test_smoothing_and_candidates_follow_fastai():
    assert smoothed_losses([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])  # bias-corrected
    lrs = list(np.logspace(-7, 1, 50))
    # flat (batch noise), then falling fastest around 1e-3, lowest near 1e-1, then blowing up
    x, noise = np.log10(lrs), 0.02 * np.sin(np.arange(50) * 2.3)
    loss = list(1 - 0.8 / (1 + np.exp(-3 * (x + 3))) + np.where(x > -1, (x + 1) ** 2, 0) + noise)
    assert 1e-4 < steepest(lrs, loss) < 1e-2
    assert 1e-4 < valley(lrs, loss) < 1e-1
    got = suggest(lrs, loss[:45] + [math.nan] * 5)  # a non-finite tail is cut off
    assert set(got) == {"valley", "steepest"} and all(1e-5 < v < 1 for v in got.values())
    assert suggest([1e-3, 1e-2], [1.0, 0.5]) == {}  # too few points: no candidates
    fig = plot_lr_find({"sweep": {"learning_rates": lrs, "losses": loss},
                        "candidates": got, "probes": [
                            {"candidate": "valley", "learning_rate": got["valley"], "loss": 0.2},
                            {"candidate": "default", "learning_rate": 1e-3, "loss": None}],
                        "chosen": {"candidate": "valley"}, "probe_budget": {"steps": 4}})  # fmt: skip
    assert len(fig.axes) == 2


def test_learning_rate_auto_in_train_writes_the_chosen_rate_and_resume_reuses_it(tmp_path):
    _data(tmp_path, n_train=128, n_val=32)
    path = _recipe(tmp_path)
    lines = []
    run = kk.train(path, print_fn=lines.append)
    done = json.loads((run.path / "lr_find.json").read_text())
    chosen = done["chosen"]["learning_rate"]
    assert run.recipe["compile"]["optimizer"] == {"adam": {"learning_rate": chosen}}
    kept, _ = load_yaml((run.path / "recipe.resolved.yaml").read_bytes(), "kept")
    assert kept["compile"]["optimizer"] == {"adam": {"learning_rate": chosen}}
    assert (run.path / "lr_find.png").is_file()
    assert float(run.model.optimizer.learning_rate.numpy()) == pytest.approx(chosen)
    assert any("lr_find: sweeping" in line for line in lines)
    # run.json keeps the fingerprint of `auto`: the same recipe resumes, without a new sweep
    lines.clear()
    again = kk.train(path, resume=run.path, epochs=2, print_fn=lines.append)
    assert again.path == run.path and len(again.history["loss"]) == 2
    assert not any("lr_find: sweeping" in line for line in lines)
    assert any(line.startswith(f"learning_rate: {chosen:g} (chosen by this run") for line in lines)
    assert again.recipe["compile"]["optimizer"] == run.recipe["compile"]["optimizer"]


def test_check_accepts_auto_and_refuses_what_is_not(tmp_path, capsys):
    _data(tmp_path, n_train=64, n_val=16)
    assert main(["check", str(_recipe(tmp_path))]) == 0
    assert "learning_rate: auto (found when training" in capsys.readouterr().out
    assert main(["check", str(_recipe(tmp_path, lr="autoo"))]) == 2
    err = capsys.readouterr().err
    assert "compile.optimizer.adam.learning_rate" in err and "did you mean 'auto'" in err
    schedule = "{ExponentialDecay: {initial_learning_rate: auto, decay_steps: 10, decay_rate: 0.9}}"
    assert main(["check", str(_recipe(tmp_path, lr=schedule))]) == 2
    err = capsys.readouterr().err
    assert "initial_learning_rate: 'auto' is a constant learning rate" in err


def test_lr_find_command_with_a_schedule_writes_beside_the_runs(tmp_path, capsys):
    _data(tmp_path, n_train=64, n_val=16)
    schedule = "{CosineDecay: {initial_learning_rate: 0.005, decay_steps: auto}}"
    path = _recipe(tmp_path, lr=schedule)
    assert main(["lr-find", str(path), "--steps", "20", "--probe-steps", "2"]) == 0
    out = capsys.readouterr().out
    (folder,) = (tmp_path / "runs").glob("lrmlp-lr-find-*")
    result = json.loads((folder / "lr_find.json").read_text())
    # the schedule is set aside for the sweep; its initial rate is the probe of "configured"
    assert result["candidates"]["configured"] == 0.005
    assert f"wrote {folder / 'lr_find.json'}" in out and "candidate" in out


@pytest.mark.slow
def test_lr_find_command_as_a_real_subprocess(tmp_path):
    _data(tmp_path, n_train=64, n_val=16)
    cmd = [sys.executable, "-m", "kerakit.cli", "lr-find", str(_recipe(tmp_path)),
           "--steps", "30", "--probe-steps", "2", "--out", str(tmp_path / "found")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for words in (
        "lr_find: swept",
        "candidate",
        "valley",
        "default",
        "<- chosen",
        "learning_rate:",
    ):
        assert words in proc.stdout, words
    assert (tmp_path / "found" / "lr_find.png").is_file()
    assert json.loads((tmp_path / "found" / "lr_find.json").read_text())["status"] == "complete"


@pytest.mark.slow
def test_a_kill_during_lr_find_then_resume_searches_again_cleanly(tmp_path):
    _data(tmp_path, n_train=128, n_val=32)
    train = [sys.executable, "-m", "kerakit.cli", "train", str(_recipe(tmp_path))]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(train, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)  # fmt: skip
    try:
        for line in proc.stdout:  # kill -9 as soon as the sweep starts
            if line.startswith("lr_find: sweeping"):
                proc.send_signal(signal.SIGKILL)
                break
        else:
            raise AssertionError("lr_find never started")
    finally:
        proc.kill()
        proc.wait(timeout=60)
    (run_dir,) = (tmp_path / "runs" / "lrmlp").iterdir()
    assert not (run_dir / "lr_find.json").exists()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    again = subprocess.run([*train, "--resume", str(run_dir)], cwd=REPO, capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "lr_find: sweeping" in again.stdout
    done = json.loads((run_dir / "lr_find.json").read_text())
    chosen = done["chosen"]["learning_rate"]
    assert done["status"] == "complete" and chosen > 0
    assert {p["start_weights"] for p in done["probes"]} == {done["initial_weights"]}
    kept, _ = load_yaml((run_dir / "recipe.resolved.yaml").read_bytes(), "kept")
    assert kept["compile"]["optimizer"] == {"adam": {"learning_rate": chosen}}
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
